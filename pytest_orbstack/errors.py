"""Typed errors raised by the OrbStack client and the machine backends.

Every error carries a one-line message naming the problem; ``stderr`` holds what the
engine printed, so callers can show it without a traceback from deep inside.
"""

from __future__ import annotations


class OrbStackError(Exception):
    """Base class: an engine command failed. ``stderr`` is the engine's own text."""

    def __init__(self, message: str, *, stderr: str = "", argv: list[str] | None = None,
                 returncode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr
        self.argv = argv or []
        self.returncode = returncode

    def __str__(self) -> str:
        return self.message


class MachineNotFound(OrbStackError):
    """The named machine does not exist."""


class MachineExists(OrbStackError):
    """A machine with that name exists already."""


class InvalidName(OrbStackError, ValueError):
    """The machine name is not acceptable to OrbStack (checked before any call)."""


class UnknownImage(OrbStackError, ValueError):
    """The image (distro[:version]) is unknown or not available to the engine."""


class UnknownConfigKey(OrbStackError, KeyError):
    """``orbctl config`` does not know the key."""


class EngineUnavailable(OrbStackError):
    """The engine (``orbctl`` or ``docker``) is missing or does not answer."""


class CommandTimeout(OrbStackError):
    """An engine command did not finish in time (it was killed)."""
