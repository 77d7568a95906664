"""Benchmark 1 - harness overhead: what ``orbstack_machine()`` costs over the bare engine.

A: ``Lifecycle.create(key, "debian:bookworm")`` - the call the ``orbstack_machine()`` factory
   makes (registry entry, name checks, image resolution, ``docker run`` on the pytest-orbstack
   network, wait for systemd, default user with passwordless sudo, machine info), on a Lifecycle
   with its own registry, exactly as the plugin builds it. Stops when the Machine is returned.
B: ``docker run -d`` with backends/docker.py's ``SYSTEMD_FLAGS`` on the same prepared image,
   then ``docker exec NAME systemctl is-system-running`` every 0.2s (the interval of the
   backend's fallback poll) until running/degraded (OrbStack: ``orbctl create`` + ``orbctl
   run`` polls).

C: the same machine made through the project's pyinfra operation (``provision_machine``:
   ``operations.machine`` run by pyinfra's API on ``@local``), the route golden and session
   machines take; printed beside A so both routes' cost is measured in the same run.

Teardown is outside all timings. One untimed warm-up of each side fills the backend's
per-process caches (prepared image, network, architecture) as a session's first machine does.
Ratio = median(A)/median(B); target <= 1.10. Row 1b is median(C)/median(B), for information.
The details list the engine calls of each side (``subprocess.run`` traced) and the time outside
them (poll sleeps, Python).

    python bench/harness_overhead.py [--backend docker|orbstack]
"""

from __future__ import annotations

import benchlib
from benchlib import IMAGE, BenchSession, Result

ROUNDS = 11
TARGET = 1.10
A, B, C = "Lifecycle.create", "raw engine", "operations.machine"


def run(session: BenchSession, rounds: int = ROUNDS) -> list[Result]:
    raw = session.raw
    calls: dict[str, list[tuple[float, list[str]]]] = {A: [], B: [], C: []}

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

    def operation(i: int) -> float:
        from pytest_orbstack.provision import provision_machine
        name = raw.name(f"op-{i}")
        try:
            return traced(C, i, lambda: provision_machine(lifecycle.backend, name, IMAGE))
        finally:
            lifecycle.backend.delete_if_exists(name)

    sides = {A: harness, B: engine, C: operation}
    session.log("harness overhead: warm-up")
    for side in sides.values():
        side(-1)
    comparison = benchlib.alternate(sides, rounds, session.log)
    detail = comparison.describe(A, B)
    for side in sides:
        detail += (f"\n  engine calls of one create, {side} (mean of {rounds}):\n"
                   + benchlib.summarize_calls(calls[side], rounds, sum(comparison.times[side])))
    return [Result("1 harness overhead (create)", comparison.ratio(A, B), TARGET, detail=detail),
            Result("1b create via operations.machine", comparison.ratio(C, B), float("inf"),
                   detail=comparison.describe(C, B))]


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
