"""Shared by the test modules: the repository root, the engine the tests run on, names, signals."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

REAL = os.environ.get("PYTEST_ORBSTACK_REAL") == "1"  # the engine tests against a real orbctl (docs/orbstack.md)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DEPLOY = ROOT / "examples" / "nginx" / "deploy.py"


def terminal_signals() -> None:
    """``preexec_fn`` for a process a test signals as a terminal would: SIGINT and SIGQUIT at
    their defaults. A background job of a non-interactive shell (``cmd &`` in a CI script,
    ``nohup``) starts with both ignored, and Python and bash keep an ignored SIGINT ignored, so
    a Ctrl-C sent to the test's process would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def unique(prefix: str = "t") -> str:
    """A machine name no other test uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


def required_in_ci(engine: str, why: str | None) -> str | None:
    """``why`` (the one line saying why ``engine`` cannot be used here, or None); under
    ``CI=true``, where every engine's tests must run, a reason is an error instead of a skip."""
    if why and os.environ.get("CI"):
        raise RuntimeError(f"the {engine} tests must run in CI: {why}")
    return why


def needs_docker(what: str, image: str = "debian:bookworm") -> pytest.MarkDecorator:
    """Skip the module unless Docker answers and has ``image``; under ``CI=true`` (where every
    engine test must run) a missing engine is an error, never a skip."""
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode:
            why: str | None = "docker daemon not answering"
        elif subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            why = f"image {image} missing (bash scripts/dev.sh setup builds it)"
        else:
            why = None
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = f"docker unusable: {exc}"
    if why and os.environ.get("CI"):
        raise RuntimeError(f"{what} need Docker: {why}")
    return pytest.mark.skipif(bool(why), reason=f"needs Docker: {why}")


def delete_racing(backend, name: str, other: list[str], head_start: float) -> str:
    """``backend.delete(name)`` while ``other`` (the engine's own delete of that machine, as a
    prune in another process runs it) started ``head_start`` s earlier: "deleted" when ours
    deleted it, "deleted by the other" when delete said MachineNotFound. Returns once both ended."""
    from pytest_orbstack.errors import MachineNotFound

    proc = subprocess.Popen(other, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(head_start)
    try:
        backend.delete(name)
        return "deleted"
    except MachineNotFound:
        return "deleted by the other"
    finally:
        proc.wait()
