"""Shared plumbing of the benchmarks: side-by-side timing, the raw engine, cleanup, the table.

Every benchmark compares pytest-orbstack's path (side A) with the engine used directly or with
another tool's path (side B) *in the same run*: the sides alternate (A B, then B A, ...) so
that drift on a noisy machine hits both, every side is repeated, and the reported ratio is
median(A) / median(B). Timings are never asserted anywhere; ``run.py`` prints PASS/MISS.

Everything a benchmark creates is named or labelled so that :meth:`BenchSession.cleanup` finds
it again: Lifecycle machines carry the label ``pytest-orbstack.session=<sid>`` of a session id
made here, raw containers the label ``pytest-orbstack-bench=<run id>``, inner pytest runs use a
state directory of their own whose ``sessions.log`` names their session ids. Cleanup runs in a
``finally`` (so on Ctrl-C too) with SIGINT ignored while it works. Clone and snapshot images of
those machines are removed; the prepared base image ``pytest-orbstack/debian:...`` is the
package's shared per-host cache and stays (see :meth:`BenchSession.prepared_image`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import READY_STATES, Backend
from pytest_orbstack.lifecycle import Lifecycle
from pytest_orbstack.registry import Registry

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PYTHON = sys.executable
IMAGE = "debian:bookworm"
RAW_LABEL = "pytest-orbstack-bench"


# -- results ------------------------------------------------------------------------------------
@dataclass
class Result:
    """One row of the table: ``ratio`` (A/B, lower is better) against ``target``."""
    name: str
    ratio: float
    target: float
    strict: bool = False  # True: ratio < target; False: ratio <= target
    unit: str = "x"       # "x" for ratios, "MiB" for absolute values
    detail: str = ""
    error: bool = False   # the benchmark could not run; detail says why

    @property
    def passed(self) -> bool:
        return self.ratio < self.target if self.strict else self.ratio <= self.target

    @property
    def verdict(self) -> str:
        return "ERROR" if self.error else ("PASS" if self.passed else "MISS")

    @property
    def target_text(self) -> str:
        return f"{'<' if self.strict else '<='} {self.target:g}{'' if self.unit == 'x' else ' ' + self.unit}"


def print_table(results: list[Result], out=sys.stdout) -> None:
    width = max([len("benchmark")] + [len(r.name) for r in results])
    print(f"{'benchmark':<{width}}  {'measured':>10}  {'target':>10}  verdict", file=out)
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  -------", file=out)
    for r in results:
        value = "-" if r.error else f"{r.ratio:.3f}" + ("" if r.unit == "x" else f" {r.unit}")
        print(f"{r.name:<{width}}  {value:>10}  {r.target_text:>10}  {r.verdict}", file=out)
    for r in results:
        if r.detail:
            print(f"\n[{r.name}]\n{r.detail}", file=out)


# -- timing -------------------------------------------------------------------------------------
def timed(func: Callable[[], object]) -> float:
    """Wall-clock seconds of ``func()``."""
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


class Comparison:
    """Seconds per round of each side, the sides run alternately (see :func:`alternate`)."""

    def __init__(self, names: list[str]) -> None:
        self.times: dict[str, list[float]] = {name: [] for name in names}

    def median(self, side: str) -> float:
        return statistics.median(self.times[side])

    def ratio(self, a: str, b: str) -> float:
        """median(A) / median(B): medians of interleaved samples, robust to outliers and,
        thanks to the alternation, to drift."""
        return self.median(a) / self.median(b)

    def describe(self, a: str, b: str, unit: str = "s") -> str:
        fmt = (lambda v: f"{v * 1000:.1f}ms") if unit == "ms" else (lambda v: f"{v:.2f}s")
        per_round = [x / y for x, y in zip(self.times[a], self.times[b], strict=True)]
        return (f"  A {a}: median {fmt(self.median(a))} "
                f"(rounds: {', '.join(fmt(v) for v in self.times[a])})\n"
                f"  B {b}: median {fmt(self.median(b))} "
                f"(rounds: {', '.join(fmt(v) for v in self.times[b])})\n"
                f"  A/B per round: {', '.join(f'{r:.2f}' for r in per_round)}; "
                f"median(A)/median(B) = {self.ratio(a, b):.3f}")


def alternate(sides: dict[str, Callable[[int], float]], rounds: int,
              progress: Callable[[str], None] | None = None) -> Comparison:
    """Run every side once per round, the order rotating from round to round (A B, B A, ... for
    two sides); each call gets the round number and returns the seconds to count (so it can
    leave its own set-up and teardown out)."""
    result = Comparison(list(sides))
    items = list(sides.items())
    for i in range(rounds):
        order = items if i % 2 == 0 else items[::-1]
        if len(items) > 2:
            shift = i % len(items)
            order = order[shift:] + order[:shift]
        for name, side in order:
            result.times[name].append(side(i))
        if progress:
            progress(f"round {i + 1}/{rounds}: " + "  ".join(
                f"{name} {times[-1]:.2f}s" for name, times in result.times.items()))
    return result


@contextlib.contextmanager
def traced_subprocesses() -> Iterator[list[tuple[float, list[str]]]]:
    """Record (seconds, argv) of every ``subprocess.run`` in this process while active: the
    timing breakdown that explains where a benchmark's time goes."""
    calls: list[tuple[float, list[str]]] = []
    real = subprocess.run

    def run(argv, *args, **kwargs):
        started = time.perf_counter()
        try:
            return real(argv, *args, **kwargs)
        finally:
            calls.append((time.perf_counter() - started, list(argv) if not isinstance(argv, str)
                          else [argv]))
    subprocess.run = run
    try:
        yield calls
    finally:
        subprocess.run = real


