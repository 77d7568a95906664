"""The ``incus`` command line as the Incus backend calls it: its binary and environment, and
the one mapping of its failures to typed errors."""

from __future__ import annotations

import subprocess

from pytest_orbstack import settings
from pytest_orbstack.backends.process import last_line, map_error, run_text
from pytest_orbstack.errors import EngineUnavailable, MachineError, MachineExists, MachineNotFound

ERRORS = (("Instance not found", MachineNotFound), ("already exists", MachineExists),
          ("UNIQUE constraint failed", MachineExists))
UNREACHABLE = ("unix.socket", "connection refused", "Failed to connect")
NOT_RUNNING = "Error: Instance is not running"


class IncusCLI:
    """``incus`` (``env`` extends this process's environment)."""

    def __init__(self, incus: str = "incus", env: dict[str, str] | None = None) -> None:
        self.incus = incus
        self.env = settings.child_env(env) if env else None

    def call(self, argv: list[str], *, timeout: float | None = None, check: bool = True,
             ok: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run a builder's argv with this binary and environment; a failure raises the matching
        typed error unless ``check`` is false or its stderr holds one of ``ok``."""
        argv = [self.incus, *argv[1:]]
        missing = (f"{self.incus} not found on PATH: install Incus (bash scripts/dev.sh incus, "
                   "or apt-get install -t bookworm-backports incus)")
        done = run_text(argv, timeout=timeout or settings.call_timeout(), env=self.env, missing=missing)
        if check and done.returncode != 0 and not any(s in done.stderr for s in ok):
            raise self.error(done)
        return done

    def error(self, proc: subprocess.CompletedProcess[str]) -> MachineError:
        """The typed error of a failed ``incus`` call."""
        if any(s in proc.stderr for s in UNREACHABLE):
            return EngineUnavailable(f"incus daemon not answering: {last_line(proc.stderr)} "
                                     "(start it: bash scripts/dev.sh incus)",
                                     stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        return map_error(proc.args, proc.returncode, proc.stderr, ERRORS)
