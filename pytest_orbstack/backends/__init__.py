"""Machine engines behind one interface, and the choice between them.

``auto`` picks OrbStack when ``orbctl`` answers, else Docker; ``incus`` is chosen by name. The choice may be set with
``--orbstack-backend`` (pytest), host data ``orbstack_backend`` (pyinfra) or the environment
variable ``PYTEST_ORBSTACK_BACKEND``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import EngineUnavailable

KINDS = ("auto", "orbstack", "docker", "incus")
ENV_VAR = "PYTEST_ORBSTACK_BACKEND"


def orbctl_answers(binary: str = "orbctl") -> bool:
    """True if an ``orbctl`` is on PATH and ``orbctl version`` succeeds."""
    if not shutil.which(binary):
        return False
    try:
        return subprocess.run([binary, "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_kind(kind: str | None = None) -> str:
    """``orbstack``, ``docker`` or ``incus`` for a requested kind (None: the environment, else auto)."""
    kind = (kind or os.environ.get(ENV_VAR) or "auto").lower()
    if kind not in KINDS:
        raise EngineUnavailable(f"unknown backend {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return "orbstack" if orbctl_answers() else "docker"
    return kind


def get_backend(kind: str | None = None) -> Backend:
    """A backend instance for ``kind`` (see :func:`resolve_kind`)."""
    if resolve_kind(kind) == "orbstack":
        from pytest_orbstack.backends.orbstack.backend import OrbStackBackend
        return OrbStackBackend()
    if resolve_kind(kind) == "incus":
        from pytest_orbstack.backends.incus.backend import IncusBackend
        return IncusBackend()
    from pytest_orbstack.backends.docker.backend import DockerBackend
    return DockerBackend()
