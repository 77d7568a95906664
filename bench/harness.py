"""bench/run.py's harness: a row's :class:`Result`, the table, the alternating rounds of a
comparison (:func:`alternate`), host cores busy while a side ran, and a timed inner pytest run."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


# -- results and timing ---------------------------------------------------------------------------
@dataclass
class Result:
    """One row: ``value`` (a ratio A/B, or MiB) against ``target``."""
    name: str
    value: float
    target: float
    unit: str = "x"
    strict: bool = False  # value < target (else <=)
    detail: str = ""
    error: bool = False

    @property
    def verdict(self) -> str:
        if self.error:
            return "ERROR"
        return "PASS" if (self.value < self.target if self.strict else self.value <= self.target) else "MISS"


def print_table(results: list[Result]) -> None:
    width = max([9] + [len(r.name) for r in results])
    print(f"{'benchmark':<{width}}  {'measured':>10}  {'target':>10}  verdict")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  -------")
    for r in results:
        unit = "" if r.unit == "x" else f" {r.unit}"
        value = "-" if r.error else f"{r.value:.3f}{unit}"
        target = f"{'<' if r.strict else '<='} {r.target:g}{unit}"
        print(f"{r.name:<{width}}  {value:>10}  {target:>10}  {r.verdict}")
    for r in results:
        if r.detail:
            print(f"\n[{r.name}]\n{r.detail}")


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


class Comparison:
    """Seconds of each side per round; the sides run alternately (:func:`alternate`)."""

    def __init__(self, names: list[str]) -> None:
        self.times: dict[str, list[float]] = {name: [] for name in names}

    def median(self, side: str) -> float:
        return statistics.median(self.times[side])

    def ratio(self, a: str, b: str) -> float:
        return self.median(a) / self.median(b)

    def describe(self, a: str, b: str, ms: bool = False) -> str:
        def fmt(v: float) -> str:
            return f"{v * 1000:.2f}ms" if ms else f"{v:.2f}s"
        lines = [f"  {side} {name}: median {fmt(self.median(name))} (rounds: "
                 f"{', '.join(fmt(v) for v in self.times[name])})" for side, name in (("A", a), ("B", b))]
        return "\n".join(lines + [f"  median(A)/median(B) = {self.ratio(a, b):.3f}"])


def alternate(sides: dict[str, Callable[[int], float]], rounds: int,
              log: Callable[[str], None] | None = None, warm_up: bool = True) -> Comparison:
    """Run every side once untimed (with ``warm_up``; round -1: it fills per-process and
    per-host caches, as a session's first use does), then once per round, the order reversed every
    other round and rotated (for more than two sides); each side gets the round number and
    returns the seconds to count."""
    result, items = Comparison(list(sides)), list(sides.items())
    for _, side in items if warm_up else ():
        side(-1)
    for i in range(rounds):
        order = items if i % 2 == 0 else items[::-1]
        order = order[i % len(items):] + order[:i % len(items)] if len(items) > 2 else order
        for name, side in order:
            result.times[name].append(side(i))
        if log:
            log(f"round {i + 1}/{rounds}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in result.times.items()))
    return result


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the host (Linux; zeros elsewhere)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0, 0
    return sum(values) - values[3] - values[4], sum(values)


def busy_cores(side: Callable[[int], float], used: list[float]) -> Callable[[int], float]:
    """``side``, also appending how many of the host's cores were busy (all processes, the
    kernel's own work included) while it ran."""
    def run(i: int) -> float:
        start = cpu_busy()
        seconds = side(i)
        end = cpu_busy()
        if end[1] > start[1]:
            used.append((end[0] - start[0]) / (end[1] - start[1]) * (os.cpu_count() or 1))
        return seconds
    return run


def inner_pytest(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds of one whole inner run of ``argv`` (a pytest command line) in ``cwd``;
    RuntimeError with its output's end when it fails. On Ctrl-C the inner session is terminated
    (it tears its machines down) before the interrupt goes on."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        seconds = timed(lambda: output.append(proc.communicate()[0]))
    except BaseException:
        proc.terminate()
        proc.wait(timeout=300)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{output[0][-3000:]}")
    return seconds
