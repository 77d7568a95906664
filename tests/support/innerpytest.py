"""Helpers for running the plugin as users run it: inner pytest sessions on the docker
backend, checked from outside against the engine itself."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

import pytest
from incusenv import instances
from testenv import terminal_signals


def containers(session: str | None = None, tool: str = "docker") -> set[str]:
    """Names of the machines this package made on ``tool`` (docker or podman; of ``session`` when given)."""
    label = f"pytest-orbstack.session={session}" if session else "pytest-orbstack"
    out = subprocess.run([tool, "ps", "-a", "--filter", f"label={label}", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def sessions_of(state_dir: Path) -> list[str]:
    """Ids of the sessions that ran with this state dir (its sessions.log)."""
    log = state_dir / "sessions.log"
    return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


def run(pytester, *args) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)


def start(pytester, *args) -> subprocess.Popen:
    """An inner session as a user starts it in a terminal (its own process group; Ctrl-C not
    ignored, whatever this process was started with), for a test to signal. Its pytest temp
    folder is in the test's own unless ``args`` name one: a killed session's lock would keep
    pytest from removing a /tmp/pytest-of-USER folder of it for three days."""
    if not any(arg.startswith("--basetemp") for arg in args):
        args = (*args, f"--basetemp={pytester.path / f'basetemp-{secrets.token_hex(3)}'}")
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=terminal_signals)


def wait_for(path: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear")


def slow_engine(where: Path, verb: str, mark: Path, *, hang: str = "before", seconds: float = 300,
                match: str = "", engine: str = "docker") -> str:
    """A ``docker`` (or ``engine``) in ``where`` (put it first on PATH) that, the first time it is asked to
    ``verb`` (``commit``, ``rm``, ``run``...) with an argument containing ``match``, writes
    ``mark`` and stalls: ``before`` calling the real docker (the engine is busy at that step: a
    signal lands there) or ``after`` it (the engine did the work, the call never returns: a
    hanging engine), for ``seconds``. Other calls pass straight through. Returns the PATH."""
    import os
    import shutil

    real = shutil.which(engine)
    where.mkdir(parents=True, exist_ok=True)
    shim = where / engine
    shim.write_text(f'''#!{sys.executable}
import os, subprocess, sys, time
verb = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")  # (after global --flag=value)
mark, first = {str(mark)!r}, verb == {verb!r} and not os.path.exists({str(mark)!r})
first = first and any({match!r} in arg for arg in sys.argv[2:])
if first and {hang!r} == "before":
    open(mark, "w").write("{verb}")
    time.sleep({seconds!r})
code = subprocess.call([{real!r}, *sys.argv[1:]])
if first and {hang!r} == "after":
    open(mark, "w").write("{verb}")
    time.sleep({seconds!r})
sys.exit(code)
''')
    shim.chmod(0o755)
    return f"{where}{os.pathsep}{os.environ['PATH']}"


def kill_9_and_time_until_gone(proc: subprocess.Popen[str], ours: Callable[[], Collection[str]],
                               within: float = 10.0) -> float:
    """SIGKILL to ``proc``'s process group (started with ``start_new_session``), then the
    seconds until ``ours()`` (what the killed run left on its engines) is empty, ``within`` at
    most."""
    os.killpg(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.communicate(timeout=60)
    while ours() and time.monotonic() - killed < within:
        time.sleep(0.5)
    return time.monotonic() - killed


def session_leftovers(session: str, engine: str = "docker") -> list[str]:
    """The machines and images of ``session`` on ``engine`` (docker, podman: both by the
    session's label; incus: its instances)."""
    if engine == "incus":
        return sorted(instances(session))
    label = f"label=pytest-orbstack.session={session}"
    names = subprocess.run([engine, "ps", "-a", "--filter", label, "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=True).stdout.split()
    images = subprocess.run([engine, "images", "--filter", label, "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    return names + images
