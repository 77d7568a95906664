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

import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

from .errors import MachineNotFound, OrbStackError

ENV_STATE_DIR = "PYTEST_ORBSTACK_STATE_DIR"


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "pytest-orbstack"


def new_session_id() -> str:
    return secrets.token_hex(3)


def process_start_time(pid: int) -> str | None:
    """A token that changes when ``pid`` is reused (Linux: start tick in /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


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

    @property
    def prefix(self) -> str:
        return f"pto-{self.id}"


class Registry:
    """Session files under ``state_dir``; every change happens under a file lock."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.dir = (state_dir or default_state_dir()) / "sessions"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self.dir / f"{session_id}.json"

    @contextmanager
    def _locked(self, session_id: str) -> Iterator[Path]:
        path = self._path(session_id)
        with FileLock(str(path) + ".lock", timeout=60):
            yield path

    def _read(self, path: Path) -> Session | None:
        try:
            return Session(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def open(self, session_id: str, backend: str, pid: int | None = None) -> Session:
        """Create (or reopen) the file of a session owned by ``pid`` (default: this process)."""
        with self._locked(session_id) as path:
            session = self._read(path)
            if session is None:
                pid = pid or os.getpid()
                session = Session(session_id, pid, process_start_time(pid), socket.gethostname(),
                                  backend, [], time.time())
                self._write(path, session)
                with open(self.dir.parent / "sessions.log", "a") as log:  # who made pto-<id>-*
                    log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {session_id} pid={pid} "
                              f"backend={backend} cwd={os.getcwd()}\n")
            return session

    def _write(self, path: Path, session: Session) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(session.__dict__))
        tmp.replace(path)

    def _update(self, session_id: str, change: Callable[[list[str]], None]) -> None:
        with self._locked(session_id) as path:
            session = self._read(path)
            if session is None:
                raise OrbStackError(f"pytest-orbstack session {session_id} is not registered")
            change(session.machines)
            self._write(path, session)

    def add(self, session_id: str, name: str) -> None:
        """Record ``name`` as owned by the session (call before creating it)."""
        self._update(session_id, lambda ms: ms.append(name) if name not in ms else None)

    def remove(self, session_id: str, name: str) -> None:
        self._update(session_id, lambda ms: ms.remove(name) if name in ms else None)

    def machines(self, session_id: str) -> list[str]:
        session = self._read(self._path(session_id))
        return list(session.machines) if session else []

    def close(self, session_id: str) -> None:
        """Forget a session whose machines are all gone."""
        with self._locked(session_id) as path:
            path.unlink(missing_ok=True)
        Path(str(path) + ".lock").unlink(missing_ok=True)

    def sessions(self) -> list[Session]:
        return [s for p in sorted(self.dir.glob("*.json")) if (s := self._read(p))]

    def prune(self, delete: Callable[[str, str], None]) -> list[str]:
        """Delete the machines of every session whose owner is dead; returns their names.

        ``delete(backend_kind, name)`` deletes one machine (MachineNotFound is fine: it was
        already gone). A session whose machines could not all be deleted is kept for next time.
        """
        pruned = []
        for session in self.sessions():
            if owner_alive(session.pid, session.start, session.host):
                continue
            left = []
            for name in session.machines:
                try:
                    delete(session.backend, name)
                    pruned.append(name)
                except MachineNotFound:
                    pass
                except OrbStackError:
                    left.append(name)
            if left:
                self._update(session.id, lambda ms: ms.__setitem__(slice(None), left))
            else:
                self.close(session.id)
        return pruned
