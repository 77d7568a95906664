"""Benchmark 4 - scale: many machines, in parallel and in one process.

4a  Wall time of an inner pytest run (generated in a temp dir) of 16 tests, each with its own
    machine (``orbstack_machine()``) and two ``machine.run`` checks: ``pytest -n 2`` (A) vs
    ``pytest -n 0`` (B), whole command including start-up and teardown. Runs alternate
    (B A, A B, ...); ratio = median(A)/median(B); target <= 0.65. In the same rotation, the
    engine's own scaling: the same 16 machine cycles (raw ``docker run`` + poll, the two
    commands, ``docker rm``) in 2 threads vs 1 (printed beside the ratio), and the host's CPU
    load.
4b  Memory per live machine: a child Python process makes machines with ``Lifecycle.create``
    (the fixture's path), running a command and a testinfra check on each (so each has its
    testinfra Host); it reads ``VmHWM`` (peak RSS) and ``VmRSS`` from /proc/self/status
    (``ru_maxrss`` where there is no /proc) with 1 machine alive and with 16 alive, after a
    ``gc.collect()``; per machine = (value at 16 - value at 1) / 15. tracemalloc runs too (its
    own bookkeeping is inside the RSS figures, which are therefore an upper bound) and gives the
    Python-heap growth. After deleting all 16 it reports what stays allocated and how many
    testinfra Hosts testinfra still caches. Target: peak RSS growth < 5 MiB per machine.

    python bench/scale.py [--backend docker|orbstack]
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
from benchlib import IMAGE, PYTHON, BenchSession, Result

TESTS = 16
ROUNDS = 3
WALL_TARGET, MEMORY_TARGET = 0.65, 5.0

INNER_TEST = f'''
import pytest


@pytest.mark.parametrize("i", range({TESTS}))
def test_own_machine(orbstack_machine, i):
    machine = orbstack_machine()
    assert machine.run("hostname").stdout.strip() == machine.name
    assert machine.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
'''


def run(session: BenchSession, rounds: int = ROUNDS) -> list[Result]:
    return [wall_time(session, rounds), memory(session)]


# -- 4a ----------------------------------------------------------------------------------------
def wall_time(session: BenchSession, rounds: int) -> Result:
    suite = session.tmp / "scale-suite"
    suite.mkdir()
    (suite / "test_scale.py").write_text(INNER_TEST)
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    env = benchlib.pytest_env(session.inner_state_dir())

    def pytest_run(workers: int, where: Path):
        argv = [PYTHON, "-m", "pytest", "-q", "-n", str(workers), f"--orbstack-backend={session.kind}",
                str(where)]

        def run_suite(i: int) -> float:
            process = subprocess.Popen(argv, cwd=where, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            try:
                output = []
                seconds = benchlib.timed(lambda: output.append(process.communicate()[0]))
            except BaseException:  # Ctrl-C: let the inner session tear down its machines
                process.terminate()
                process.wait(timeout=300)
                raise
            if process.returncode != 0:
                raise RuntimeError(f"{benchlib.quote(argv)} failed:\n{output[0][-3000:]}")
            return seconds
        return run_suite

    def raw_run(workers: int):
        def run_machines(i: int) -> float:
            names = [session.raw.name(f"s{workers}-{i}-{k}") for k in range(TESTS)]
            streams = [names[w::workers] for w in range(workers)]
            with ThreadPoolExecutor(workers) as pool:
                return benchlib.timed(lambda: list(pool.map(
                    lambda stream: [session.raw.machine_cycle(n) for n in stream], streams)))
        return run_machines

    A, B = "pytest -n 2", "pytest -n 0"
    RAW_A, RAW_B = "raw engine, 2 streams", "raw engine, 1 stream"
    sides = {B: pytest_run(0, suite), A: pytest_run(2, suite), RAW_B: raw_run(1), RAW_A: raw_run(2)}
    session.log(f"scale: inner suite of {TESTS} machines, {rounds} rounds")
    with cpu_meter() as cpu:
        comparison = benchlib.alternate(sides, rounds, session.log)
    detail = (comparison.describe(A, B)
              + f"\n  bare engine, same {TESTS} machine cycles (docker run + poll, 2 commands, rm) "
              f"in 1 vs 2 threads: median {comparison.median(RAW_B):.2f}s vs "
              f"{comparison.median(RAW_A):.2f}s, ratio {comparison.ratio(RAW_A, RAW_B):.3f}")
    if cpu:
        detail += f"\n  host CPU busy over all rounds: {cpu[0]:.0%} of {os.cpu_count()} cores"
    return Result(f"4a {TESTS} machines: -n 2 / -n 0 wall (engine's own: "
                  f"{comparison.ratio(RAW_A, RAW_B):.3f})", comparison.ratio(A, B), WALL_TARGET,
                  detail=detail)


@contextlib.contextmanager
def cpu_meter():
    """Yields a list that gets the host's busy CPU fraction over the block (Linux only)."""
    def busy_total() -> tuple[int, int] | None:
        try:
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except OSError:
            return None
        return sum(values) - values[3] - values[4], sum(values)
    start, out = busy_total(), []
    yield out
    end = busy_total()
    if start and end and end[1] > start[1]:
        out.append((end[0] - start[0]) / (end[1] - start[1]))


