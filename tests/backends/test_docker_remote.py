"""The Docker engine over ssh: a second dockerd on this host (tests/support/remote_docker.py,
scripts/dev-remote-docker.sh) reached as ``DOCKER_HOST=ssh://root@pto-docker2``. The example suite
runs there; list, prune and the kill -9 watcher act there; the host checks read that engine's
host over ssh; a real restart of that dockerd and a real full data-root each fail one test in one
line, and afterwards the engine's own ``docker ps -a`` is empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from innerpytest import containers
from remote_docker import (
    DATA_ROOT,
    HOST,
    ROOT,
    alone,
    engine,
    inner,
    kill_9_mid_test,
    ours,
    script,
    snapshots,
    wait_for,
    why_not,
)

from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.backends.docker.engine_host import engine_host
from pytest_orbstack.backends.docker.host_limits import disk_hint, inotify_counts
from pytest_orbstack.errors import EngineUnavailable

REASON = why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="session")
def ssh_engine():
    """DOCKER_HOST of the ssh engine, made for this session (shared by workers), removed after."""
    with engine() as host:
        yield host


@pytest.fixture
def env(ssh_engine, tmp_path):
    """An inner session's environment: the ssh engine (this test's alone), a wide terminal
    (whole summary lines)."""
    with alone():
        yield {**os.environ, "COLUMNS": "400", "DOCKER_HOST": ssh_engine,
               "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}


def one_line_failure(stdout: str, test: str) -> str:
    """The short summary's one line for failed ``test`` (the summary has no traceback)."""
    summary = stdout.split("short test summary info")[-1]
    lines = [line for line in summary.splitlines() if line.startswith("FAILED") and test in line]
    assert len(lines) == 1 and "Traceback" not in summary, stdout[-4000:]
    return lines[0]


def test_the_host_checks_read_the_engines_host_over_ssh(ssh_engine):
    host = engine_host(ssh_engine)
    assert host.prefix and host.prefix[-2:] == ("--", "pto-docker2")
    assert (host.run(["sh", "-c", "echo $SSH_CONNECTION"]) or "").startswith("127.0.0.1 ")  # through sshd
    counts = inotify_counts(host)
    assert counts is not None and counts[0] >= 128 and counts[1] > 0, counts
    hint = disk_hint(ssh_engine, str(DATA_ROOT))
    assert hint.startswith(f"; the engine's host {HOST} has ") and hint.endswith(f"MiB in {DATA_ROOT}"), hint
    assert 2800 < int(hint.split(" free of ")[1].split()[0]) < 3100  # the 3 GiB data-root, not our disk
    assert "could not be read" in disk_hint("tcp://build-host:2376", "/var/lib/docker")


def test_an_unreachable_ssh_engine_is_one_line(tmp_path):
    one_line = (r"^docker daemon not answering at DOCKER_HOST=ssh://root@127\.0\.0\.1:1: "
                r"ssh: connect to host 127\.0\.0\.1 port 1: Connection refused$")
    with pytest.raises(EngineUnavailable, match=one_line):
        DockerBackend(env={"DOCKER_HOST": "ssh://root@127.0.0.1:1"}).list()


