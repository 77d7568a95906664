"""testinfra backend ``orbstack://[USER@]MACHINE``: testinfra's modules on OrbStack machines.

.. code:: shell

    pytest --hosts=orbstack://web test_web.py          # as root, as Machine.host
    pytest --hosts='orbstack://alice@web' test_web.py  # as alice

Without a user it runs as root, as ``Machine.host`` does (``default_user=True`` to
``testinfra.get_host``: as the machine's default user). The engine follows
``PYTEST_ORBSTACK_BACKEND`` (auto, orbstack, docker), or is passed as ``engine=`` to
``testinfra.get_host``. Registered with testinfra when the pytest plugin loads, which also checks
that each ``--hosts=orbstack://NAME`` machine exists (:func:`missing_hosts`): a mistyped name
stops the run with one line.

A command reaches the machine as testinfra's own backends send it: the string from
``get_command``, encoded with the machine's encoding (:meth:`encode`, which testinfra detects in
the machine), run by ``/bin/sh -c`` (messages read ``/bin/sh: 1: ...``) with stdin /dev/null
through the machine's persistent shell (:meth:`Backend.execute`). Its bytes arrive unchanged:
``é`` on a latin-1 machine is ``e9``, as over SSH.
"""

from __future__ import annotations

from typing import Any

import testinfra.backend
from testinfra.backend import base

from pytest_orbstack import settings
from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import MachineError, MachineNotFound


class MachineCommandResult(base.CommandResult):
    """testinfra's result of a command (``rc``, ``stdout``, ``stderr``, ``succeeded``...) with no
    truth value: ``assert machine.run(...)`` would pass whatever the command did, so it raises
    TypeError naming what to compare instead."""

    def __bool__(self) -> bool:
        __tracebackhide__ = True
        raise TypeError("a command's result has no truth value (it is always there): assert "
                        "result.succeeded (exit status 0), result.rc == N or a field of result.stdout")

    @classmethod
    def of(cls, result: base.CommandResult) -> MachineCommandResult:
        return cls(result.backend, result.exit_status, result.command, result._stdout, result._stderr)


class OrbStackTestinfraBackend(base.BaseBackend):
    NAME = "orbstack"

    def __init__(self, hostname: str, *args: Any, engine: Backend | str | None = None,
                 default_user: bool = False, **kwargs: Any) -> None:
        self.name, user = self.parse_containerspec(hostname)
        self.user = user or (None if default_user else "root")
        self.engine = engine if isinstance(engine, Backend) else get_backend(engine)
        super().__init__(self.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        """Run ``command`` (``%s`` filled with the quoted ``args``) in the machine as
        ``/bin/sh -c COMMAND </dev/null``; stdout and stderr are the machine's bytes."""
        cmd = self.get_command(command, *args)
        proc = self.engine.execute(self.name, sh_c(self.encode(cmd)), user=self.user, timeout=settings.CHECK_TIMEOUT)
        return self.result(proc.returncode, self.encode(cmd), proc.stdout, proc.stderr)


def sh_c(command: bytes) -> str:
    """ASCII shell running the bytes ``command`` as ``/bin/sh -c COMMAND </dev/null``.

    A non-ASCII command travels as printf octal escapes (trailing newlines dropped): docker's
    CLI turns argv that is not UTF-8 into U+FFFD (``e9`` arrives as ``ef bf bd``), and orbctl,
    also written in Go, gets only ASCII too."""
    if command.isascii():
        return base.BaseBackend.quote("exec /bin/sh -c %s </dev/null", command.decode())
    text = "".join(chr(b) if 32 <= b < 127 and b not in b"\\%'" else f"\\{b:03o}" for b in command)
    return f"exec /bin/sh -c \"$(printf '{text}')\" </dev/null"


def missing_hosts(specs: str | None) -> str | None:
    """One line naming the first ``orbstack://`` host of testinfra's ``--hosts`` value
    (comma-separated) whose machine does not exist or whose engine does not answer; None if all
    are there (or none is ``orbstack://``). One engine per call."""
    names = [spec for spec in (specs or "").split(",") if spec.strip().startswith("orbstack://")]
    if not names:
        return None
    try:
        engine = get_backend(None)
    except MachineError as exc:
        return f"{names[0].strip()}: {exc}"
    for spec in names:
        name, _user = base.BaseBackend.parse_containerspec(spec.strip()[len("orbstack://"):].split("?")[0])
        try:
            engine.info(name)
        except MachineNotFound:
            return f"{spec.strip()}: no such machine {name!r} on {engine.name}"
        except MachineError as exc:
            return f"{spec.strip()}: {exc}"
    return None


def register() -> None:
    """Make ``orbstack://`` known to testinfra (idempotent)."""
    testinfra.backend.BACKENDS.setdefault("orbstack", f"{__name__}.OrbStackTestinfraBackend")