def summarize_calls(calls: list[tuple[float, list[str]]], runs: int,
                    wall: float | None = None) -> str:
    """Per-call-kind totals (per run) of :func:`traced_subprocesses` records; with ``wall``
    (total seconds of the ``runs``), also the time spent outside engine calls."""
    kinds: dict[str, list[float]] = {}
    for seconds, argv in calls:
        sub = argv[1:2]
        if sub == ["exec"]:
            key = "exec " + argv[-1][:60]
        elif sub and sub[0] in ("container", "image", "network"):
            key = " ".join(argv[1:3])
        else:
            key = " ".join(sub)
        kinds.setdefault(key, []).append(seconds)
    rows = sorted(kinds.items(), key=lambda kv: -sum(kv[1]))
    lines = []
    if wall is not None:
        other = wall - sum(s for s, _ in calls)
        lines.append(f"    {other / runs * 1000:7.1f}ms/run  outside engine calls (poll sleeps, Python)")
    return "\n".join(lines + [f"    {sum(v) / runs * 1000:7.1f}ms/run  {len(v) / runs:4.1f} calls/run  {k}"
                     for k, v in rows])


# -- the engine without pytest-orbstack ------------------------------------------------------------
class RawEngine:
    """The engine driven directly, as a user would without this package (side B)."""

    def __init__(self, session: BenchSession) -> None:
        self.session = session

    def name(self, what: str) -> str:
        return f"ptobench-{self.session.run_id}-{what}"

    def machine_cycle(self, name: str) -> None:
        """What one inner test does, on the bare engine: create, two commands, delete."""
        self.create(name)
        try:
            subprocess.run(self.exec_argv(name, "hostname"), capture_output=True)
            subprocess.run(self.exec_argv(name, "systemctl", "is-system-running"), capture_output=True)
        finally:
            self.delete(name)


class RawDocker(RawEngine):
    """``docker run`` with backends/docker.py's systemd flags on the same prepared image."""

    def __init__(self, session: BenchSession) -> None:
        super().__init__(session)
        from pytest_orbstack.backends.docker_commands import SYSTEMD_FLAGS
        self.flags = SYSTEMD_FLAGS
        self.image = session.prepared_image()

    def create(self, name: str, poll: float = 0.2) -> None:
        subprocess.run(["docker", "run", "-d", "--name", name, *self.flags, "--label",
                        f"{RAW_LABEL}={self.session.run_id}", self.image],
                       check=True, capture_output=True)
        while True:
            state = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                                   capture_output=True, text=True).stdout.strip()
            if state in READY_STATES:
                return
            time.sleep(poll)

    def delete(self, name: str) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["docker", "exec", name, *command]

    def testinfra_spec(self, name: str) -> str:
        return f"docker://root@{name}"

    def pyinfra_args(self, name: str) -> list[str]:
        cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], check=True,
                             capture_output=True, text=True).stdout.strip()
        return [f"@docker/{cid}"]

    def sweep(self) -> None:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                              f"label={RAW_LABEL}={self.session.run_id}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)


