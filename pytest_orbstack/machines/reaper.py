"""Nothing left behind, whatever ends a session.

:func:`reap` deletes what one session made: its machines (clones before the golden machines
they were cloned from; not those a later session took over with ``--orbstack-reuse``), then
the images labelled with the session (Docker snapshot and clone images no machine uses any
more). The session's own reap, ``--orbstack-prune`` and the watcher all use it.
:func:`prune` reaps the sessions whose owner is gone, oldest first, then asks the engine for
every image this package made that no session left and no machine needs (kept machines pass
from session to session, so no single session's record says which images they run from).

The watcher works like testcontainers' Ryuk, without an image and for both engines: a small
process started with the session (``python -m pytest_orbstack.machines.reaper``) in a session of its own
(so a closed terminal's SIGHUP or a Ctrl-C does not reach it), holding the read end of a pipe
whose write end only the session's owner holds. When the owner ends, however it ends (even
SIGKILL), the pipe closes; unless the owner said ``done`` first, the watcher reaps the session
at once, and twice more a few seconds later for machines an xdist worker was still creating
(an interrupted session that swept itself says ``late KIND``: the same, by the name prefix);
before each later sweep it waits (up to 15 minutes) while an engine call naming one of the
session's machines still runs: a ``docker run``/``orbctl create`` outlives the process that
started it and makes its machine after the owner is gone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from pytest_orbstack import settings
from pytest_orbstack.backends import engine_clients, get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import MachineError, MachineNotFound
from pytest_orbstack.machines.registry import Registry, owner_alive
from pytest_orbstack.model.names import PROJECT_LABEL, SESSION_LABEL, project_tag, session_prefix

DONE = b"done\n"
LATE = b"late "  # + the engine's name: the session swept itself, but not what is still under way


def _clones_first(name: str) -> tuple[bool, str]:
    return ("-golden-" in name, name)


def reap(engine: Backend, registry: Registry, session_id: str, *,
         include_kept: bool = False) -> list[str]:
    """Delete the session's machines that are not kept (all, with ``include_kept``): the ones
    recorded and any the engine has under the session's prefix; then its images. Returns the
    names deleted; what could not be deleted stays recorded for the next prune."""
    session = registry.get(session_id)
    prefix = session_prefix(session_id) + "-"
    kept = set(session.kept) if session else set()
    names = set(session.machines) if session else set()
    taken = {n for s in registry.sessions() if s.id != session_id for n in (*s.machines, *s.kept)}
    names |= {m.name for m in engine.list() if m.name.startswith(prefix) and m.name not in taken}
    doomed = sorted(names | kept if include_kept else names - kept, key=_clones_first)
    deleted, left = [], []
    for name in doomed:
        try:
            engine.delete(name)
            deleted.append(name)
        except MachineNotFound:
            pass
        except MachineError:
            left.append(name)
    for owner in [session_id, *(session.adopted if session else [])]:  # a reused clone's snapshot
        engine.remove_session_images(owner)
    registry.reaped(session_id, left, include_kept)
    registry.close(session_id)
    return deleted


def prune(registry: Registry, engine_for: Any, *, include_kept: bool = False,
          project: str | None = None, user: str | None = None,
          images_on: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    """Reap every session whose owner is dead, oldest first; with ``project``/``user`` only the
    sessions of that rootdir and user (``None``: any). Then, on the engines of the sessions
    reaped and those of ``images_on``, remove the images no remaining session and no machine
    needs (:func:`removable`). Returns ``(session, outcome, what)`` rows for the report:
    ``deleted`` machines, machines ``kept`` (with why), sessions ``left`` alone, each
    ``image`` removed (session ``-``)."""
    rows: list[tuple[str, str, str]] = []
    reaped: dict[str, str] = {}  # session -> its engine's name
    for session in sorted(registry.sessions(), key=lambda s: (s.created, s.id)):
        if not session.belongs_to(user, project):
            rows.append((session.id, "left", f"another {'project' if session.user == user else 'user'}"
                                             f" ({session.user or '?'}: {session.project or '?'})"))
            continue
        if owner_alive(session.pid, session.start, session.host):
            rows.append((session.id, "left", f"its pytest (pid {session.pid}) is still running"))
            continue
        kept = [] if include_kept else list(session.kept)
        reaped.update(dict.fromkeys([session.id, *session.adopted], session.backend))
        for name in reap(engine_for(session.backend), registry, session.id, include_kept=include_kept):
            rows.append((session.id, "deleted", name))
        rows += [(session.id, "kept", f"{name} (kept by --orbstack-keep; --orbstack-prune deletes it)")
                 for name in kept]
    accept = removable(registry, set(reaped), project, user)
    for engine in dict.fromkeys([*reaped.values(), *images_on]):
        try:
            rows += [("-", "image", image) for image in engine_for(engine).remove_unused_images(accept)]
        except MachineError as exc:  # the engine is away: the next prune retries
            rows.append(("-", "left", f"the images on {engine}: {exc}"))
    return rows


def removable(registry: Registry, reaped: set[str], project: str | None, user: str | None
              ) -> Callable[[Mapping[str, str]], bool]:
    """Which images, by their labels, a prune may remove (the engine then checks that no machine
    needs them): never those of a session still recorded (alive, another project's, or with
    machines left). Of one user's ``project``: that project's, and those without a project
    label (an earlier release) whose session was ``reaped`` now; of one ``user``: those whose
    session was reaped now; of anyone: all."""
    recorded = {s.id for s in registry.sessions()}
    tag = project_tag(user, project) if project is not None and user is not None else None

    def accept(labels: Mapping[str, str]) -> bool:
        session = labels.get(SESSION_LABEL, "")
        if session in recorded:
            return False
        if tag is not None and PROJECT_LABEL in labels:
            return labels[PROJECT_LABEL] == tag
        return session in reaped or (project is None and user is None)
    return accept


def start_watcher(session_id: str, engine: str | None, state_dir: Path) -> IO[bytes]:
    """Start the watcher of ``session_id``; returns the pipe to hold open (and to pass to
    :func:`stop_watcher` at a normal end)."""
    argv = [sys.executable, "-m", "pytest_orbstack.machines.reaper", "--session", session_id,
            "--state-dir", str(state_dir), *(["--engine", engine] if engine else [])]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdin is not None
    return proc.stdin


def stop_watcher(pipe: IO[bytes], late_engine: str | None = None) -> None:
    """The session swept itself. The watcher exits without reaping; with ``late_engine`` (an
    interrupted session, whose engine calls under way were not waited for) it reaps the
    session on that engine by its name prefix once the owner is gone, as if it had died."""
    try:
        pipe.write(LATE + late_engine.encode() + b"\n" if late_engine else DONE)
        pipe.close()
    except OSError:
        pass


def watch(session_id: str, engine_name: str | None, state_dir: Path, stdin: Any) -> int:
    """Block until the owner closes the pipe; reap unless it said ``done``: at once, then after
    each of ``LATE_SWEEPS`` (waiting for the owner's engine calls still under way), then every
    ``RETRY_SWEEP`` seconds while a deletion failed (the machine stays recorded), until
    ``ORPHAN_WAIT`` has passed."""
    said = stdin.read()
    if said.endswith(DONE):
        return 0
    registry = Registry(state_dir)
    session = registry.get(session_id)
    if said.startswith(LATE) and said.endswith(b"\n"):
        name = said[len(LATE):].strip().decode()  # (its record may be closed: the prefix serves)
    elif session is None:
        return 0  # it never asked for a machine
    else:
        name = session.backend or engine_name
    prefix = session_prefix(session_id) + "-"
    deadline, engine = time.monotonic() + settings.ORPHAN_WAIT, None
    pauses = iter((0.0, *settings.LATE_SWEEPS))
    while (pause := next(pauses, None)) is not None or (left(registry, session_id)
                                                        and time.monotonic() < deadline):
        time.sleep(settings.RETRY_SWEEP if pause is None else pause)  # (None: a deletion failed)
        while pause and _engine_call_running(prefix) and time.monotonic() < deadline:
            time.sleep(1.0)  # the dead owner's `docker run`/`orbctl create` still making a machine
        try:  # (a closed session: reap finds the machines by their prefix on the engine)
            engine = engine or get_backend(name)
            reap(engine, registry, session_id)
        except MachineError:
            continue  # the engine is away: try again, the next prune retries too
    return 0


def left(registry: Registry, session_id: str) -> bool:
    """Whether machines of the session are still recorded after a reap (deletions that failed)."""
    session = registry.get(session_id)
    return session is not None and bool(session.machines)


def _engine_call_running(prefix: str) -> bool:
    """Whether an engine call naming a machine ``prefix...`` runs: one the dead owner started
    (``docker run -d --name pto-...``, ``orbctl create ... pto-...``) lives on and may still make
    its machine. An engine call is a process whose program (or, for a script, its first
    argument) is an engine's client (:func:`.engine_clients`); a machine's own processes that
    name it (Podman's conmon, Incus's LXC monitor) are not calls and live as long as it does."""
    proc = Path("/proc")
    if proc.is_dir():  # Linux
        calls = []
        for entry in proc.iterdir():
            try:
                if entry.name.isdigit():
                    calls.append((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
            except OSError:
                continue  # it ended meanwhile
    else:  # macOS
        try:
            out = subprocess.run(["ps", "-A", "-o", "args="], capture_output=True, text=True,
                                 timeout=settings.POLL_TIMEOUT).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        calls = [line.split() for line in out.splitlines()]
    clients = engine_clients()
    return any(any(Path(arg).name in clients for arg in argv[:2])
               and any(prefix in arg for arg in argv) for argv in calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pytest-orbstack session watcher (internal)")
    parser.add_argument("--session", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--engine", default=None)
    args = parser.parse_args(argv)
    return watch(args.session, args.engine, args.state_dir, sys.stdin.buffer)


if __name__ == "__main__":
    raise SystemExit(main())
