"""Whether the tests can use the local Incus daemon (``bash scripts/dev.sh incus`` sets it up)."""

from __future__ import annotations

import shutil
import subprocess

IMAGE = "pytest-orbstack/debian/bookworm"  # the offline image scripts/dev-incus.sh imports


def incus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["incus", *args], capture_output=True, text=True, timeout=120)


def why_no_incus() -> str | None:
    """Why Incus machines cannot be made here (one line), or None."""
    if not shutil.which("incus"):
        return "incus is not installed (bash scripts/dev.sh incus installs it)"
    try:
        if incus("info").returncode != 0:
            return "the incus daemon does not answer (bash scripts/dev.sh incus starts it)"
    except subprocess.TimeoutExpired:
        return "the incus daemon does not answer (bash scripts/dev.sh incus starts it)"
    if incus("image", "info", IMAGE).returncode != 0:
        return f"no Incus image {IMAGE} (bash scripts/dev.sh incus builds it)"
    return None