class RawOrbStack(RawEngine):
    """``orbctl create`` / ``orbctl run``; baselines of other tools go through OrbStack's SSH
    server (``NAME@orb``). Written for a Mac, not run on the Linux machine of docs/performance.md."""

    ssh_config = Path.home() / ".orbstack" / "ssh" / "config"

    def create(self, name: str, poll: float = 0.2) -> None:
        subprocess.run(["orbctl", "create", IMAGE, name], check=True, capture_output=True)
        while True:
            state = subprocess.run(["orbctl", "run", "-m", name, "-u", "root", "systemctl",
                                    "is-system-running"], capture_output=True, text=True).stdout.strip()
            if state in READY_STATES:
                return
            time.sleep(poll)

    def delete(self, name: str) -> None:
        subprocess.run(["orbctl", "delete", "-f", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["orbctl", "run", "-m", name, "-u", "root", *command]

    def testinfra_spec(self, name: str) -> str:
        return f"ssh://root%40{name}@orb?ssh_config={self.ssh_config}"

    def pyinfra_args(self, name: str) -> list[str]:
        return ["orb", "--ssh-user", f"root@{name}", "--data", "ssh_config_file=" + str(self.ssh_config),
                "--data", "ssh_strict_host_key_checking=off"]

    def sweep(self) -> None:
        out = subprocess.run(["orbctl", "list", "-q"], capture_output=True, text=True).stdout
        for name in out.split():
            if name.startswith(self.name("")):
                self.delete(name)


# -- one benchmark session: backend, lifecycles, cleanup ---------------------------------------
class BenchSession:
    """Backend, temp dirs, Lifecycle factory and the record of everything to clean up."""

    def __init__(self, kind: str = "docker", verbose: bool = True) -> None:
        self.kind = kind
        self.verbose = verbose
        self.run_id = secrets.token_hex(3)
        self.backend: Backend = get_backend(kind)
        self.backend.list()  # fails now if the engine does not answer
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ptobench-{self.run_id}-"))
        self.registry = Registry(self.tmp / "state")
        self.session_ids: list[str] = []
        self.inner_state_dirs: list[Path] = []
        self._raw: RawEngine | None = None

    def log(self, line: str) -> None:
        if self.verbose:
            print(f"  . {line}", file=sys.stderr, flush=True)

    @property
    def raw(self) -> RawEngine:
        if self._raw is None:
            self._raw = RawDocker(self) if self.kind == "docker" else RawOrbStack(self)
        return self._raw

    def prepared_image(self) -> str:
        """Docker: tag of the prepared image machines run. It is pytest-orbstack's own per-host
        cache (built by the first machine of any session, shared by all, never deleted by the
        package), so cleanup leaves it, as the test suite does: removing it under concurrent
        sessions would break their next ``docker run``."""
        return self.backend.prepare(IMAGE)  # type: ignore[attr-defined]

    def new_session_id(self) -> str:
        """A registered session id whose machines (``pto-<id>-*``) cleanup deletes."""
        sid = f"b{secrets.token_hex(3)}"
        self.session_ids.append(sid)
        self.registry.open(sid, self.backend.kind)
        return sid

    def lifecycle(self, backend: Backend | None = None) -> Lifecycle:
        """A Lifecycle like the plugin's (on ``backend``, default the session's), with a
        registry and shared dir of this session."""
        sid = self.new_session_id()
        return Lifecycle(backend or self.backend, self.registry, sid, self.tmp / f"shared-{sid}")

    @staticmethod
    def finish_shared(lifecycle: Lifecycle) -> None:
        """Delete a Lifecycle's golden/shared machines, as the plugin does at session end."""
        finish = getattr(lifecycle, "finish_shared", None)
        if finish is not None:
            finish(failed=False)
        else:  # the API before Lifecycle.finish_shared
            lifecycle.finish_worker(1, failed=False)  # type: ignore[attr-defined]

    def inner_state_dir(self) -> Path:
        """A PYTEST_ORBSTACK_STATE_DIR for inner pytest runs (their sessions are swept too)."""
        path = self.tmp / f"inner-state-{len(self.inner_state_dirs)}"
        self.inner_state_dirs.append(path)
        return path

    def _all_session_ids(self) -> list[str]:
        ids = list(self.session_ids)
        for state in self.inner_state_dirs:
            log = state / "sessions.log"
            if log.exists():
                ids += [line.split()[1] for line in log.read_text().splitlines() if len(line.split()) > 1]
        return ids

    def cleanup(self) -> list[str]:
        """Delete every machine, container and image this session made; returns their names."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return self._cleanup()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _cleanup(self) -> list[str]:
        prefixes = tuple(f"pto-{sid}-" for sid in self._all_session_ids())
        removed = []
        if prefixes:
            for machine in self.backend.list():
                if machine.name.startswith(prefixes):
                    self.backend.delete_if_exists(machine.name)
                    removed.append(machine.name)
        if self._raw is not None:
            self._raw.sweep()
        if self.kind == "docker":
            refs = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                  capture_output=True, text=True).stdout.split()
            refs = [ref for ref in refs if ref.startswith(("pytest-orbstack-clone:",
                                                           "pytest-orbstack-snapshot:"))]
            mine = [ref for ref in refs if ref.split(":", 1)[1].startswith(prefixes)] if prefixes else []
            if mine:
                subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True)
                removed += mine
        shutil.rmtree(self.tmp, ignore_errors=True)
        return removed


# -- command line ----------------------------------------------------------------------------
def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="docker", choices=("docker", "orbstack", "auto"),
                        help="engine to measure (default: docker)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args()


def terminate_like_ctrl_c() -> None:
    """SIGTERM raises KeyboardInterrupt, so every ``finally`` (cleanup) still runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def standalone(run: Callable[[BenchSession], list[Result]], description: str) -> int:
    """``main()`` of a benchmark module: one session, its results as a table, cleanup."""
    args = arguments(description)
    terminate_like_ctrl_c()
    session = BenchSession(args.backend, verbose=not args.quiet)
    try:
        results = run(session)
    finally:
        session.cleanup()
    print_table(results)
    return 0


def pytest_env(state_dir: Path) -> dict[str, str]:
    """Environment for an inner pytest run: its own state dir, no inherited xdist/pytest vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS"))}
    env["PYTEST_ORBSTACK_STATE_DIR"] = str(state_dir)
    return env


def quote(argv: list[str]) -> str:
    return shlex.join(argv)