def test_the_example_suite_runs_on_the_ssh_engine(env, tmp_path):
    """examples/ (golden by operations.machine, clones, web+db) with every machine on the ssh engine."""
    timings = tmp_path / "timings.json"
    mine_before = containers()
    proc = inner(ROOT / "examples", env, f"--orbstack-timings={timings}", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "7 passed" in proc.stdout, proc.stdout[-3000:]
    machines = json.loads(timings.read_text())["machines"]
    assert all(m["outcome"] == "deleted" for m in machines), machines
    assert not ours() and not snapshots()  # nothing left on the ssh engine, the golden's snapshot neither
    assert not {m["name"] for m in machines} & (containers() - mine_before)  # none made on the local engine


KEPT_TEST = """
def test_kept(orbstack_machine):
    assert orbstack_machine().run("systemd-detect-virt -c").stdout.strip() == "docker"
"""


def test_list_and_prune_act_on_the_ssh_engine(env, tmp_path):
    (tmp_path / "test_kept.py").write_text(KEPT_TEST)
    kept = inner(tmp_path, env, "--orbstack-keep")
    assert kept.returncode == 0, kept.stdout[-3000:]
    (name,) = ours()
    listed = inner(tmp_path, env, "--orbstack-list")
    assert f"docker -H {HOST} exec -it {name} bash -l" in listed.stdout, listed.stdout
    pruned = inner(tmp_path, env, "--orbstack-prune")
    assert pruned.returncode == 0, pruned.stdout[-3000:]
    assert not ours()


SLOW_TEST = """
import os, time

def test_running(orbstack_machine):
    orbstack_machine()
    open(os.environ["MARK"], "w").write("running")
    time.sleep(120)
"""


def test_kill_9_leaves_nothing_on_the_ssh_engine_within_10s(env, tmp_path):
    seconds = kill_9_mid_test(tmp_path, env, SLOW_TEST, tmp_path / "mark")
    print(f"ssh engine empty {seconds:.1f} s after kill -9")
    assert seconds < 10, f"left on the ssh engine 10 s after kill -9: {ours()}"


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
    """The ssh engine's dockerd is stopped and started while test_restarted's machine runs."""
    (tmp_path / "test_restart.py").write_text(RESTART_TESTS)
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                             "-p", "no:randomly", "--orbstack-backend=docker", f"--basetemp={tmp_path / 'basetemp'}"],
                            cwd=tmp_path,
                            env={**env, "MARK": str(mark)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(mark, proc)
        script("restart-engine")
    finally:
        Path(f"{mark}.done").write_text("")
    out = proc.communicate(timeout=300)[0]
    line = one_line_failure(out, "test_restarted")
    print(line)
    assert "is not running" in line and "the docker engine restarted" in line, line
    assert "1 failed, 2 passed" in out, out[-3000:]
    assert not ours()


CUT_TESTS = """
import os, time

def wait(path):
    while not os.path.exists(path):
        time.sleep(0.2)

def test_before(orbstack_machine):
    assert orbstack_machine().run("true").succeeded

def test_cut(orbstack_machine):
    machine = orbstack_machine()
    open(os.environ["MARK"], "w").write("up")
    wait(os.environ["MARK"] + ".cut")
    try:
        machine.run("true")
    finally:  # the network comes back before the teardown
        open(os.environ["MARK"] + ".failed", "w").write("")
        wait(os.environ["MARK"] + ".back")

def test_after(orbstack_machine):
    assert orbstack_machine().run("true").succeeded
"""


def test_a_cut_network_to_the_engine_fails_one_test_in_one_line(env, tmp_path):
    """Every packet to the ssh engine's sshd is refused while test_cut's machine runs, the shared
    ssh connection included; the network comes back after that test failed."""
    (tmp_path / "test_cut.py").write_text(CUT_TESTS)
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                             "-p", "no:randomly", "--orbstack-backend=docker", f"--basetemp={tmp_path / 'basetemp'}"],
                            cwd=tmp_path,
                            env={**env, "MARK": str(mark)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(mark, proc)
        script("cut-network")
        Path(f"{mark}.cut").write_text("")
        wait_for(Path(f"{mark}.failed"), proc, timeout=120)
    finally:
        script("restore-network")
        Path(f"{mark}.back").write_text("")
    out = proc.communicate(timeout=300)[0]
    line = one_line_failure(out, "test_cut")
    print(line)
    assert line.endswith("EngineUnavailable: docker daemon not answering at DOCKER_HOST=ssh://root@pto-docker2: "
                         "ssh: connect to host 127.0.0.1 port 22022: Connection refused"), line
    assert "1 failed, 2 passed" in out, out[-3000:]
    assert not ours()


def fill(filler: Path) -> None:
    """Fill the engine's data-root filesystem, root's reserved blocks too (dockerd is root)."""
    free = os.statvfs(filler.parent)
    subprocess.run(["fallocate", "-l", str(free.f_bfree * free.f_frsize), str(filler)], capture_output=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}.rest", "bs=64k"], capture_output=True)
    left = os.statvfs(filler.parent)  # ext4 keeps up to 16 MiB for its own metadata
    assert left.f_bfree * left.f_frsize <= 32 << 20, f"{left.f_bfree * left.f_frsize} bytes still free"


FULL_TESTS = """
def test_full(orbstack_machine):
    orbstack_machine()
"""


def test_a_full_engine_disk_fails_the_test_in_one_line(env, tmp_path):
    (tmp_path / "test_full.py").write_text(FULL_TESTS)
    filler = DATA_ROOT / "filler"
    try:
        fill(filler)
        out = inner(tmp_path, env, "-rA")
    finally:
        for path in (filler, Path(f"{filler}.rest")):
            path.unlink(missing_ok=True)
    line = one_line_failure(out.stdout, "test_full")
    print(line)
    assert "the docker engine's disk is full (no space left on device)" in line, line
    assert f"the engine's host {HOST} has " in line and f"MiB in {DATA_ROOT}" in line, line
    assert not ours()
