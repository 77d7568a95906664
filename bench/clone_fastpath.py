"""Benchmark 3 - clone fast path: a per-test machine cloned from a deployed golden machine vs a
fresh machine with the deploy applied.

A: ``Lifecycle.create(key, "debian:bookworm", deploy=examples/nginx/deploy.py, clone=True)``
   once the golden machine exists (Docker: ``docker commit`` of the golden + ``docker run`` +
   wait for systemd; OrbStack: ``orbctl clone`` + start).
B: ``Lifecycle.create(key, ..., deploy=..., clone=False)``: fresh machine, then the deploy
   (apt-get update + install nginx and curl, template, page, service) through pyinfra's API.

The golden machine and a first clone (Docker: it commits the golden's snapshot image, shared by
all later clones) are made once, before the rounds: that cost is paid once per session and is
reported, not counted. Teardown is outside both timings. Sides alternate; ratio =
median(A)/median(B); target <= 0.10. Each machine is checked (nginx running) after timing.

    python bench/clone_fastpath.py [--backend docker|orbstack]
"""

from __future__ import annotations

import statistics

import benchlib
from benchlib import IMAGE, ROOT, BenchSession, Result

DEPLOY = ROOT / "examples" / "nginx" / "deploy.py"
ROUNDS = 4
TARGET = 0.10


def run(session: BenchSession, rounds: int = ROUNDS) -> list[Result]:
    lifecycle = session.lifecycle()
    phases: dict[str, list[dict[str, float]]] = {"clone": [], "fresh": []}
    try:
        session.log("clone fast path: golden machine (deploy applied once) and a first clone")
        golden_seconds = benchlib.timed(lambda: lifecycle.golden(IMAGE, DEPLOY, {}, {}))

        def side(clone: bool):
            def create(i: int) -> float:
                made = []
                seconds = benchlib.timed(lambda: made.append(lifecycle.create(
                    f"{'clone' if clone else 'fresh'}-{i}", IMAGE, deploy=DEPLOY, clone=clone)))
                machine, record = made[0]
                try:
                    if not machine.host.service("nginx").is_running:
                        raise AssertionError(f"nginx is not running in {machine.name}")
                    if i >= 0:
                        phases["clone" if clone else "fresh"].append(dict(record.phases))
                finally:
                    lifecycle.finish(machine, record, failed=False)
                return seconds
            return create

        A, B = "clone of golden", "fresh create + deploy"
        first_clone = side(True)(-1)  # may snapshot the golden once (Docker): session set-up
        comparison = benchlib.alternate({A: side(True), B: side(False)}, rounds, session.log)
    finally:
        session.finish_shared(lifecycle)  # deletes the golden machine (and its snapshot)
    detail = (comparison.describe(A, B)
              + f"\n  once per session: golden machine (create + deploy) {golden_seconds:.1f}s, "
              f"first clone {first_clone:.1f}s"
              + "\n  median phases (Lifecycle timings): " + "; ".join(
                  f"{kind}: " + ", ".join(f"{phase} {statistics.median(p[phase] for p in runs):.2f}s"
                                          for phase in runs[0])
                  for kind, runs in phases.items() if runs))
    return [Result("3 clone fast path", comparison.ratio(A, B), TARGET, detail=detail)]


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
