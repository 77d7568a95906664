"""The ``incus`` command line as the Incus backend calls it: its binary, environment, remote and
cluster member, and the one mapping of its failures to typed errors."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pytest_orbstack import settings
from pytest_orbstack.backends.incus.commands import at, cluster, delete, info, storage_driver
from pytest_orbstack.backends.process import last_line, map_error, run_text
from pytest_orbstack.errors import EngineUnavailable, MachineError, MachineExists, MachineNotFound

ERRORS = (("Instance not found", MachineNotFound), ("already exists", MachineExists),
          ("UNIQUE constraint failed", MachineExists))
UNREACHABLE = ("unix.socket", "connection refused", "Failed to connect", "no route to host",
               "i/o timeout", "connection reset", 'The remote "')  # the last: not in the client's config
NOT_RUNNING = "Error: Instance is not running"
# incusd's answer to an instance action while the same action by another client runs, once that
# one succeeded (operationlock.ErrNonReusuableSucceeded): for a delete, the instance is gone
DELETED_ELSEWHERE = "A matching non-reusable operation has now succeeded"
# incusd's answer to a query of an instance another client is deleting (its init's pid unreadable)
DELETING = "Invalid PID"
POOL = "default"  # the storage pool machines are made in (scripts/dev-incus.sh)


class IncusCLI:
    """``incus`` (``env`` extends this process's environment) addressing ``remote`` (an
    ``incus remote`` name; default ``$PYTEST_ORBSTACK_INCUS_REMOTE``, "" the client's default
    remote) and putting new machines on cluster member ``target`` (default
    ``$PYTEST_ORBSTACK_INCUS_TARGET``, "" the scheduler's choice)."""

    def __init__(self, incus: str = "incus", env: dict[str, str] | None = None,
                 remote: str | None = None, target: str | None = None) -> None:
        self.incus = incus
        self.env = settings.child_env(env) if env else None
        self.remote = settings.incus_remote(env) if remote is None else remote
        self.target = (settings.incus_target(env) if target is None else target) or None
        self._clustered: bool | None = None  # asked once

    def target_refusal(self, target: str) -> str | None:
        """None when the daemon is a cluster (which then checks that ``target`` is a member),
        else why a machine cannot be put on ``target`` (one line)."""
        if self._clustered is None:
            self._clustered = bool(json.loads(self.call(cluster(self.remote)).stdout or "{}").get("enabled"))
        where = f"Incus remote {self.remote!r}" if self.remote else "the local Incus daemon"
        return None if self._clustered else (f"target={target!r}: {where} is not a cluster; target= puts "
                                             "a machine on a cluster member (docs/scale.md)")

    def disk_refusal(self) -> str | None:
        """Why ``disk=`` cannot be honoured (a ``dir`` pool has no size limits), None when it can."""
        pool = json.loads(self.call(storage_driver(POOL, self.remote)).stdout)
        return (f"disk= needs an Incus storage pool that limits sizes (btrfs, zfs, lvm); pool {POOL!r} is "
                "dir: PYTEST_ORBSTACK_INCUS_POOL_DRIVER=btrfs bash scripts/dev.sh incus makes a btrfs one"
                if pool.get("driver") == "dir" else None)

    def instance(self, name: str) -> dict[str, Any] | None:
        """The instance ``name`` with its state, snapshots and member (``incus query``), None
        when there is none. While another client deletes it incusd may fail to read its state
        (:data:`DELETING`): asked again, for 2 s at most, until it is gone or readable."""
        for pause in (0.2, 0.4, 0.6, 0.8):
            proc = self.call(info(name, self.remote), ok=("not found", DELETING))
            if proc.returncode == 0:
                return json.loads(proc.stdout)
            if DELETING not in proc.stderr:
                return None
            time.sleep(pause)
        raise self.error(proc)

    def at(self, name: str) -> str:
        """``name`` as this CLI addresses it: ``REMOTE:NAME`` on a remote."""
        return at(self.remote, name)

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
            where = (f"incus remote {self.remote} not answering: {last_line(proc.stderr)} (check "
                     f"`incus info {self.remote}:`; docs/scale.md)" if self.remote else
                     f"incus daemon not answering: {last_line(proc.stderr)} (start it: bash scripts/dev.sh incus)")
            return EngineUnavailable(where, stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        return map_error(proc.args, proc.returncode, proc.stderr, ERRORS)

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes]) -> MachineError | None:
        """The error a failed ``incus exec`` in ``name`` means when Incus refused to run the
        command (the machine stopped, ``Instance is not running``, or gone; the daemon gone),
        None when the failure is the command's own exit code."""
        stderr = proc.stderr.decode(errors="replace")
        if stderr.startswith("Error: ") and any(s in stderr for s in UNREACHABLE):
            return self.error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
        if stderr.strip() == NOT_RUNNING:
            return MachineError(f"machine {name} is not running: it was stopped or killed, or the "
                                "incus daemon restarted", stderr=stderr, returncode=proc.returncode)
        if stderr.startswith("Error: ") and "Instance not found" in stderr:
            return MachineNotFound(f"machine not found: {name!r}", stderr=stderr)
        return None

    def failed(self, proc: subprocess.CompletedProcess[str], name: str) -> MachineError:
        """The error of a failed launch or copy of ``name``, what it left removed (not a machine
        of that name that was already there)."""
        error = self.error(proc)
        if isinstance(error, MachineExists):
            return MachineExists(f"machine already exists: {name!r}", stderr=proc.stderr)
        self.call(delete(self.at(name)), check=False)
        return error

    @contextmanager
    def deleted_on_failure(self, name: str) -> Iterator[None]:
        """Delete instance ``name`` if the block raises, then re-raise."""
        try:
            yield
        except BaseException:
            with suppress(MachineError):  # the original error matters more
                self.call(delete(self.at(name)), check=False)
            raise
