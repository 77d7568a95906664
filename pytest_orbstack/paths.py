"""Where pytest-orbstack keeps files on the host: the session state folder and the lock files
shared by every process of this user."""

from __future__ import annotations

import os
from pathlib import Path

ENV_STATE_DIR = "PYTEST_ORBSTACK_STATE_DIR"


def user_state_dir() -> Path:
    """``$XDG_STATE_HOME/pytest-orbstack`` (default ``~/.local/state/pytest-orbstack``)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "pytest-orbstack"


def default_state_dir() -> Path:
    """Where session files live: ``$PYTEST_ORBSTACK_STATE_DIR``, else :func:`user_state_dir`."""
    env = os.environ.get(ENV_STATE_DIR)
    return Path(env) if env else user_state_dir()


def lock_path(name: str) -> str:
    """A lock file shared by every process of this user on this host, whatever its session
    state dir (never in /tmp, which a killed session would litter)."""
    locks = user_state_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return str(locks / f"{name}.lock")


def remove_lock(name: str) -> None:
    """Remove a lock file nobody can need any more (its machine is gone)."""
    (user_state_dir() / "locks" / f"{name}.lock").unlink(missing_ok=True)
