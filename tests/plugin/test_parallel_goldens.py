"""Golden machines in parallel under ``pytest -n 2`` (:mod:`pytest_orbstack.plugin.schedule`):
two goldens, each made once, by different workers, at the same time; and the worker that makes
no golden runs other tests meanwhile. Both fail with ``-p no:orbstack_schedule`` (xdist's own
load scheduler sends both workers golden A's tests first). And the scheduler alone, with
stand-in workers: each worker goes on with its own golden's tests."""

from __future__ import annotations

import json

import pytest
from innerpytest import run

DEPLOY = '''
from pyinfra.operations import files, server
files.directory(name="srv", path="/srv/{name}", _sudo=True)
server.shell(name="a few seconds of work", commands=["sleep 3"], _sudo=True)
'''
TESTS = '''
import pytest

@pytest.mark.orbstack(deploy="deploy_{name}.py")
@pytest.mark.parametrize("n", range(4))
def test_{name}(orbstack, n):
    assert orbstack.host.file("/srv/{name}").is_directory
'''
# Each test's worker and setup interval, to find which worker made each golden machine.
CONFTEST = '''
import json, os, time
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    began = time.time()
    try:
        return (yield)
    finally:
        with open(os.environ["SETUPS"], "a") as out:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            out.write(json.dumps([worker, item.nodeid, began, time.time()]) + "\\n")
'''


def test_two_goldens_are_made_at_once_by_two_workers(inner, tmp_path, monkeypatch):
    """Tests of golden A all collected before those of golden B (xdist's load scheduler would
    start both workers on A, one waiting on the other's lock): each golden is made once, in the
    setup of a test of a different worker, and their makings overlap."""
    for name in ("a", "b"):
        (inner.path / f"deploy_{name}.py").write_text(DEPLOY.format(name=name))
    inner.makepyfile(test_a=TESTS.format(name="a"), test_b=TESTS.format(name="b"))
    inner.makeconftest(CONFTEST)
    setups, timings = tmp_path / "setups.jsonl", tmp_path / "timings.json"
    monkeypatch.setenv("SETUPS", str(setups))
    result = run(inner, "-n", "2", f"--orbstack-timings={timings}")
    result.assert_outcomes(passed=8)
    goldens = [m for m in json.loads(timings.read_text())["machines"] if m["kind"] == "golden"]
    assert len(goldens) == 2 and len({m["name"] for m in goldens}) == 2, goldens
    goldens.sort(key=lambda m: m["test"])  # "golden machine of ... with deploy deploy_a.py", then b
    assert all(m["test"].endswith(f"deploy_{name}.py") for m, name in zip(goldens, "ab", strict=True)), goldens
    spans = [(m["created_at"], m["created_at"] + m["phases"]["create"] + m["phases"]["deploy"]) for m in goldens]
    tests = [json.loads(line) for line in setups.read_text().splitlines()]
    # a golden's maker: the worker in the setup of a test of that golden while it was made (a
    # worker waiting on its lock would be there too)
    makers = [{worker for worker, nodeid, began, ended in tests
               if nodeid.startswith(f"test_{name}.py") and began <= start and end <= ended}
              for name, (start, end) in zip("ab", spans, strict=True)]
    assert all(len(maker) == 1 for maker in makers) and makers[0] != makers[1], (makers, spans, tests)
    (a_start, a_end), (b_start, b_end) = spans
    overlap = min(a_end, b_end) - max(a_start, b_start)
    assert overlap > 3, f"the goldens' makings overlap {overlap:.1f}s: {spans}"


def test_the_other_worker_runs_other_tests_while_a_golden_is_made(inner, tmp_path, monkeypatch):
    """One golden's tests collected before 4 tests of plain machines: while one worker makes
    the golden, the other runs plain tests and never waits on the golden's lock (no test of
    the golden is in setup on it while the golden is being made)."""
    (inner.path / "deploy_a.py").write_text(DEPLOY.format(name="a"))
    inner.makepyfile(test_a=TESTS.format(name="a"), test_plain='''
        import pytest
        @pytest.mark.parametrize("n", range(4))
        def test_plain(orbstack_machine, n):
            assert orbstack_machine().run("true").succeeded
    ''')
    inner.makeconftest(CONFTEST)
    setups, timings = tmp_path / "setups.jsonl", tmp_path / "timings.json"
    monkeypatch.setenv("SETUPS", str(setups))
    result = run(inner, "-n", "2", f"--orbstack-timings={timings}")
    result.assert_outcomes(passed=8)
    [golden] = [m for m in json.loads(timings.read_text())["machines"] if m["kind"] == "golden"]
    start, end = golden["created_at"], golden["created_at"] + golden["phases"]["create"] + golden["phases"]["deploy"]
    tests = [json.loads(line) for line in setups.read_text().splitlines()]
    during = {(worker, nodeid.partition("::")[0]) for worker, nodeid, began, ended in tests
              if began < end and ended > start}  # setups overlapping the golden's making
    makers = {worker for worker, where in during if where == "test_a.py"}
    others = {worker for worker, where in during if where == "test_plain.py"}
    assert len(makers) == 1 and others and not makers & others, (during, tests)


