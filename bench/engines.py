"""Row 7 of bench/run.py (``--backend docker --only 7``): 16 machine tests ``pytest -n 2
--orbstack-engines=E1,E2`` (each xdist worker on its own engine) / ``pytest -n 2`` on E1 alone,
<= 0.6. E1 is the bench's engine (``--backend``), E2 Incus (Docker when E1 is Incus or Podman).

Beside it, in the same rotation, the engines' own ratio: the same 16 raw create + boot + 2
commands + delete cycles (bench/run.py's raw engines: ``docker run``/``incus launch``, the
systemd poll, ``hostname`` and ``systemctl is-system-running``, ``rm -f``/``delete --force``)
in 2 threads, one per engine with 8 cycles each / both threads on E1. A must have made machines
on both engines and B on E1 only, else the row fails. Untimed first: one inner run of one test on
each engine (Python's bytecode cache; an engine's first machine). 2 rounds. What the row made on
E2 (the inner sessions' machines, the raw machines) is removed at its end, also on an error or
Ctrl-C; bench/run.py's cleanup removes what is on E1. Both engines share this host's cores.
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from harness import Comparison, Result, alternate, busy_cores, inner_pytest, timed

from pytest_orbstack.backends import get_backend

if TYPE_CHECKING:
    from run import Bench, RawDocker

TESTS = 16
TARGET = 0.6
ENGINES_TEST = f'''
import os
import pytest

@pytest.mark.parametrize("i", range({TESTS}))
def test_own_machine(orbstack_machine, orbstack_backend, i):
    machine = orbstack_machine()
    assert machine.run("hostname").stdout.strip() == machine.name
    assert machine.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    with open(os.environ["BENCH_ENGINES"], "a") as out:
        out.write(orbstack_backend.name + "\\n")
'''


def second_engine(first: str) -> str:
    """The engine beside the bench's: Incus, or Docker beside Incus or Podman."""
    return "docker" if first in ("incus", "podman") else "incus"


def raw_of(bench: Bench, engine: str) -> tuple[Bench, RawDocker]:
    """A view of ``bench`` on ``engine`` (same run id, so the same labels and names) and its raw
    engine (bench/run.py's classes; Docker's on the plugin's machine network, see :func:`on_network`)."""
    other = copy.copy(bench)
    other.backend, other._raw = get_backend(engine), None
    return other, on_network(other.raw, engine)


def on_network(raw: RawDocker, engine: str) -> RawDocker:
    """``raw``, for Docker a copy whose machines join the network the plugin's machines are on
    (``pytest-orbstack``, made by the untimed warm-up run), as the plugin's do: the raw cycles
    then do not depend on Docker's default bridge (``docker0``), which this host lost while
    other jobs ran (2026-12-06: ``could not find bridge docker0``)."""
    if engine != "docker":
        return raw
    from pytest_orbstack.backends.docker.commands import NETWORK
    raw = copy.copy(raw)
    raw.flags = (*raw.flags, "--network", NETWORK)
    return raw


def cycle(raw: RawDocker, name: str) -> None:
    """One raw machine's life, as row 4a's: create and boot, 2 commands, delete."""
    raw.create(name)
    try:
        for command in (["hostname"], ["systemctl", "is-system-running"]):
            subprocess.run(raw.exec_argv(name, *command), capture_output=True)
    finally:
        raw.delete(name)


def sweep_second(bench: Bench, other: Bench, raw: RawDocker) -> list[str]:
    """Remove what the row made on the second engine: the raw machines (by the run's label) and
    the inner sessions' machines (by their ``pto-<session>-`` prefix, clones first); returns the
    names of the latter still there afterwards."""
    raw.sweep()
    log = bench.tmp / "inner-state" / "sessions.log"
    sessions = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
    prefixes = tuple(f"pto-{sid}-" for sid in sessions)

    def left() -> list[str]:
        return [m.name for m in other.backend.list() if prefixes and m.name.startswith(prefixes)]
    for name in sorted(left(), key=lambda n: "-golden-" in n):
        other.backend.delete_if_exists(name)
    return left()