# -- 4b ----------------------------------------------------------------------------------------
def memory(session: BenchSession) -> Result:
    sid = session.new_session_id()
    argv = [PYTHON, str(Path(__file__).resolve()), "--memory-child", session.kind,
            str(session.registry.dir.parent), sid, str(session.tmp / f"shared-{sid}")]
    session.log(f"scale: memory of one process holding 1 then {TESTS} machines")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    per = {key: (data[f"{TESTS}"][key] - data["1"][key]) / (TESTS - 1) / 1024 for key in data["1"]}
    detail = (f"  per live machine: peak RSS (VmHWM) {per['hwm_kib']:.3f} MiB, "
              f"RSS {per['rss_kib']:.3f} MiB, Python heap (tracemalloc) "
              f"{per['traced_kib'] * 1024:.1f} KiB\n"
              f"  process at 1 machine: VmHWM {data['1']['hwm_kib'] / 1024:.1f} MiB; at {TESTS}: "
              f"{data[str(TESTS)]['hwm_kib'] / 1024:.1f} MiB\n"
              f"  after deleting all {TESTS}: Python heap "
              f"{data['after']['traced_kib'] - data['1']['traced_kib']:+.1f} KiB "
              f"vs 1 machine; testinfra Host cache still holds {data['after']['cached_hosts']} Host(s)")
    return Result("4b memory per live machine", per["hwm_kib"], MEMORY_TARGET, strict=True,
                  unit="MiB", detail=detail)


def _memory_kib() -> dict[str, float]:
    gc.collect()
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        hwm, rss = (float(fields[k].split()[0]) for k in ("VmHWM", "VmRSS"))
    else:  # macOS: ru_maxrss is in bytes there
        hwm = rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"hwm_kib": hwm, "rss_kib": rss, "traced_kib": tracemalloc.get_traced_memory()[0] / 1024}


def memory_child(kind: str, state_dir: str, sid: str, shared_dir: str) -> None:
    """Run in a fresh process: print {"1": ..., "16": ..., "after": ...} as one JSON line."""
    import testinfra

    from pytest_orbstack.backends import get_backend
    from pytest_orbstack.lifecycle import Lifecycle
    from pytest_orbstack.registry import Registry

    tracemalloc.start()
    lifecycle = Lifecycle(get_backend(kind), Registry(Path(state_dir)), sid, Path(shared_dir))
    made, report = [], {}
    try:
        for i in range(TESTS):
            machine, record = lifecycle.create(f"mem-{i}", IMAGE)
            made.append((machine, record))
            assert machine.run("true").rc == 0 and machine.host.file("/etc/passwd").exists
            if len(made) in (1, TESTS):
                report[str(len(made))] = _memory_kib()
    finally:
        for machine, record in made:
            lifecycle.finish(machine, record, failed=False)
    del made, machine, record
    report["after"] = {**_memory_kib(), "cached_hosts": len(testinfra.host.Host._host_cache)}
    print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:6])
    else:
        raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
