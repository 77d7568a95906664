"""A second Docker engine on this host, reached over ssh (scripts/dev-remote-docker.sh): its own
dockerd on a 3 GiB loop-mounted ext4 data-root, an sshd on 127.0.0.1 with a throwaway key, and
the ssh alias ``pto-docker2``, so that ``DOCKER_HOST=ssh://root@pto-docker2`` reaches it.

Several xdist workers may use it at once: each registers its pid under a lock; the first starts
the engine, the last to leave (dead workers' pids are dropped) stops it, which removes everything
the script made. A test holds the engine alone (:func:`alone`): tests restart it, fill its disk
and count every container on it. Inner pytest sessions run on it with :func:`inner` and are killed mid-test with
:func:`kill_9_mid_test`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from innerpytest import kill_9_and_time_until_gone

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "dev-remote-docker.sh"
NAME = "pto-docker2"
HOST = f"ssh://root@{NAME}"
DATA_ROOT = Path(f"/var/lib/{NAME}")
USERS = Path(f"/run/{NAME}.users")  # pids of the processes using the engine
BUSY = Path(f"/run/{NAME}.busy.lock")  # held by the test using the engine


def why_not() -> str | None:
    """Why the ssh engine cannot be made here (not root, no dockerd), or None."""
    if os.geteuid() != 0:
        return "the ssh Docker engine is set up as root (scripts/dev-remote-docker.sh)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no local dockerd to copy the base image from"
    return None


def script(verb: str) -> None:
    """Run scripts/dev-remote-docker.sh VERB; AssertionError with its last lines when it fails."""
    proc = subprocess.run(["bash", str(SCRIPT), verb], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dev-remote-docker.sh {verb}: {proc.stderr[-2000:]}"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def engine() -> Iterator[str]:
    """The ssh engine while the block runs (started by its first user, stopped by its last); the
    DOCKER_HOST that reaches it."""
    lock = FileLock(f"/run/{NAME}.users.lock")
    with lock:
        users = [p for p in (USERS.read_text().split() if USERS.exists() else []) if _alive(p)]
        script("start")
        USERS.write_text(" ".join([*users, str(os.getpid())]))
    try:
        yield HOST
    finally:
        with lock:
            users = [p for p in USERS.read_text().split() if _alive(p) and p != str(os.getpid())]
            USERS.write_text(" ".join(users))
            if not users:
                script("stop")
                USERS.unlink()
                BUSY.unlink(missing_ok=True)
        if not users:
            Path(lock.lock_file).unlink(missing_ok=True)


@contextmanager
def alone(timeout: float = 1800) -> Iterator[None]:
    """The engine for this test only (another worker's test on it waits)."""
    with FileLock(str(BUSY), timeout=timeout):
        yield


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``docker -H ssh://root@pto-docker2 ARGS...`` (not checked)."""
    return subprocess.run(["docker", "-H", HOST, *args], capture_output=True, text=True, timeout=timeout)


def ours() -> set[str]:
    """Names of every container on the ssh engine (its ``docker ps -a``): only the tests use it."""
    proc = docker("ps", "-a", "--format", "{{.Names}}")
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def snapshots() -> set[str]:
    """The golden machines' snapshot images left on the ssh engine."""
    proc = docker("images", "--format", "{{.Repository}}:{{.Tag}}", "pytest-orbstack-snapshot")
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def inner(workdir: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """An inner pytest session in ``workdir`` on the ssh engine (``env`` sets DOCKER_HOST)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--orbstack-backend=docker", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    """Until ``path`` exists; AssertionError with the session's output if it ends or times out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.1)


def kill_9_mid_test(workdir: Path, env: dict[str, str], test: str, mark: Path) -> float:
    """Start a session of ``test`` (source; it writes ``mark`` once its machine runs), kill -9
    its process group then, and return the seconds until none of our containers is left on the
    ssh engine, 10 at most."""
    (workdir / "test_slow.py").write_text(test)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "--orbstack-backend=docker", f"--basetemp={workdir / 'basetemp'}"], cwd=workdir,
                            env={**env, "MARK": str(mark)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(mark, proc)
        assert ours(), "no machine on the ssh engine"
        return kill_9_and_time_until_gone(proc, ours)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
