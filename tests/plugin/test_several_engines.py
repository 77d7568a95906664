"""One run over several engines (``--orbstack-engines=docker,incus``, issue 25 item 3): each xdist
worker makes its machines on its own engine, golden machines are made once per engine, nothing is
left on either engine after the run or within 10 s of a kill -9; the wrong list stops the run with
one line before any machine. What was made is asked of the engines themselves (``docker ps``,
``incus list``), not only of the run's own report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import pytest
from incusenv import incus, instances, why_no_incus
from innerpytest import containers, kill_9_and_time_until_gone, sessions_of, start

ROOT = Path(__file__).resolve().parents[2]
ENGINES = "--orbstack-engines=docker,incus"
RUNNING = '''
import os, time
import pytest

@pytest.mark.parametrize("i", range(2))
def test_running(orbstack_machine, orbstack_backend, i):
    orbstack_machine(clone=False)
    open(os.environ["MARK"] + "-" + orbstack_backend.name, "w").write("test")
    time.sleep(120)
'''


@pytest.fixture
def two_engines(inner, tmp_path):
    """``inner`` (whose end checks Docker) with Incus as well: skipped with one line without
    Incus; at its end no instance of its sessions is left on Incus either."""
    why = why_no_incus()
    if why:
        pytest.skip(why)
    yield inner
    leaked = set().union(*[instances(s) for s in sessions_of(tmp_path / "state")])
    for name in leaked:
        incus("delete", "--force", name)
    assert not leaked, f"instances leaked: {leaked}"


def _seen_on_engines(state: Path, seen: dict[str, set[str]]) -> None:
    """Add the machines the engines hold now, of the sessions of ``state``, to ``seen``."""
    for session in sessions_of(state):
        seen["docker"] |= containers(session)
        seen["incus"] |= instances(session)


def test_the_example_suite_on_two_engines(two_engines, tmp_path):
    """``-n 2`` over Docker and Incus: machines on both engines while it runs, one golden
    machine per engine, every test's engine in JUnit and the timings, nothing left after."""
    state, timings, junit = tmp_path / "state", tmp_path / "timings.json", tmp_path / "junit.xml"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", ENGINES,
                             f"--orbstack-timings={timings}", f"--junitxml={junit}"],
                            cwd=ROOT / "examples", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, set[str]] = {"docker": set(), "incus": set()}
    try:
        while proc.poll() is None:
            _seen_on_engines(state, seen)
            time.sleep(1.0)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-5000:]
    assert "7 passed" in output, output[-3000:]
    assert seen["docker"] and seen["incus"], seen  # both engines made machines during the run
    machines = json.loads(timings.read_text())["machines"]
    for engine, names in seen.items():  # one golden machine on an engine whose tests cloned, else none
        mine = [m for m in machines if m["backend"] == engine]
        goldens = {m["name"] for m in mine if m["kind"] == "golden"}
        cloned = any(m["created_by"] in ("clone", "spare") for m in mine)
        assert len(goldens) == int(cloned), (engine, mine)
        assert {n for n in names if "-golden-" in n} == goldens, (engine, names)  # it lives all the run
    assert Counter(m["backend"] for m in machines if m["kind"] == "golden")  # one engine cloned at least
    reported = {engine: {m["name"] for m in machines if m["backend"] == engine} for engine in seen}
    for engine, other in (("docker", "incus"), ("incus", "docker")):  # sampled once a second, so
        assert seen[engine] <= reported[engine], (engine, seen, reported)  # a short clone may be missed
        assert not reported[engine] & seen[other], (engine, seen, reported)
    engines_of = {case.get("name"): [p.get("value") for p in case.iter("property") if p.get("name").endswith(".engine")]
                  for case in ElementTree.parse(junit).iter("testcase")}
    assert {e for found in engines_of.values() for e in found} == {"docker", "incus"}  # each test's engine
    assert all(len(set(found)) == 1 for found in engines_of.values()), engines_of  # a group on one engine
    assert len(engines_of["test_web_queries_the_database_by_name"]) == 2, engines_of  # web and db
    sessions = sessions_of(state)
    assert len(sessions) == 2  # one per engine
    assert all(containers(s) == set() and instances(s) == set() for s in sessions)


def test_kill_9_leaves_neither_engine_anything_within_10s(two_engines, tmp_path, monkeypatch):
    """kill -9 to the process group of a ``-n 2`` run while each worker's test runs on a machine
    of its own engine: each engine's watcher reaps that engine."""
    two_engines.makepyfile(test_running=RUNNING)
    mark = tmp_path / "mark"
    monkeypatch.setenv("MARK", str(mark))
    proc = start(two_engines, "-n", "2", ENGINES, f"--basetemp={tmp_path / 'basetemp'}")
    try:
        deadline = time.monotonic() + 180
        while not all(Path(f"{mark}-{engine}").exists() for engine in ("docker", "incus")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        sessions = sessions_of(tmp_path / "state")
        assert any(containers(s) for s in sessions) and any(instances(s) for s in sessions)

        def left() -> set[str]:
            return set().union(*[containers(s) | instances(s) for s in sessions])
        seconds = kill_9_and_time_until_gone(proc, left)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert left() == set(), f"left {seconds:.1f}s after kill -9"


def test_without_xdist_the_first_engine_takes_every_test(two_engines):
    two_engines.makepyfile("def test_engine(orbstack_backend):\n    assert orbstack_backend.name == 'incus'\n")
    result = two_engines.runpytest_subprocess("-p", "no:cacheprovider", "--orbstack-engines=incus,docker")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["orbstack: --orbstack-engines=incus,docker without xdist workers (-n): "
                                 "every test runs on incus, the first"])


@pytest.mark.parametrize(("args", "ini", "line"), [
    ([ENGINES, "--orbstack-backend=docker"], "",
     "ERROR: --orbstack-engines=docker,incus and --orbstack-backend=docker: give one of them *"),
    (["--orbstack-engines=docker,lxd"], "", "ERROR: --orbstack-engines=docker,lxd: unknown engine 'lxd': *"),
    (["--orbstack-engines=docker,docker"], "", "ERROR: *engine 'docker' is named twice"),
    ([], "orbstack_engines = docker,incus\norbstack_backend = docker\n",
     "ERROR: ini orbstack_engines = docker,incus and orbstack_backend = docker: set one of them"),
    ([ENGINES], "", "ERROR: --orbstack-engines: engine incus does not answer: *"),
])
def test_a_wrong_list_stops_the_run_in_one_line(inner, tmp_path, monkeypatch, args, ini, line):
    """Before any machine (no session is registered) and in one line; for the engine that does
    not answer, an ``incus`` whose daemon is away stands first on PATH."""
    if "does not answer" in line:
        stub = tmp_path / "bin" / "incus"
        stub.parent.mkdir()
        stub.write_text("#!/bin/sh\necho 'Error: Failed to connect to the local daemon' >&2\nexit 1\n")
        stub.chmod(0o755)
        monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    inner.makeini(f"[pytest]\n{ini}")
    inner.makepyfile("def test_machine(orbstack_machine):\n    orbstack_machine()\n")
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [x for x in result.stderr.lines + result.stdout.lines if x.startswith("ERROR")]
    assert len(errors) == 1, errors
    result.stderr.fnmatch_lines([line])
    assert sessions_of(tmp_path / "state") == []
