"""Machine engines behind one interface, and the choice between them: the one place an engine
(backend) object is made.

``ENGINES`` maps an engine's name to its backend class (``"module:Class"``, imported on first
use), as testinfra's ``testinfra.backend.BACKENDS`` does; adding an engine is one folder under
``backends/`` and one line here. ``auto`` picks, once per process, the first engine in table
order whose class :meth:`~pytest_orbstack.backends.base.Backend.answers` (OrbStack when ``orbctl``
answers, else Podman on a host with no ``docker`` command whose ``podman info`` answers, else
Docker when its daemon answers, else Incus when its daemon answers, else Docker, whose one-line
error then says what is missing). The choice may be set with ``--orbstack-backend`` (pytest), host data
``orbstack_backend`` (pyinfra), testinfra's ``engine=`` or ``$PYTEST_ORBSTACK_BACKEND``.
"""

from __future__ import annotations

import functools
import importlib

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import EngineUnavailable

ENGINES: dict[str, str] = {
    "orbstack": "pytest_orbstack.backends.orbstack.backend:OrbStackBackend",
    "podman": "pytest_orbstack.backends.podman.backend:PodmanBackend",
    "docker": "pytest_orbstack.backends.docker.backend:DockerBackend",
    "incus": "pytest_orbstack.backends.incus.backend:IncusBackend",
}
CHOICES = ("auto", *ENGINES)


def backend_class(name: str) -> type[Backend]:
    """The backend class of engine ``name`` (one of ``ENGINES``)."""
    module, _, cls = ENGINES[name].partition(":")
    found: type[Backend] = getattr(importlib.import_module(module), cls)
    return found


def engine_clients() -> frozenset[str]:
    """Every engine's client program (:attr:`Backend.client_program`): the programs of engine calls."""
    return frozenset(backend_class(name).client_program for name in ENGINES)


@functools.cache
def _auto() -> str:
    """The first engine whose class answers (asked once per process); none: Docker (the usual
    Linux engine, whose error says what is missing)."""
    for name in ENGINES:
        if backend_class(name).answers():
            return name
    return "docker"


def resolve_name(name: str | None = None) -> str:
    """The engine's name for a requested one (None: the environment, else auto)."""
    name = (name or settings.engine_name() or "auto").lower()
    if name not in CHOICES:
        raise EngineUnavailable(f"unknown backend {name!r}: choose one of {', '.join(CHOICES)}")
    return _auto() if name == "auto" else name


def get_backend(name: str | None = None, *, own: Backend | None = None) -> Backend:
    """A new backend object for engine ``name`` (see :func:`resolve_name`); ``own`` (a
    session's own backend, with its environment) when it is that engine."""
    if own is not None and name is not None and own.name == name:
        return own
    return backend_class(resolve_name(name))()
