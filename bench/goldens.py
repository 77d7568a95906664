"""Row 10 of bench/run.py: a two-golden suite ``pytest -n 2`` / ``pytest -n 0``, <= 0.65
(golden machines in parallel: pytest_orbstack/plugin/schedule.py, docs/design.md).

The suite: 12 tests, 6 on each of two golden machines (one image, two deploy files). Each deploy
is real pyinfra work: a user, a folder, a file, and a ``sleep 3`` standing in for a package
install (the host is offline), about 5 s in all. The tests of golden A are collected before
those of B, as a user's modules are. Three sides: ``-n 2`` (the plugin's scheduler), ``-n 0``,
and ``-n 2 -p no:orbstack_schedule`` (xdist's own load scheduler: how the plugin ran before).
Beside it, the engine's own ratio for the same shape of work: per golden, ``docker run`` + the
systemd poll + the deploy's commands over ``docker exec``, then 6 machines (run, poll,
``hostname``, ``rm``), the two goldens in 2 threads / in 1. Untimed first: one inner run of one
test (Python's bytecode cache). 3 rounds, the sides alternating."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from harness import Result, alternate, busy_cores, inner_pytest, timed

if TYPE_CHECKING:
    from run import Bench

PER_GOLDEN = 6
TARGET = 0.65
DEPLOY = '''
from pyinfra.operations import files, server
server.user(name="app user", user="app{name}", _sudo=True)
files.directory(name="app folder", path="/srv/{name}", _sudo=True)
files.line(name="app config", path="/srv/{name}/app.conf", line="golden={name}", _sudo=True)
server.shell(name="a package install's few seconds", commands=["sleep 3"], _sudo=True)
'''
TESTS = '''
import pytest

@pytest.mark.orbstack(deploy="deploy_{name}.py")
@pytest.mark.parametrize("n", range({count}))
def test_{name}(orbstack, n):
    assert orbstack.host.file("/srv/{name}/app.conf").contains("golden={name}")
'''
RAW_DEPLOY = ("id app{name} || useradd app{name}; mkdir -p /srv/{name}; "
              "echo golden={name} > /srv/{name}/app.conf; sleep 3")


def bench_goldens(bench: Bench, rounds: int = 3) -> list[Result]:
    """Row 10 (Docker, Podman): the three inner sides and the engine's two, alternating."""
    suite = bench.tmp / "goldens-suite"
    suite.mkdir()
    for name in ("a", "b"):
        (suite / f"deploy_{name}.py").write_text(DEPLOY.format(name=name))
        (suite / f"test_{name}.py").write_text(TESTS.format(name=name, count=PER_GOLDEN))
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")

    def inner_run(*args: str) -> Callable[[int], float]:
        argv = [sys.executable, "-m", "pytest", "-q", f"--orbstack-backend={bench.backend.name}", *args]
        return lambda i: inner_pytest(argv, suite, bench.inner_env())

    inner_run("test_a.py::test_a[0]")(-1)  # untimed: fills the bytecode cache
    A, B, BEFORE = "pytest -n 2", "pytest -n 0", "pytest -n 2, xdist's load scheduler"
    RAW_A, RAW_B = "raw engine, 2 threads", "raw engine, 1 thread"
    before = inner_run("-n", "2", "-p", "no:orbstack_schedule")
    sides = {A: inner_run("-n", "2"), B: inner_run("-n", "0"), BEFORE: before,
             RAW_A: raw_run(bench, 2), RAW_B: raw_run(bench, 1)}
    cores: dict[str, list[float]] = {name: [] for name in sides}
    bench.log(f"goldens: {2 * PER_GOLDEN} tests on two goldens, {rounds} rounds")
    c = alternate({name: busy_cores(side, cores[name]) for name, side in sides.items()}, rounds, bench.log,
                  warm_up=False)
    engine = c.ratio(RAW_A, RAW_B)
    detail = (c.describe(A, B) + f"\n  before (xdist's load scheduler) / -n 0: {c.median(BEFORE):.2f}s vs "
              f"{c.median(B):.2f}s, ratio {c.ratio(BEFORE, B):.3f} (rounds: "
              f"{', '.join(f'{t:.2f}s' for t in c.times[BEFORE])})"
              f"\n  the engine alone, two goldens' work in 2 vs 1 threads: {c.median(RAW_A):.2f}s vs "
              f"{c.median(RAW_B):.2f}s, ratio {engine:.3f}")
    if all(cores.values()):
        detail += (f"\n  host cores busy (median, of {os.cpu_count()}): " + ", ".join(
            f"{name} {statistics.median(used):.2f}" for name, used in cores.items()))
    name = f"10 {2 * PER_GOLDEN} tests, 2 goldens -n 2 / -n 0 (engine's own: {engine:.3f})"
    return [Result(name, c.ratio(A, B), TARGET, detail=detail)]


def raw_run(bench: Bench, threads: int) -> Callable[[int], float]:
    """The engine alone: each golden's work (a machine, its deploy's commands, 6 machines after
    it), the two goldens in ``threads`` threads."""
    def machine(name: str, *command: str) -> None:
        bench.raw.create(name)
        try:
            subprocess.run(bench.raw.exec_argv(name, *command), capture_output=True, check=True)
        finally:
            bench.raw.delete(name)

    def golden(prefix: str) -> None:
        machine(f"{prefix}-golden", "sh", "-c", RAW_DEPLOY.format(name=prefix[-1]))
        for k in range(PER_GOLDEN):
            machine(f"{prefix}-{k}", "hostname")

    def run(i: int) -> float:
        prefixes = [bench.raw_name(f"g{threads}-{i}-{name}") for name in ("a", "b")]
        with ThreadPoolExecutor(threads) as pool:
            return timed(lambda: list(pool.map(golden, prefixes)))
    return run
