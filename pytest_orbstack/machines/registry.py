"""Who owns which machine: the record that makes teardown leak-proof.

Every pytest session has an id and an owner process (the xdist controller, or the only
process). Before a machine is created its name is written to the session's file
``<state dir>/sessions/<id>.json`` (with the owner's pid, its start time and the backend), so a
machine can never exist unrecorded. Names carry the prefix ``pto-<id>-``. When a session ends
the file goes; if the owner was killed (SIGKILL), the next session, or ``pytest
--orbstack-prune``, finds the file of a dead owner and deletes its machines. Sessions only ever
touch their own machines and those of dead owners, so concurrent sessions on one host are safe.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.errors import MachineError


def new_session_id() -> str:
    return secrets.token_hex(4)


def process_start_time(pid: int) -> str | None:
    """A token that changes when ``pid`` is reused: the process's start time as ``ps`` prints
    it (POSIX ``ps -o lstart``: Linux and macOS alike), or None if there is no such process."""
    try:
        proc = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True,
                              timeout=settings.PS_TIMEOUT, env=settings.child_env({"LC_ALL": "C"}))
    except (OSError, subprocess.TimeoutExpired):
        return None
    return " ".join(proc.stdout.split()) or None


def owner_alive(pid: int, start: str | None, host: str) -> bool:
    """Whether the process that owned a session still runs (other hosts: assumed alive)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or process_start_time(pid) in (None, start)


@dataclass
class Session:
    id: str
    pid: int
    start: str | None
    host: str
    backend: str
    machines: list[str]
    created: float
    kept: list[str] = field(default_factory=list)
    user: str = ""      # who ran the session
    project: str = ""   # its rootdir: --orbstack-prune touches only this user's and project's
    about: dict[str, dict[str, Any]] = field(default_factory=dict)  # kept name -> test, image, when
    adopted: list[str] = field(default_factory=list)  # sessions whose kept machines it took over

    def belongs_to(self, user: str | None, project: str | None) -> bool:
        """Whether the session is of ``user`` and ``project`` (None: any). A file of release
        0.1.0 records neither: it is in this user's own state dir, of any of its projects."""
        return ((user is None or not self.user or self.user == user)
                and (project is None or not self.project or self.project == project))


class Registry:
    """Session files under ``state_dir``; every change happens under the session's file lock."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.dir = (state_dir or settings.state_dir()) / "sessions"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self.dir / f"{session_id}.json"

    @contextmanager
    def _locked(self, session_id: str) -> Iterator[Path]:
        path = self._path(session_id)
        with FileLock(str(path) + ".lock", timeout=settings.REGISTRY_LOCK_WAIT):
            yield path

    def _read(self, path: Path) -> Session | None:
        try:
            return Session(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, path: Path, session: Session) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(session.__dict__))
        tmp.replace(path)

    def open(self, session_id: str, backend: str, pid: int | None = None, project: str = "") -> Session:
        """Create (or reopen, for xdist workers) the file of a session owned by ``pid``."""
        with self._locked(session_id) as path:
            session = self._read(path)
            if session is None:
                pid = pid or os.getpid()
                session = Session(session_id, pid, process_start_time(pid), socket.gethostname(),
                                  backend, [], time.time(), user=getpass.getuser(), project=project)
                self._write(path, session)
                with open(self.dir.parent / "sessions.log", "a") as log:  # who made pto-<id>-*
                    log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {session_id} pid={pid} "
                              f"backend={backend} cwd={os.getcwd()}\n")
            return session

    def update(self, session_id: str, change: Callable[[Session], None],
                must_exist: bool = False) -> None:
        """Apply ``change`` to the session's record; a session that is gone is left alone, or
        with ``must_exist`` is an error."""
        with self._locked(session_id) as path:
            session = self._read(path)
            if session is None:
                if must_exist:
                    raise MachineError(f"pytest-orbstack session {session_id} is not registered")
                return
            change(session)
            self._write(path, session)

    def add(self, session_id: str, name: str) -> None:
        """Record ``name`` as owned by the session (call before creating it)."""
        def change(session: Session) -> None:
            if name not in session.machines:
                session.machines.append(name)
        self.update(session_id, change, must_exist=True)

    def remove(self, session_id: str, name: str) -> None:
        self.update(session_id, lambda s: s.machines.remove(name) if name in s.machines else None)

    def keep(self, session_id: str, name: str, about: dict[str, Any] | None = None) -> None:
        """Move ``name`` to the session's kept machines: never deleted but by ``--orbstack-prune``;
        ``about`` (its test, image, ...) is what ``--orbstack-list`` and ``--orbstack-reuse`` read."""
        def change(session: Session) -> None:
            if name in session.machines:
                session.machines.remove(name)
            if name not in session.kept:
                session.kept.append(name)
            session.about[name] = {**session.about.get(name, {}), **(about or {}), "kept_at": time.time()}
        self.update(session_id, change)

    def reaped(self, session_id: str, left: list[str], include_kept: bool = False) -> None:
        """After a reap of the session: only its machines in ``left`` (not deleted) stay
        recorded; its kept ones too, unless ``include_kept`` (then those in ``left``)."""
        def change(session: Session) -> None:
            session.machines = [n for n in left if n not in session.kept]
            session.kept = [n for n in session.kept if not include_kept or n in left]
        self.update(session_id, change)

    def adopt(self, from_session: str, to_session: str, name: str) -> None:
        """Move kept machine ``name`` of a finished session, with what was recorded about it, to
        ``to_session`` (still kept: a reused machine is a debugging machine); the old session's
        file goes once empty."""
        about: dict[str, Any] = {}

        def release(session: Session) -> None:
            about.update(session.about.pop(name, {}))
            if name in session.kept:
                session.kept.remove(name)
        self.update(from_session, release)
        self.close(from_session)
        self.keep(to_session, name, about)
        self.update(to_session, lambda s: s.adopted.append(from_session)
                    if from_session not in s.adopted else None)

    def get(self, session_id: str) -> Session | None:
        return self._read(self._path(session_id))

    def close(self, session_id: str) -> None:
        """End a session: its file goes, unless machines are still recorded (kept ones, or
        ones whose deletion failed: the next prune retries them)."""
        with self._locked(session_id) as path:
            session = self._read(path)
            if session is not None and (session.kept or session.machines):
                return
            path.unlink(missing_ok=True)
        Path(str(path) + ".lock").unlink(missing_ok=True)

    def sessions(self) -> list[Session]:
        return [s for p in sorted(self.dir.glob("*.json")) if (s := self._read(p))]
