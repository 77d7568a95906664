"""kill -9 to a session on Podman (its whole process group, as a closed terminal's SIGKILL) while
a test runs on its machine and the next test's spare clone boots: within 10 s Podman holds no
container and no image of that session (the watcher deletes them: it finds them by their labels,
as on Docker). tests/plugin/test_endings.py runs every ending on Docker."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from innerpytest import sessions_of, start
from podmanenv import podman, why_no_podman

REASON = why_no_podman()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
TESTS = '''
import os, time
import pytest

def quick_deploy():
    from pyinfra.operations import server
    server.shell(name="Be quick", commands=["true"])

@pytest.mark.parametrize("i", range(3))
def test_spare(orbstack_machine, i):
    orbstack_machine(deploy=quick_deploy)  # the next test's clone starts now, in the background
    open(os.environ["MARK"], "w").write("test")
    time.sleep(120)
'''


def leftovers(session: str) -> list[str]:
    label = f"label=pytest-orbstack.session={session}"
    names = podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
    return names + podman("images", "--filter", label, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()


def test_kill_9_leaves_nothing_on_podman(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "podman")
    monkeypatch.setenv("MARK", str(tmp_path / "mark"))
    pytester.makeini("[pytest]\norbstack_backend = podman\n")
    pytester.makepyfile(test_endings=TESTS)
    proc = start(pytester, f"--basetemp={tmp_path / 'basetemp'}")
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "mark").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        time.sleep(0.5)  # the spare clone boots
        (session,) = sessions_of(tmp_path / "state")
        assert leftovers(session)  # the golden, the test's machine, its images
        os.killpg(proc.pid, signal.SIGKILL)
        signalled = time.monotonic()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    while leftovers(session) and time.monotonic() - signalled < 10:
        time.sleep(0.5)
    left = leftovers(session)
    for name in left:  # clean up, then fail
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
    assert left == [], f"left {time.monotonic() - signalled:.1f}s after kill -9"