class _Worker:
    """A stand-in for xdist's WorkerController: what the scheduler sends it, run in order."""

    shutting_down = False

    def __init__(self, name: str) -> None:
        self.gateway = type("Gateway", (), {"id": name})()
        self.held: list[int] = []
        self.ran: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.held += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def test_a_worker_goes_on_with_its_own_goldens_tests(pytester, tmp_path):
    """The scheduler on its own, workers of equal speed (each finishes a test in turn): once both
    goldens are made, each worker is sent its own golden's tests (the ones its spare clone is
    made for) until they are all sent; xdist's order would send the second worker golden A's
    rest first."""
    from pytest_orbstack.plugin.schedule import GoldenScheduling

    collection = [f"test_{key}.py::test_{key}[{n}]" for key in "ab" for n in range(6)]
    groups = tmp_path / "golden-groups.json"
    groups.write_text(json.dumps({nodeid: nodeid[5] for nodeid in collection}))
    scheduler = GoldenScheduling(pytester.parseconfig("--tx", "2*popen"), None, groups)
    workers = [_Worker("gw0"), _Worker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    while any(worker.held for worker in workers):
        for worker in workers:  # a worker runs a test while it holds the next one, or at the end
            if worker.held and (len(worker.held) > 1 or scheduler.tests_finished):
                index = worker.held.pop(0)
                worker.ran.append(index)
                scheduler.mark_test_complete(worker, index, duration=0.5)
    runs = [[collection[index][5] for index in worker.ran] for worker in workers]
    assert sorted(runs) == [["a"] * 6, ["b"] * 6], runs


@pytest.mark.parametrize("seconds", [0.4, 5.0])
def test_a_worker_holds_its_next_spares_tests_when_it_begins_each_test(pytester, tmp_path, monkeypatch, seconds):
    """The scheduler on its own, each worker beginning its next test before the report of the
    last reaches the controller (as xdist's workers do), each test taking ``seconds``: with
    short tests, when a worker begins a test it holds the next ``spares.DEPTH`` tests of its
    golden (their machines are cloned ahead), until its golden has no more; with long tests
    (``schedule.SHORT_TEST``), after its first test only the next one (xdist's refill: one
    spare), so no worker holds tests another could run at the end."""
    from pytest_orbstack.machines.spares import DEPTH
    from pytest_orbstack.plugin import schedule

    clock = [0.0]
    monkeypatch.setattr(schedule.time, "monotonic", lambda: clock[0])
    collection = [f"test_{key}.py::test_{key}[{n}]" for key in "ab" for n in range(8)]
    groups = tmp_path / "golden-groups.json"
    groups.write_text(json.dumps({nodeid: nodeid[5] for nodeid in collection}))
    scheduler = schedule.GoldenScheduling(pytester.parseconfig("--tx", "2*popen"), None, groups)
    workers = [_Worker("gw0"), _Worker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    queues: dict[str, list[list[str]]] = {worker.gateway.id: [] for worker in workers}
    running: dict[str, int | None] = {worker.gateway.id: None for worker in workers}
    while any(worker.held or running[worker.gateway.id] is not None for worker in workers):
        clock[0] += seconds
        for worker in workers:
            name = worker.gateway.id
            running_before = running[name]
            if worker.held and (len(worker.held) > 1 or scheduler.tests_finished):
                running[name] = worker.held.pop(0)
                queues[name].append([collection[index][5] for index in worker.held])
            else:
                running[name] = None
            if running_before is not None:  # its report reaches the controller now
                scheduler.mark_test_complete(worker, running_before, duration=0.5)
    for name, seen in queues.items():
        own = seen[0][0] if seen[0] else "?"
        assert all(queue and set(queue) == {own} for queue in seen[:-1]), (name, queues)  # its own golden's
        if seconds < schedule.SHORT_TEST:  # (after the first reports, before the end)
            held = [len(queue) for queue in seen[2:len(seen) - DEPTH]]
            assert held and all(n >= DEPTH for n in held), (name, queues)
        else:  # (once the first batch is run: it was sent before any test's length was known)
            held = [len(queue) for queue in seen[4:-1]]
            assert held and all(n == 1 for n in held), (name, queues)
