"""The Docker engine over ssh: a second dockerd on this host (tests/support/remote_docker.py,
scripts/dev-remote-docker.sh) reached as ``DOCKER_HOST=ssh://root@pto-docker2``. The example suite
runs there; kill -9, a restart of that dockerd and a full data-root are real, and after each the
engine's own ``docker ps -a`` is empty."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from innerpytest import containers
from remote_docker import DATA_ROOT, ROOT, docker, engine, inner, kill_9_mid_test, ours, script, snapshots, why_not

REASON = why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="session")
def ssh_engine():
    """DOCKER_HOST of the ssh engine, made for this session (shared by workers), removed after."""
    with engine() as host:
        yield host


@pytest.fixture
def env(ssh_engine, tmp_path) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "400", "DOCKER_HOST": ssh_engine, "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}


def one_line_failure(stdout: str, test: str) -> str:
    """The short summary's one line for failed ``test`` (the summary has no traceback)."""
    summary = stdout.split("short test summary info")[-1]
    lines = [line for line in summary.splitlines() if line.startswith("FAILED") and test in line]
    assert len(lines) == 1 and "Traceback" not in summary, stdout[-4000:]
    return lines[0]


RESTART_TESTS = """
import os, time

def test_before(orbstack_machine):
    assert orbstack_machine().run("true").succeeded

def test_restarted(orbstack_machine):
    machine = orbstack_machine()
    open(os.environ["MARK"], "w").write("up")
    while not os.path.exists(os.environ["MARK"] + ".done"):
        time.sleep(0.2)
    machine.status()

def test_after(orbstack_machine):
    assert orbstack_machine().run("true").succeeded
"""


def test_a_restart_of_the_engine_fails_one_test_in_one_line(env, tmp_path):
    (tmp_path / "test_restart.py").write_text(RESTART_TESTS)
    mark = tmp_path / "mark"
    proc = subprocess.Popen([*inner_argv()], cwd=tmp_path, env={**env, "MARK": str(mark)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    from remote_docker import wait_for
    wait_for(mark, proc)
    script("restart-engine")
    Path(f"{mark}.done").write_text("")
    out = proc.communicate(timeout=300)[0]
    print(out[-3000:])
    line = one_line_failure(out, "test_restarted")
    assert "2 passed, 1 failed" in out, out[-3000:]
    print(line)
    assert not ours()


def inner_argv() -> list[str]:
    import sys
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--orbstack-backend=docker"]


FULL_TESTS = """
def test_full(orbstack_machine):
    orbstack_machine()
"""


def fill(filler: Path) -> None:
    """Fill the engine's data-root filesystem, root's reserved blocks too (dockerd is root)."""
    free = os.statvfs(filler.parent)
    subprocess.run(["fallocate", "-l", str(free.f_bfree * free.f_frsize), str(filler)], capture_output=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}.rest", "bs=64k"], capture_output=True)
    left = os.statvfs(filler.parent)
    assert left.f_bfree * left.f_frsize <= 32 << 20, f"{left.f_bfree * left.f_frsize} bytes still free"


def test_a_full_engine_disk_fails_the_test_in_one_line(env, tmp_path):
    (tmp_path / "test_full.py").write_text(FULL_TESTS)
    filler = DATA_ROOT / "filler"
    try:
        fill(filler)
        out = inner(tmp_path, env, "-rfE")
    finally:
        for f in (filler, Path(f"{filler}.rest")):
            f.unlink(missing_ok=True)
    print(out.stdout[-3000:])
    line = one_line_failure(out.stdout, "test_full")
    print(line)
    assert not ours()
