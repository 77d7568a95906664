"""Nothing left behind, whatever ends the session: kill -9, SIGHUP (terminal closed), SIGTERM
and Ctrl-C (SIGINT to pytest alone, and to its whole process group as a terminal sends it),
while a machine is being created (its cloud-init runs), deployed to, cloned from its golden
machine, while a test runs on it (and the next test's spare clone boots beside it) and while it
is being deleted, in one process and under `-n 2`. (Cloning and deleting take the engine well
under a second; a ``docker`` in front of the real one stalls at that step, so that the signal
lands there.) Within 10 s of the signal the engine holds no container and no image of that
session, without any prune, and no temp file of it is left outside pytest's own temp folder.
The whole matrix runs on Docker; Incus and Podman run representative kill -9 cases of it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from innerpytest import run, session_leftovers, sessions_of, slow_engine, start

CONFTEST = '''
import os

def slow_deploy():
    from pyinfra.operations import server
    open(os.environ["MARK"], "w").write("deploy")  # runs on this host while pyinfra prepares
    server.shell(name="Take a while", commands=["sleep 120"])

def quick_deploy():
    from pyinfra.operations import server
    server.shell(name="Be quick", commands=["true"])
'''
TESTS = '''
import os, time
import pytest
from conftest import quick_deploy, slow_deploy

def test_deploying(orbstack_machine):
    orbstack_machine(deploy=slow_deploy, clone=False)

def test_creating(orbstack_machine, tmp_path):
    user_data = tmp_path / "user-data"
    user_data.write_text("#!/bin/sh\\nsleep 120\\n")
    orbstack_machine(cloud_init=str(user_data))

def test_cloning(orbstack_machine):
    orbstack_machine(deploy=quick_deploy)

def test_tearing_down(orbstack_machine):
    orbstack_machine(clone=False)

def test_running(orbstack_machine):
    orbstack_machine()
    open(os.environ["MARK"], "w").write("test")
    time.sleep(120)

@pytest.mark.parametrize("i", range(4))
def test_spare(orbstack_machine, i):
    orbstack_machine(deploy=quick_deploy)  # the next run's clone starts now, in the background
    open(os.environ["MARK"], "w").write("test")
    time.sleep(120)
'''
STALLS = {"cloning": "commit", "tearing_down": "rm"}  # the engine step where each phase waits
SETTLE = {"spare": 0.1}  # seconds in the phase before the signal (default 1): the spare boots
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGHUP": signal.SIGHUP, "SIGTERM": signal.SIGTERM,
           "SIGINT": signal.SIGINT, "SIGINT-group": signal.SIGINT}
TO_GROUP = ("SIGKILL", "SIGHUP", "SIGINT-group")  # also reach the engine's client processes


def in_phase(phase: str, mark: Path, state: Path) -> bool:
    """The mark file of the deploy, the test or the stalled engine step; for creation, a
    container of the session."""
    if phase != "creating":
        return mark.exists()
    sessions = sessions_of(state)
    return bool(sessions) and bool(session_leftovers(sessions[0]))


def engine_call_running(session: str) -> bool:
    """Whether a process naming one of the session's machines runs (an engine call of it)."""
    prefix = f"pto-{session}-".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # (a process that ended meanwhile)
            if prefix in cmdline.read_bytes():
                return True
    return False


def hang_report(proc: subprocess.Popen[str]) -> str:
    """What a session that does not end is doing: the processes of its group and its engine
    calls, then every thread's stack (pytest's faulthandler prints them on SIGABRT)."""
    ps = subprocess.run(["ps", "-eo", "pid,pgid,etimes,stat,args"], capture_output=True, text=True).stdout
    mine = [line for line in ps.splitlines()[1:] if line.split()[1] == str(proc.pid) or " pto-" in line]
    os.kill(proc.pid, signal.SIGABRT)
    try:
        output = proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        output = "(no stack dump within 15 s)"
    return "\n".join(mine) + "\n" + output[-8000:]


@pytest.mark.parametrize("dist", ["-n0", "-n2"])
@pytest.mark.parametrize("phase", ["creating", "deploying", "cloning", "running", "spare", "tearing_down"])
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_nothing_is_left_within_10s(inner, tmp_path, monkeypatch, sig, phase, dist):
    session, signalled = end_in_phase(inner, tmp_path, monkeypatch, sig, phase, dist)
    while session_leftovers(session) and time.monotonic() - signalled < 10:
        time.sleep(0.5)
    assert session_leftovers(session) == [], f"left {time.monotonic() - signalled:.1f}s after {sig}"
    temp = [p.name for p in Path("/tmp").iterdir() if session in p.name]
    assert temp == []


@pytest.mark.parametrize(("engine", "phase", "dist"), [
    ("incus", "deploying", "-n0"), ("incus", "running", "-n2"), ("podman", "spare", "-n0")])
def test_kill_9_leaves_nothing_on_incus_and_podman_within_10s(engine_inner, engine, tmp_path, monkeypatch, phase,
                                                             dist):
    """On Incus and Podman, representative cases of the matrix above: kill -9 to the process
    group mid-deploy (one process), while tests run with their spares under ``-n 2`` (Incus),
    and while a test runs on a clone and the next test's spare clone boots (Podman: the golden's
    snapshot image must go too)."""
    session, signalled = end_in_phase(engine_inner, tmp_path, monkeypatch, "SIGKILL", phase, dist)
    while session_leftovers(session, engine) and time.monotonic() - signalled < 10:
        time.sleep(0.5)
    assert session_leftovers(session, engine) == [], f"left {time.monotonic() - signalled:.1f}s after kill -9"
    # below the engine's own list: no process naming the session's machines (Podman's conmon
    # and the runtime's `runc init` of a container whose record `podman rm` dropped)
    assert not engine_call_running(session), "a process of the session's machines outlived them"


