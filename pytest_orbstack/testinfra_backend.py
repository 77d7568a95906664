"""testinfra backend ``orbstack://[USER@]MACHINE``: testinfra's modules on OrbStack machines.

.. code:: shell

    pytest --hosts=orbstack://web test_web.py          # as the machine's default user
    pytest --hosts='orbstack://root@web' test_web.py   # as root

The engine follows ``PYTEST_ORBSTACK_BACKEND`` (auto, orbstack, docker), or is passed as
``engine=`` to ``testinfra.get_host``. Registered with testinfra when the pytest plugin loads.
"""

from __future__ import annotations

from typing import Any

import testinfra.backend
from testinfra.backend import base

from .backends import get_backend
from .backends.base import Backend
from .backends.process import run

TIMEOUT = 3600.0  # testinfra has none; a command that hangs this long fails the check


class OrbStackTestinfraBackend(base.BaseBackend):
    NAME = "orbstack"

    def __init__(self, hostname: str, *args: Any, engine: Backend | str | None = None,
                 **kwargs: Any) -> None:
        self.name, self.user = self.parse_containerspec(hostname)
        self.engine = engine if isinstance(engine, Backend) else get_backend(engine)
        super().__init__(self.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        argv = self.engine.exec_argv(self.name, cmd, user=self.user)
        proc = run(argv, timeout=TIMEOUT, env=self.engine.env)
        return self.result(proc.returncode, self.encode(cmd), proc.stdout, proc.stderr)


def register() -> None:
    """Make ``orbstack://`` known to testinfra (idempotent)."""
    testinfra.backend.BACKENDS.setdefault("orbstack", f"{__name__}.OrbStackTestinfraBackend")
