"""Where pytest-orbstack keeps files on the host: the lock files shared by every process of this
user (the folders themselves are :mod:`pytest_orbstack.settings`)."""

from __future__ import annotations

from pytest_orbstack.settings import user_state_dir


def lock_path(name: str) -> str:
    """A lock file shared by every process of this user on this host, whatever its session
    state dir (never in /tmp, which a killed session would litter)."""
    locks = user_state_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return str(locks / f"{name}.lock")


def remove_lock(name: str) -> None:
    """Remove a lock file nobody can need any more (its machine is gone)."""
    (user_state_dir() / "locks" / f"{name}.lock").unlink(missing_ok=True)