def end_in_phase(inner, tmp_path: Path, monkeypatch, sig: str, phase: str, dist: str) -> tuple[str, float]:
    """Run the inner session's ``phase`` test, send ``sig`` inside it, wait for pytest to end;
    (its session id, when the signal was sent)."""
    inner.makeconftest(CONFTEST)
    inner.makepyfile(test_endings=TESTS)
    mark = tmp_path / "mark"
    monkeypatch.setenv("MARK", str(mark))
    if phase in STALLS:
        monkeypatch.setenv("PATH", slow_engine(tmp_path / "bin", STALLS[phase], mark))
    args = ["-k", f"test_{phase}", f"--basetemp={tmp_path / 'basetemp'}"]
    if dist == "-n2":
        args += ["-n", "2"]
    proc = start(inner, *args)
    try:
        deadline = time.monotonic() + 120
        while not in_phase(phase, mark, tmp_path / "state"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        time.sleep(SETTLE.get(phase, 1.0))  # inside the phase: the deploy's command or the test's sleep runs
        # kill -9, a closed terminal and Ctrl-C in a terminal hit the whole process group
        if sig in TO_GROUP:
            os.killpg(proc.pid, SIGNALS[sig])
        else:
            os.kill(proc.pid, SIGNALS[sig])
        signalled = time.monotonic()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pytest still ran 60 s after {sig}; its threads and processes:\n{hang_report(proc)}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    sessions = sessions_of(tmp_path / "state")
    assert len(sessions) == 1
    return sessions[0], signalled


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_session_does_not_wait_for_a_slow_spare(inner, tmp_path, monkeypatch, sig):
    """SIGTERM or Ctrl-C to pytest alone while the engine is slow to start the next test's
    spare clone: the session ends at once, without waiting for a clone no test will use. That
    engine call lives on and makes the spare 20 s later (the first test's machine is kept, so
    the snapshot image it needs is still there); the watcher deletes it then, and only it."""
    inner.makeconftest(CONFTEST)
    inner.makepyfile(test_endings=TESTS)
    mark, stalled = tmp_path / "mark", tmp_path / "stalled"
    monkeypatch.setenv("MARK", str(mark))
    monkeypatch.setenv("PATH", slow_engine(tmp_path / "bin", "run", stalled, seconds=20, match="test-spare-1"))
    proc = start(inner, "-k", "test_spare", "--orbstack-keep=always")
    try:
        deadline = time.monotonic() + 120
        while not (mark.exists() and stalled.exists()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        os.kill(proc.pid, SIGNALS[sig])
        signalled = time.monotonic()
        output = proc.communicate(timeout=60)[0]
        ended = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ended < 8, f"pytest ended {ended:.1f}s after {sig}:\n{output}"
    (session,) = sessions_of(tmp_path / "state")
    kept = [n for n in session_leftovers(session) if "-test-spare-0-" in n]
    assert len(kept) == 1, session_leftovers(session)
    deadline = time.monotonic() + 90  # its own wait: the 20 s stall and a `docker run` on a loaded host
    while engine_call_running(session) and time.monotonic() < deadline:
        time.sleep(0.5)  # the stalled `docker run` makes the spare after pytest ended
    assert not engine_call_running(session)
    gone = time.monotonic() + 15
    while [n for n in session_leftovers(session) if "-test-spare-1-" in n] and time.monotonic() < gone:
        time.sleep(0.5)
    assert [n for n in session_leftovers(session) if "-test-spare-" in n] == kept
    assert run(inner, "--orbstack-prune").ret == 0  # the kept machine, then its snapshot image
    assert session_leftovers(session) == []


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_machine_made_after_its_session_died_is_deleted(engine_inner, engine, tmp_path, monkeypatch):
    """kill -9 to pytest alone while its ``docker run`` (``podman run``) is under way: that engine
    call lives on and makes the machine 12 s later, after the watcher's first sweeps. The
    watcher waits for it, then deletes the machine within 10 s. (Podman's conmon names the
    machine for as long as it runs: it is no engine call, else the watcher would wait 15 min.)"""
    mark, shims = tmp_path / "mark", tmp_path / "bin"
    monkeypatch.setenv("PATH", slow_engine(shims, "run", mark, seconds=12, engine=engine))
    engine_inner.makepyfile(test_orphan="def test_a(orbstack_machine):\n    orbstack_machine(clone=False)\n")
    proc = start(engine_inner)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)  # pytest alone: its `docker run` goes on
        proc.wait()
        (session,) = sessions_of(tmp_path / "state")
        while stalled_call_running(shims) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not stalled_call_running(shims)
        gone = time.monotonic() + 10
        while session_leftovers(session, engine) and time.monotonic() < gone:
            time.sleep(0.5)
        assert session_leftovers(session, engine) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stalled_call_running(shims: Path) -> bool:
    """Whether the engine call the shim in ``shims`` stalls (or the real call it makes) runs."""
    needle = str(shims).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # (a process that ended meanwhile)
            if needle in cmdline.read_bytes():
                return True
    return False
