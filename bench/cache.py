"""Row 8 of bench/run.py (``--only 8``): the golden cache (``--orbstack-cache``) on
examples/test_nginx.py, whole inner pytest runs of a copy of the example suite (its own
project, so its own cache scope).

8a  the second run, which clones from the cached golden machine / the first run, which makes,
    deploys and caches it (``--orbstack-cache=refresh``: a first run every round), <= 0.5.
8b  the same second run / the peer-style run: a fresh machine per test, each deployed
    (``--orbstack-cache=off -o orbstack_clone=false``), <= 0.15.

One untimed first run fills Python's bytecode cache and the cache; then 5 rounds, the sides
alternating. Every run must pass and the second must say ``created_by: cache`` in its timings.
The copy's cached golden machines are pruned at the end (``--orbstack-prune``), also on an error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness import Result, alternate, inner_pytest

if TYPE_CHECKING:
    from run import Bench

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FIRST, SECOND, FRESH = "first run (makes + caches)", "second run (from the cache)", "fresh machine per test"


def bench_cache_clones_only(bench: Bench) -> list[Result]:
    """Row 9 (``--only 9``): row 8 without the example's one ``clone=False`` test, which deploys
    a fresh machine of its own on every side (3 rounds): what the cache saves where every
    machine comes from the golden one."""
    return bench_cache(bench, 3, "-k", "not host_data", row="9")


def bench_cache(bench: Bench, rounds: int = 5, *select: str, row: str = "8") -> list[Result]:
    suite = bench.tmp / f"cache-suite-{row}"
    suite.mkdir()
    for part in ("test_nginx.py", "pytest.ini"):
        shutil.copy(EXAMPLES / part, suite / part)
    shutil.copytree(EXAMPLES / "nginx", suite / "nginx")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--orbstack-backend={bench.backend.name}",
            "test_nginx.py", *select]
    env = bench.inner_env()
    made_by: dict[str, set[str]] = {}

    def side(name: str, *args: str) -> Callable[[int], float]:
        def run(i: int) -> float:
            timings = suite / "timings.json"
            seconds = inner_pytest([*base, f"--orbstack-timings={timings}", *args], suite, env)
            made_by[name] = {m["created_by"] for m in json.loads(timings.read_text())["machines"]}
            return seconds
        return run

    sides = {FIRST: side(FIRST, "--orbstack-cache=refresh"), SECOND: side(SECOND, "--orbstack-cache=on"),
             FRESH: side(FRESH, "--orbstack-cache=off", "-o", "orbstack_clone=false")}
    try:
        bench.log("cache: an untimed first run (bytecode cache, the cached golden machine)")
        sides[FIRST](-1)
        c = alternate(sides, rounds, bench.log, warm_up=False)
    finally:
        subprocess.run([*base[:7], "--orbstack-prune"], cwd=suite, env=env, capture_output=True)
    if "cache" not in made_by[SECOND] or "cache" in made_by[FIRST] | made_by[FRESH]:
        raise AssertionError(f"created_by per side (last round): {made_by}")
    detail = f"{c.describe(SECOND, FIRST)}\n  fresh machine per test: median {c.median(FRESH):.2f}s " \
             f"(rounds: {', '.join(f'{v:.2f}s' for v in c.times[FRESH])})\n  created_by: {made_by}"
    which = f"test_nginx.py {' '.join(select)}".strip()
    return [Result(f"{row}a cached second run / first run ({which})", c.ratio(SECOND, FIRST), 0.5, detail=detail),
            Result(f"{row}b cached second run / fresh machine per test", c.ratio(SECOND, FRESH), 0.15)]
