"""Whether the tests can use Podman (``bash scripts/dev.sh podman`` sets it up)."""

from __future__ import annotations

import shutil
import subprocess

from testenv import required_in_ci

BASE = "debian:bookworm"  # the offline base image scripts/dev-podman.sh imports


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--log-level=error", *args], capture_output=True, text=True, timeout=120)


def why_no_podman() -> str | None:
    """Why Podman machines cannot be made here (one line), or None; under CI an error."""
    return required_in_ci("Podman", _why_no_podman())


def _why_no_podman() -> str | None:
    """Why Podman machines cannot be made here (one line), or None."""
    if not shutil.which("podman"):
        return "podman is not installed (bash scripts/dev.sh podman installs it)"
    try:
        if podman("info").returncode != 0:
            return "podman info fails (bash scripts/dev.sh podman; docs/podman.md)"
    except subprocess.TimeoutExpired:
        return "podman info does not answer within 120 s"
    if podman("image", "exists", BASE).returncode != 0:
        return f"no Podman image {BASE} (bash scripts/dev.sh podman builds it)"
    return None


def podman_machine(request, prefix: str = "pod"):
    """(the podman engine, name of a new running debian:bookworm machine) deleted when
    ``request``'s scope ends; the test skips with :func:`why_no_podman`'s line when Podman
    cannot be used."""
    import pytest
    from testenv import unique

    from pytest_orbstack.backends import get_backend

    why = why_no_podman()
    if why:
        pytest.skip(why)
    engine, name = get_backend("podman"), unique(prefix)
    request.addfinalizer(lambda: engine.delete_if_exists(name))  # also after a failed create
    engine.create(name, "debian:bookworm")
    return engine, name
