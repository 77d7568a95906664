"""Benchmark 1 - harness overhead: what ``orbstack_machine()`` costs over the bare engine.

A: ``Lifecycle.create(key, "debian:bookworm")`` - the call the ``orbstack_machine()`` factory
   makes (registry entry, name checks, image resolution, ``docker run`` on the pytest-orbstack
   network, wait for systemd, default user with passwordless sudo, machine info), on a Lifecycle
   with its own registry, exactly as the plugin builds it. Stops when the Machine is returned.
B: ``docker run -d`` with backends/docker.py's ``SYSTEMD_FLAGS`` on the same prepared image,
   then ``docker exec NAME systemctl is-system-running`` every 0.2s (the interval of the
   backend's fallback poll) until running/degraded (OrbStack: ``orbctl create`` + ``orbctl
   run`` polls).

Teardown is outside both timings. One untimed warm-up of each side fills the backend's
per-process caches (prepared image, network, architecture) as a session's first machine does.
Ratio = median(A)/median(B); target <= 1.15. The details list the engine calls of each side
(``subprocess.run`` traced) and the time outside them (poll sleeps, Python).

    python bench/harness_overhead.py [--backend docker|orbstack]
"""

from __future__ import annotations

import benchlib
from benchlib import IMAGE, BenchSession, Result

ROUNDS = 11
TARGET = 1.15
A, B = "Lifecycle.create", "raw engine"


def run(session: BenchSession, rounds: int = ROUNDS) -> list[Result]:
    raw = session.raw
    calls: dict[str, list[tuple[float, list[str]]]] = {A: [], B: []}

    def traced(side: str, i: int, func) -> float:
        with benchlib.traced_subprocesses() as made_calls:
            seconds = benchlib.timed(func)
        if i >= 0:  # not the warm-up
            calls[side].extend(made_calls)
        return seconds

    lifecycle = session.lifecycle()

    def harness(i: int) -> float:
        made = []
        seconds = traced(A, i, lambda: made.append(lifecycle.create(f"h{i}", IMAGE)))
        machine, record = made[0]
        lifecycle.finish(machine, record, failed=False)
        return seconds

    def engine(i: int) -> float:
        name = raw.name(f"raw-{i}")
        try:
            return traced(B, i, lambda: raw.create(name))
        finally:
            raw.delete(name)

    sides = {A: harness, B: engine}
    session.log("harness overhead: warm-up")
    for side in sides.values():
        side(-1)
    comparison = benchlib.alternate(sides, rounds, session.log)
    detail = comparison.describe(A, B)
    for side in sides:
        detail += (f"\n  engine calls of one create, {side} (mean of {rounds}):\n"
                   + benchlib.summarize_calls(calls[side], rounds, sum(comparison.times[side])))
    return [Result("1 harness overhead (create)", comparison.ratio(A, B), TARGET, detail=detail)]


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
