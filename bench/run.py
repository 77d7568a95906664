"""Run all five benchmarks in one session and print one table (name, measured, target, verdict).

    python bench/run.py [--backend docker|orbstack] [--only 1,3] [--quiet]

Each benchmark is also runnable alone (``python bench/exec_overhead.py``). Everything the run
creates (machines, containers, images, temp dirs) is removed at the end, on Ctrl-C and on
SIGTERM too. Timings are printed, never asserted; see docs/performance.md for the latest table.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import clone_fastpath
import exec_overhead
import harness_overhead
import pyinfra_deploy
import scale

BENCHMARKS = {"1": harness_overhead, "2": exec_overhead, "3": clone_fastpath, "4": scale,
              "5": pyinfra_deploy}
ROW_NAMES = {"1": ["1 harness overhead (create)", "1b create via operations.machine"],
             "2": ["2a exec: 200 x machine.run", "2b testinfra suite (50 checks)"],
             "3": ["3 clone fast path"],
             "4": ["4a 16 machines: -n 2 / -n 0 wall", "4b memory per live machine"],
             "5": ["5 pyinfra deploy, 30 ops"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="docker", choices=("docker", "orbstack", "auto"))
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated benchmark numbers (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    benchlib.terminate_like_ctrl_c()
    started = time.monotonic()
    session = benchlib.BenchSession(args.backend, verbose=not args.quiet)
    results: list[benchlib.Result] = []
    timings = []
    try:
        for number in args.only.split(","):
            module = BENCHMARKS[number.strip()]
            session.log(f"benchmark {number}: {module.__doc__.splitlines()[0]}")
            began = time.monotonic()
            try:
                results += module.run(session)
            except Exception:  # one broken benchmark must not hide the others' results
                results += [benchlib.Result(name, float("nan"), 0, error=True,
                                            detail=traceback.format_exc())
                            for name in ROW_NAMES[number.strip()]]
            timings.append(f"{number}: {time.monotonic() - began:.0f}s")
    finally:
        removed = session.cleanup()
    print(f"\nbackend {session.backend.kind}; run {session.run_id}\n")
    benchlib.print_table(results)
    print(f"\ntotal {time.monotonic() - started:.0f}s ({', '.join(timings)}); "
          f"cleanup removed {len(removed)} leftover machine(s)/image(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