def compare(bench: Bench, engines: tuple[str, str], raws: dict[str, RawDocker], rounds: int) -> Result:
    """The four sides; AssertionError when the machines were not on the engines each side uses."""
    suite = bench.tmp / "engines-suite"
    suite.mkdir()
    (suite / "test_engines.py").write_text(ENGINES_TEST)
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    made: dict[str, list[str]] = {}

    def inner_run(side: str, *args: str) -> Callable[[int], float]:
        where = suite / f"engines-{len(made)}"
        made[side] = []
        env = {**bench.inner_env(), "BENCH_ENGINES": str(where)}
        argv = [sys.executable, "-m", "pytest", "-q", "-n", "2", *args]

        def run(i: int) -> float:
            where.unlink(missing_ok=True)  # this run's machines only
            seconds = inner_pytest(argv, suite, env)
            made[side] = where.read_text().split() if where.exists() else []
            return seconds
        return run

    def raw_run(side: str, split: tuple[str, str]) -> Callable[[int], float]:
        def run(i: int) -> float:
            names = [bench.raw_name(f"e{len(set(split))}-{i}-{k}") for k in range(TESTS)]

            def cycles(worker: int) -> None:
                for name in names[worker::2]:
                    cycle(raws[split[worker]], name)
            with ThreadPoolExecutor(2) as pool:
                seconds = timed(lambda: list(pool.map(cycles, range(2))))
            made[side] = [split[k % 2] for k in range(TESTS)]
            return seconds
        return run

    first, second = engines
    A, B = f"pytest -n 2 --orbstack-engines={first},{second}", f"pytest -n 2 --orbstack-backend={first}"
    RAW_A, RAW_B = f"raw, 2 threads: {first} + {second}", f"raw, 2 threads: {first} + {first}"
    for engine in engines:  # untimed: bytecode cache, each engine's first machine
        inner_run("warm-up", f"--orbstack-backend={engine}", "test_engines.py::test_own_machine[0]")(-1)
    sides = {A: inner_run(A, f"--orbstack-engines={first},{second}"), B: inner_run(B, f"--orbstack-backend={first}"),
             RAW_A: raw_run(RAW_A, engines), RAW_B: raw_run(RAW_B, (first, first))}
    cores: dict[str, list[float]] = {name: [] for name in sides}
    bench.log(f"engines: {TESTS} machine tests, {rounds} rounds")
    c = alternate({name: busy_cores(side, cores[name]) for name, side in sides.items()}, rounds, bench.log,
                  warm_up=False)
    placed = {side: dict(sorted(Counter(made[side]).items())) for side in sides}
    detail = describe(c, (A, B, RAW_A, RAW_B), first, placed, cores)
    for side, wanted in ((A, set(engines)), (B, {first})):
        if set(placed[side]) != wanted or sum(placed[side].values()) != TESTS:
            raise AssertionError(f"{side}: machines on {placed[side]}, expected {TESTS} on {sorted(wanted)}\n{detail}")
    return Result(f"7 {TESTS} machine tests -n 2, two engines / one (engines' own: {c.ratio(RAW_A, RAW_B):.3f})",
                  c.ratio(A, B), TARGET, detail=detail)


def describe(c: Comparison, names: tuple[str, str, str, str], first: str, placed: dict[str, dict[str, int]],
             cores: dict[str, list[float]]) -> str:
    """The row's detail: both comparisons, where the machines were, the host cores busy and the
    load average at the row's end (1 minute)."""
    A, B, RAW_A, RAW_B = names
    detail = (c.describe(A, B) + f"\n  the engines alone, same {TESTS} cycles in 2 threads, one per engine / "
              f"both on {first}: {c.median(RAW_A):.2f}s vs {c.median(RAW_B):.2f}s, ratio {c.ratio(RAW_A, RAW_B):.3f}"
              "\n  machines per engine (last round): " + "; ".join(f"{s}: {p}" for s, p in placed.items()))
    if all(cores.values()):
        detail += (f"\n  host cores busy (median, of {os.cpu_count()}): " + ", ".join(
            f"{name} {statistics.median(used):.2f}" for name, used in cores.items()))
    return detail + f"\n  load average at the row's end: {os.getloadavg()[0]:.1f} (1 min)"


def bench_engines(bench: Bench, rounds: int = 2) -> list[Result]:
    """Row 7 (see the module's docstring); RuntimeError when the second engine does not answer
    or a machine of the row is left on it."""
    first = bench.backend.name
    second = second_engine(first)
    other, raw_second = raw_of(bench, second)
    other.backend.list()  # fails now if the second engine does not answer
    bench.log(f"engines: {first} + {second}")
    try:
        rows = [compare(bench, (first, second), {first: on_network(bench.raw, first), second: raw_second}, rounds)]
    finally:
        left = sweep_second(bench, other, raw_second)
    if left:
        raise RuntimeError(f"machines left on {second}: {left}")
    return rows
