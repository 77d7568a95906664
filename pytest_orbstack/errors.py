"""Typed errors of pytest-orbstack.

Every error carries a one-line message that names the problem first; engine errors also keep
what the engine printed (``stderr``), its ``argv`` and exit code, so callers can show them
without a traceback from deep inside. The plugin turns exactly these classes (and
:class:`~pytest_orbstack.model.results.DeployError`) into one-line test failures.
"""

from __future__ import annotations

from typing import Any


class MachineError(Exception):
    """Base class: a machine could not be made, found or used. ``stderr`` is the engine's
    own text, ``argv`` the engine command that failed (if any)."""

    def __init__(self, message: str, *, stderr: str = "", argv: list[str] | None = None,
                 returncode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr
        self.argv = argv or []
        self.returncode = returncode

    def __str__(self) -> str:
        return self.message


OrbStackError = MachineError  # the name of the base class before 0.2 (it serves Docker too)


class MachineNotFound(MachineError):
    """The named machine does not exist."""


class MachineExists(MachineError):
    """A machine with that name exists already."""


class InvalidInput(MachineError, ValueError):
    """An argument is wrong (a path that does not exist, a deploy that does not compile, a
    bad user name, a marker typo): found before any engine call."""


class InvalidName(InvalidInput):
    """The machine name is not acceptable to OrbStack (checked before any call)."""


class UnknownImage(InvalidInput):
    """The image (distro[:version]) is unknown or not available to the engine."""


class UnknownConfigKey(MachineError, KeyError):
    """``orbctl config`` does not know the key."""


class EngineUnavailable(MachineError):
    """The engine (``orbctl`` or ``docker``) is missing or does not answer."""


class CommandTimeout(MachineError):
    """An engine command did not finish in time (it was killed)."""


class SharedMachineError(MachineError):
    """A session-shared or golden machine could not be made (every test that asks for it gets
    this error; the creation is not retried)."""

    @classmethod
    def of(cls, entry: dict[str, Any], what: str, first: bool) -> SharedMachineError:
        """The error of a failed shared machine ``what`` whose shared record is ``entry``
        (``error``, ``sections``, ``asker``): for the ``first`` test that asked, the whole
        error and the machine's diagnostics; for the others one line naming the cause and
        that test."""
        if not first:
            where = entry.get("asker") or "the first test that asked for it"
            return cls(f"{what} failed, see {where} for its report: {entry['error'].splitlines()[0]}")
        error = cls(f"{entry['error']}\n  (while making the {what}; the other tests using it fail "
                    "with one line pointing here)")
        attach_sections(error, [(title, text) for title, text in entry.get("sections", [])])
        return error


def report_sections(exc: BaseException) -> list[tuple[str, str]]:
    """The report sections ``exc`` carries (see :func:`attach_sections`)."""
    return list(getattr(exc, "orbstack_sections", []))


def attach_sections(exc: BaseException, sections: list[tuple[str, str]]) -> None:
    """Give ``exc`` report sections (a machine's diagnostics taken before it was deleted): the
    failure report of the test that gets it shows them."""
    exc.orbstack_sections = [*report_sections(exc), *sections]  # type: ignore[attr-defined]
