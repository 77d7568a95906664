"""pytest-orbstack's benchmarks: one harness, one run, one table (measured, target, verdict).

    python bench/run.py [--backend docker|podman|orbstack|incus] [--only 1,2,3,4,5,6,7] [--quiet]
    python bench/run.py [--backend docker|podman|orbstack|incus] [--only 1,2,3,4,5,6,7,8,9,10] [--quiet]

On Incus (``--backend incus --only 1,2,3``): B of 1 is ``incus launch`` of the same image + the
same systemd poll over ``incus exec``; B of 2a is ``incus exec NAME true``; 2b, 4 and 5 compare
with testinfra's and pyinfra's own Docker/SSH backends, which have no Incus counterpart here.

Every benchmark compares pytest-orbstack's path (side A) with a reference (side B) *in the same
run*: the sides alternate (A B, then B A, ...) so that drift on a noisy host hits both, and the
ratio printed is median(A) / median(B), lower is better. Timings are printed, never asserted.
Set-up and teardown stay outside the timed parts. Everything a run makes (machines, containers,
clone and snapshot images, temp dirs) is removed at the end, on Ctrl-C and SIGTERM too; the
package's prepared base image is its per-host cache and stays.

1   fixture-ready / raw engine, <= 1.10. A: ``Lifecycle.create(key, "debian:bookworm")``, the
    call ``orbstack_machine()`` makes (registry, name, image, ``docker run``, systemd ready,
    default user, info). B: ``docker run -d`` with the backend's systemd flags on the same
    prepared image, then ``docker exec NAME systemctl is-system-running`` every 0.2 s until
    running/degraded (OrbStack: ``orbctl create`` + ``orbctl run`` polls; Podman: ``podman run -d
    --systemd=always`` + ``podman exec`` polls). One untimed warm-up
    each; 11 rounds.
2a  200 x ``machine.run("true")`` / 200 x ``docker exec NAME true``, <= 0.10. Blocks of 20 calls
    alternate; the per-call medians are compared. Beside it, in the same rotation: our
    one-process argv (what ``PYTEST_ORBSTACK_SHELL=off`` costs) against the bare argv.
2b  50 testinfra checks (files, packages, services, users, groups, commands) on
    ``orbstack://root@NAME`` / on testinfra's own ``docker://root@NAME`` (OrbStack: testinfra's
    ssh backend through OrbStack's SSH server), same machine, <= 0.25. Both must give the same
    answers. One untimed pass each (testinfra's caches), then 4 rounds.
3   clone-from-golden / fresh create + deploy, <= 0.10: the time until a test's machine is
    ready. A: a run of 5 consecutive tests sharing a deploy, as the ``orbstack`` fixture makes
    their machines: ``Lifecycle.create(key, deploy=examples/nginx/deploy.py, next_key=...)``
    (the first clones on demand; each later one takes the spare cloned from the golden machine
    while the previous test ran its check and teardown), the mean per test; B: one test's
    fresh machine, ``clone=False`` (created, then deployed through pyinfra's API). Every
    machine is checked (nginx running) and deleted between tests, untimed. The golden machine
    and a first clone (Docker commits the snapshot then) are made once before the rounds and
    reported, not counted. 4 rounds.
4a  16 machine tests ``pytest -n 2`` / ``pytest -n 0``, whole inner runs, <= 0.65. In the same
    rotation the engine's own ratio: the same 16 machine cycles (raw run + poll, 2 commands, rm)
    in 2 threads / 1, printed beside it, and how many host cores each side kept busy (the kernel's
    own work included). One untimed ``-n 2`` run of one test first fills Python's bytecode cache
    (inner runs cache bytecode, as a user's do). 3 rounds.
4b  memory per live machine in the host process, < 5 MiB: a child process makes 16 machines
    with ``Lifecycle.create``, a command and a testinfra check on each; peak RSS (VmHWM; macOS
    ``ru_maxrss``) with 16 alive minus with 1, over 15. Then each machine gets a second
    persistent shell (its default user's): the RSS growth per shell in the host process, and
    the resident size of the engine's exec client process a shell keeps.
5   a 30-operation deploy: ``pyinfra -y @orbstack/NAME deploy.py`` / ``pyinfra -y
    @docker/CONTAINER deploy.py`` (OrbStack: pyinfra's @ssh through OrbStack's SSH server), the
    same container, whole CLI runs, <= 0.5. The deploy's target is removed (untimed) before each
    run, so every run changes every operation. One untimed run each, then 5 rounds.
6   Incus only, not in the default set (``--backend incus --only 6``): 8 machine tests
    ``pytest -n 2`` on a two-member Incus cluster built for the run (tests/support/nested_incus.py),
    the scheduler placing machines / all pinned to member m1, <= 0.75, the engine's own ratio
    (raw ``incus launch`` cycles in 2 threads, placed / ``--target m1``) beside it; bench/cluster.py.
7   not in the default set (``--backend docker --only 7``): 16 machine tests ``pytest -n 2`` over
    two engines (``--orbstack-engines=docker,incus``, one per worker) / ``-n 2`` on one, <= 0.6, the
    engines' own ratio (the same raw cycles, one thread per engine / both on one) beside it;
    bench/engines.py.
8   the golden cache, not in the default set (``--only 8``): examples/test_nginx.py's second run
    from the cache / its first run, <= 0.5, and / a fresh machine per test, <= 0.15; bench/cache.py.
9   row 8 without the example's one ``clone=False`` test (``--only 9``), bench/cache.py.
10  12 tests on two golden machines (two deploys of about 5 s), ``pytest -n 2`` / ``-n 0``, <= 0.65,
    xdist's own load scheduler (how the plugin ran before) and the engine's own ratio beside it;
    Docker or Podman (``--only 10``); bench/goldens.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import testinfra
from cache import bench_cache, bench_cache_clones_only
from cluster import bench_cluster
from engines import bench_engines
from goldens import bench_goldens
from harness import Result, alternate, busy_cores, inner_pytest, print_table, timed

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import READY_STATES, Backend
from pytest_orbstack.machines.lifecycle import Lifecycle
from pytest_orbstack.machines.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
IMAGE = "debian:bookworm"
RAW_LABEL = "pytest-orbstack-bench"
NGINX_DEPLOY = ROOT / "examples" / "nginx" / "deploy.py"
TESTS = 16


# -- the engine without pytest-orbstack (side B) ----------------------------------------------------
class RawDocker:
    """``docker run`` with backends/docker.py's systemd flags on the same prepared image."""

    exec_label = "docker exec"
    flags: tuple[str, ...]

    def __init__(self, bench: Bench) -> None:
        from pytest_orbstack.backends.docker.commands import SYSTEMD_FLAGS
        self.bench, self.flags = bench, SYSTEMD_FLAGS
        self.image = bench.backend.prepare(IMAGE)  # type: ignore[attr-defined]

    def create(self, name: str) -> None:
        subprocess.run(["docker", "run", "-d", "--name", name, *self.flags, "--label",
                        f"{RAW_LABEL}={self.bench.run_id}", self.image], check=True, capture_output=True)
        self.wait(name)

    def wait(self, name: str) -> None:
        while subprocess.run(self.exec_argv(name, "systemctl", "is-system-running"), capture_output=True,
                             text=True).stdout.strip() not in READY_STATES:
            time.sleep(0.2)

    def delete(self, name: str) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["docker", "exec", name, *command]

    def testinfra_spec(self, name: str) -> str:
        return f"docker://root@{name}"

    def pyinfra_args(self, name: str) -> list[str]:
        cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], check=True, capture_output=True,
                             text=True).stdout.strip()
        return [f"@docker/{cid}"]

    def sweep(self) -> None:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={RAW_LABEL}={self.bench.run_id}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)


class RawPodman(RawDocker):
    """``podman run -d --systemd=always`` (Podman's own systemd mode, as the podman backend runs
    machines; plus the ``--ulimit`` flags this host needs, :func:`~.podman.cli.own_limits`) on
    the same prepared image; ``podman exec``, testinfra's ``podman://``, pyinfra's ``@podman/``."""

    exec_label = "podman exec"

    def __init__(self, bench: Bench) -> None:
        from pytest_orbstack.backends.podman.cli import own_limits
        from pytest_orbstack.backends.podman.commands import SYSTEMD_FLAGS, ulimits
        self.bench, self.flags = bench, (*SYSTEMD_FLAGS, *ulimits(*own_limits()))
        self.image = bench.backend.prepare(IMAGE)  # type: ignore[attr-defined]

    def create(self, name: str) -> None:
        subprocess.run(["podman", "run", "-d", "--name", name, *self.flags, "--label",
                        f"{RAW_LABEL}={self.bench.run_id}", self.image], check=True, capture_output=True)
        self.wait(name)

    def delete(self, name: str) -> None:
        subprocess.run(["podman", "rm", "-f", "-v", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["podman", "exec", name, *command]

    def testinfra_spec(self, name: str) -> str:
        return f"podman://root@{name}"

    def pyinfra_args(self, name: str) -> list[str]:
        return [f"@podman/{name}"]

    def sweep(self) -> None:
        ids = subprocess.run(["podman", "ps", "-aq", "--filter", f"label={RAW_LABEL}={self.bench.run_id}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["podman", "rm", "-f", "-v", *ids], capture_output=True)


class RawOrbStack(RawDocker):
    """``orbctl create`` / ``orbctl run``; other tools through OrbStack's SSH server
    (``NAME@orb``). Written for a Mac; not run on the host of docs/performance.md."""

    ssh_config = Path.home() / ".orbstack" / "ssh" / "config"

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def create(self, name: str) -> None:
        subprocess.run(["orbctl", "create", IMAGE, name], check=True, capture_output=True)
        self.wait(name)

    def delete(self, name: str) -> None:
        subprocess.run(["orbctl", "delete", "-f", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["orbctl", "run", "-m", name, "-u", "root", *command]

    def testinfra_spec(self, name: str) -> str:
        return f"ssh://root%40{name}@orb?ssh_config={self.ssh_config}"

    def pyinfra_args(self, name: str) -> list[str]:
        return ["orb", "--ssh-user", f"root@{name}", "--data", f"ssh_config_file={self.ssh_config}",
                "--data", "ssh_strict_host_key_checking=off"]

    def sweep(self) -> None:
        names = subprocess.run(["orbctl", "list", "-q"], capture_output=True, text=True).stdout.split()
        for name in names:
            if name.startswith(self.bench.raw_name("")):
                self.delete(name)


class RawIncus(RawDocker):
    """``incus launch`` of the image the engine uses (the offline alias), then ``incus exec NAME
    systemctl is-system-running`` every 0.2 s; no testinfra or pyinfra backend of its own (2b
    and 5 are Docker/OrbStack rows)."""

    exec_label = "incus exec"

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.image = bench.backend.image_ref(IMAGE)  # type: ignore[attr-defined]

    def create(self, name: str) -> None:
        subprocess.run(["incus", "launch", self.image, name, "-c", f"user.{RAW_LABEL}={self.bench.run_id}"],
                       check=True, capture_output=True)
        self.wait(name)

    def delete(self, name: str) -> None:
        subprocess.run(["incus", "delete", "--force", name], capture_output=True)

    def exec_argv(self, name: str, *command: str) -> list[str]:
        return ["incus", "exec", name, "--", *command]

    def testinfra_spec(self, name: str) -> str | None:  # type: ignore[override]
        return None

    def sweep(self) -> None:
        names = subprocess.run(["incus", "list", f"user.{RAW_LABEL}={self.bench.run_id}", "-f", "csv", "-c", "n"],
                               capture_output=True, text=True).stdout.split()
        for name in names:
            self.delete(name)


# -- one run: engine, sessions, cleanup --------------------------------------------------------------
class Bench:
    """The engine, a temp dir, Lifecycles like the plugin's, and what to clean up."""

    def __init__(self, kind: str, verbose: bool) -> None:
        self.kind, self.verbose = kind, verbose
        self.run_id = secrets.token_hex(3)
        self.backend: Backend = get_backend(kind)
        self.backend.list()  # fails now if the engine does not answer
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ptobench-{self.run_id}-"))
        self.registry = Registry(self.tmp / "state")
        self.sessions: list[str] = []
        self._raw: RawDocker | None = None

    def log(self, line: str) -> None:
        if self.verbose:
            print(f"  . {line}", file=sys.stderr, flush=True)

    @property
    def raw(self) -> RawDocker:
        if self._raw is None:
            raws = {"docker": RawDocker, "podman": RawPodman, "incus": RawIncus}
            self._raw = raws.get(self.backend.name, RawOrbStack)(self)
        return self._raw

    def raw_name(self, what: str) -> str:
        return f"ptobench-{self.run_id}-{what}"

    def new_session(self) -> str:
        """A registered session id; cleanup deletes its machines (``pto-<id>-*``)."""
        sid = f"b{secrets.token_hex(3)}"
        self.sessions.append(sid)
        self.registry.open(sid, self.backend.name)
        return sid

    def lifecycle(self) -> Lifecycle:
        sid = self.new_session()
        return Lifecycle(self.backend, self.registry, sid, self.tmp / f"shared-{sid}")

    def inner_env(self) -> dict[str, str]:
        """Environment of an inner pytest run: a state dir of this run, no outer xdist vars,
        Python's bytecode cache on, as on a user's machine (a PYTHONDONTWRITEBYTECODE set for
        the host would make each of ``-n 2``'s three processes compile every module each run),
        and the golden cache off unless a row's options turn it on (rows 8 and 9): else every
        round after the first would clone the first round's golden machines without deploying."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS")) and k != "PYTHONDONTWRITEBYTECODE"}
        return {**env, "PYTEST_ORBSTACK_STATE_DIR": str(self.tmp / "inner-state"), "PYTEST_ORBSTACK_CACHE": "off"}

    def cleanup(self) -> list[str]:
        """Delete every machine, container and image of this run (SIGINT ignored meanwhile)."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            log = self.tmp / "inner-state" / "sessions.log"
            inner = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
            prefixes = tuple(f"pto-{sid}-" for sid in self.sessions + inner)
            removed = [m.name for m in self.backend.list() if prefixes and m.name.startswith(prefixes)]
            for name in sorted(removed, key=lambda n: "-golden-" in n):  # clones first
                self.backend.delete_if_exists(name)
            if self._raw is not None:
                self._raw.sweep()
            if self.backend.name in ("docker", "podman") and prefixes:
                tool = self.backend.name  # podman names local images localhost/NAME
                refs = subprocess.run([tool, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                      capture_output=True, text=True).stdout.split()
                mine = [r for r in refs if r.removeprefix("localhost/").startswith(
                        ("pytest-orbstack-clone:", "pytest-orbstack-snapshot:"))
                        and r.split(":", 1)[1].startswith(prefixes)]
                if mine:
                    subprocess.run([tool, "rmi", "-f", *mine], capture_output=True)
                removed += mine
            shutil.rmtree(self.tmp, ignore_errors=True)
            return removed
        finally:
            signal.signal(signal.SIGINT, previous)


# -- 1: harness overhead ---------------------------------------------------------------------------
def bench_create(bench: Bench, rounds: int = 11) -> list[Result]:
    lifecycle, raw = bench.lifecycle(), bench.raw

    def harness(i: int) -> float:
        made = []
        seconds = timed(lambda: made.append(lifecycle.create(f"h{i}", IMAGE)))
        lifecycle.finish(*made[0], failed=False)
        return seconds

    def engine(i: int) -> float:
        name = bench.raw_name(f"raw-{i}")
        try:
            return timed(lambda: raw.create(name))
        finally:
            raw.delete(name)

    A, B = "Lifecycle.create", "raw engine"
    comparison = alternate({A: harness, B: engine}, rounds, bench.log)
    return [Result("1 fixture-ready / raw engine", comparison.ratio(A, B), 1.10, detail=comparison.describe(A, B))]


# -- 2: commands and testinfra checks ----------------------------------------------------------------
def checks(login: str) -> list[Callable[..., bool]]:
    """50 assertions; each returns what it found (the two sides must agree)."""
    def ok(value: bool) -> bool:
        assert value
        return value
    out: list[Callable[..., bool]] = []  # (a host, and a bound default argument)
    for p in ["/etc/passwd", "/etc/group", "/etc/hostname", "/etc/debian_version", "/etc/hosts"]:  # 20
        out += [lambda h, p=p: ok(h.file(p).is_file), lambda h, p=p: ok(h.file(p).user == "root"),
                lambda h, p=p: ok(h.file(p).mode == 0o644), lambda h, p=p: ok(h.file(p).size > 0)]
    for p in ["/etc", "/usr/bin", "/var/log", "/root", f"/home/{login}"]:  # 5
        out.append(lambda h, p=p: ok(h.file(p).is_directory))
    out += [lambda h: ok(h.file("/etc/passwd").contains("^root:")),  # 2
            lambda h: ok(h.file("/etc/os-release").contains("bookworm"))]
    for p in ("bash", "systemd", "dbus", "coreutils", "sudo", "iproute2"):  # 7
        out.append(lambda h, p=p: ok(h.package(p).is_installed))
    out.append(lambda h: ok(not h.package("nginx").is_installed))
    for s in ("dbus", "systemd-journald", "systemd-logind"):  # 4
        out.append(lambda h, s=s: ok(h.service(s).is_running))
    out.append(lambda h: ok(h.service("systemd-pstore").is_enabled))
    out += [lambda h: ok(h.user("root").uid == 0), lambda h: ok(h.user("root").home == "/root"),  # 7
            lambda h: ok(h.user(login).exists), lambda h: ok(h.user(login).shell == "/bin/bash"),
            lambda h: ok(h.user("root").shell == "/bin/bash"), lambda h: ok(h.group("root").exists),
            lambda h: ok(h.group(login).exists)]
    out += [lambda h: ok(h.run("true").rc == 0), lambda h: ok(h.run("echo hello").stdout == "hello\n"),  # 5
            lambda h: ok(h.check_output("uname -s") == "Linux"), lambda h: ok(h.run("exit 3").rc == 3),
            lambda h: ok(h.exists("systemctl"))]
    assert len(out) == 50, len(out)
    return out


def bench_exec(bench: Bench, calls: int = 200, block: int = 20, suite_rounds: int = 4) -> list[Result]:
    lifecycle = bench.lifecycle()
    machine, record = lifecycle.create("exec", IMAGE)
    try:
        raw_argv = bench.raw.exec_argv(machine.name, "true")
        our_argv = machine.backend.exec_argv(machine.name, "true", user="root")

        def per_call(call: Callable[[], object], n: int) -> Callable[[int], float]:
            return lambda i: timed(lambda: [call() for _ in range(n)]) / n

        A, B, ARGV = "machine.run('true')", shlex.join(raw_argv), "our argv, one process (SHELL=off)"
        sides = {A: per_call(lambda: machine.run("true"), block),
                 B: per_call(lambda: subprocess.run(raw_argv, capture_output=True), block),
                 ARGV: per_call(lambda: subprocess.run(our_argv, capture_output=True, stdin=subprocess.DEVNULL),
                                block // 4)}  # the warm-up starts the persistent shell
        bench.log(f"exec: {calls} calls a side in blocks of {block}")
        c = alternate(sides, calls // block)
        exec_row = Result(f"2a 200 x machine.run / 200 x {bench.raw.exec_label}", c.ratio(A, B), 0.10,
                          detail=c.describe(A, B, ms=True) + f"\n  {ARGV} / B: {c.ratio(ARGV, B):.3f}")
        spec = bench.raw.testinfra_spec(machine.name)
        if spec is None:  # (Incus: testinfra has no backend of its own for it)
            return [exec_row]

        ours = testinfra.get_host(f"orbstack://root@{machine.name}", engine=machine.backend)
        theirs = testinfra.get_host(spec)
        suite, answers = checks(machine.backend.default_user(machine.name)), dict[int, list[bool]]()

        def run_suite(host: testinfra.host.Host) -> Callable[[int], float]:
            def one_pass(i: int) -> float:
                found: list[bool] = []
                seconds = timed(lambda: found.extend(check(host) for check in suite))
                answers.setdefault(id(host), found)
                return seconds
            return one_pass

        A, B = "our orbstack:// backend", "testinfra's own backend"
        c = alternate({A: run_suite(ours), B: run_suite(theirs)}, suite_rounds, bench.log)
        if len({repr(v) for v in answers.values()}) != 1:
            raise AssertionError("the two testinfra backends disagree")
        scheme = bench.raw.testinfra_spec(machine.name).split(":")[0]
        return [exec_row, Result(f"2b 50 testinfra checks / testinfra {scheme}://", c.ratio(A, B), 0.25,
                                 detail=c.describe(A, B))]
    finally:
        lifecycle.finish(machine, record, failed=False)


# -- 3: clone fast path ------------------------------------------------------------------------------
def bench_clone(bench: Bench, rounds: int = 4) -> list[Result]:
    lifecycle = bench.lifecycle()
    phases: dict[str, list[dict[str, float]]] = {"clone on demand": [], "spare": [], "fresh": []}

    def test(key: str, clone: bool, next_key: str | None = None, count: bool = True) -> float:
        """One test's machine: made (timed), checked and deleted (untimed)."""
        made = []
        seconds = timed(lambda: made.append(lifecycle.create(key, IMAGE, deploy=NGINX_DEPLOY, clone=clone,
                                                             next_key=next_key)))
        machine, record = made[0]
        try:
            if not machine.host.service("nginx").is_running:
                raise AssertionError(f"nginx is not running in {machine.name}")
            if count:
                kind = "fresh" if not clone else "spare" if record.created_by == "spare" else "clone on demand"
                phases[kind].append(dict(record.phases))
        finally:
            lifecycle.finish(machine, record, failed=False)
        return seconds

    def clones(i: int, run: int = 5) -> float:
        keys = [f"clone-{i}-{k}" for k in range(run)]
        next_keys = [*keys[1:], None]  # the run's last test expects no next one
        return statistics.mean(test(key, True, next_keys[k], i >= 0) for k, key in enumerate(keys))

    try:
        bench.log("clone: the golden machine (deploy applied once) and a first clone")
        first = test("clone-first", True, count=False)
        A, B = "clone of golden (mean of 5 consecutive tests)", "fresh create + deploy"
        c = alternate({A: clones, B: lambda i: test(f"fresh-{i}", False, count=i >= 0)}, rounds, bench.log,
                      warm_up=False)  # the first clone was the warm-up
    finally:
        lifecycle.finish_shared(failed=False)
    medians = "; ".join(f"{kind}: " + ", ".join(f"{p} {statistics.median(r[p] for r in runs):.2f}s" for p in runs[0])
                        for kind, runs in phases.items() if runs)
    detail = (c.describe(A, B) + f"\n  once per session: golden machine and first clone {first:.1f}s"
              f"\n  median phases: {medians}")
    return [Result("3 clone-from-golden / fresh create+deploy", c.ratio(A, B), 0.10, detail=detail)]


# -- 4: scale ----------------------------------------------------------------------------------------
INNER_TEST = f'''
import pytest

@pytest.mark.parametrize("i", range({TESTS}))
def test_own_machine(orbstack_machine, i):
    machine = orbstack_machine()
    assert machine.run("hostname").stdout.strip() == machine.name
    assert machine.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
'''


def bench_scale(bench: Bench, rounds: int = 3) -> list[Result]:
    suite = bench.tmp / "scale-suite"
    suite.mkdir()
    (suite / "test_scale.py").write_text(INNER_TEST)
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")

    def inner_run(workers: int) -> Callable[[int], float]:
        argv = [PYTHON, "-m", "pytest", "-q", "-n", str(workers), f"--orbstack-backend={bench.backend.name}"]
        return lambda i: inner_pytest(argv, suite, bench.inner_env())

    def raw_run(workers: int) -> Callable[[int], float]:
        def cycle(name: str) -> None:
            bench.raw.create(name)
            try:
                for command in (["hostname"], ["systemctl", "is-system-running"]):
                    subprocess.run(bench.raw.exec_argv(name, *command), capture_output=True)
            finally:
                bench.raw.delete(name)

        def cycles(names: list[str]) -> None:
            for name in names:
                cycle(name)

        def run(i: int) -> float:
            names = [bench.raw_name(f"s{workers}-{i}-{k}") for k in range(TESTS)]
            with ThreadPoolExecutor(workers) as pool:
                return timed(lambda: list(pool.map(cycles, [names[w::workers] for w in range(workers)])))
        return run

    subprocess.run([PYTHON, "-m", "pytest", "-q", "-n", "2", "test_scale.py::test_own_machine[0]",
                    f"--orbstack-backend={bench.backend.name}"], cwd=suite,
                   env=bench.inner_env(), capture_output=True, check=True)  # untimed: fills the bytecode cache
    A, B, RAW_A, RAW_B = "pytest -n 2", "pytest -n 0", "raw engine, 2 threads", "raw engine, 1 thread"
    bench.log(f"scale: {TESTS} machine tests, {rounds} rounds")
    cores: dict[str, list[float]] = {A: [], B: [], RAW_A: [], RAW_B: []}
    sides = {B: inner_run(0), A: inner_run(2), RAW_B: raw_run(1), RAW_A: raw_run(2)}
    c = alternate({name: busy_cores(side, cores[name]) for name, side in sides.items()}, rounds, bench.log,
                  warm_up=False)  # whole runs: each pays its own start-up, as a user's does
    engine = c.ratio(RAW_A, RAW_B)
    detail = (c.describe(A, B) + f"\n  the engine alone, same {TESTS} cycles in 2 vs 1 threads: "
              f"{c.median(RAW_A):.2f}s vs {c.median(RAW_B):.2f}s, ratio {engine:.3f}")
    if all(cores.values()):
        detail += (f"\n  host cores busy (median, of {os.cpu_count()}): " + ", ".join(
            f"{name} {statistics.median(used):.2f}" for name, used in cores.items()))
    rows = [Result(f"4a {TESTS} machine tests -n 2 / -n 0 (engine's own: {engine:.3f})", c.ratio(A, B), 0.65,
                   detail=detail)]
    return rows + bench_memory(bench)


def bench_memory(bench: Bench) -> list[Result]:
    sid = bench.new_session()
    argv = [PYTHON, __file__, "--memory-child", bench.backend.name, str(bench.registry.dir.parent), sid,
            str(bench.tmp / f"shared-{sid}")]
    bench.log(f"memory: one process holding 1, then {TESTS} machines, then a second shell each")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    per_machine = (data["all"]["hwm"] - data["one"]["hwm"]) / (TESTS - 1) / 1024
    per_shell = (data["shells"]["rss"] - data["all"]["rss"]) / TESTS
    detail = (f"  peak RSS with 1 machine {data['one']['hwm'] / 1024:.1f} MiB, with {TESTS}: "
              f"{data['all']['hwm'] / 1024:.1f} MiB\n  per persistent shell: {per_shell:.0f} KiB in the host "
              f"process, plus its exec client process: {data['client_rss'] / 1024:.1f} MiB resident")
    return [Result("4b memory per live machine (host process)", per_machine, 5.0, unit="MiB", strict=True,
                   detail=detail),
            Result("4b memory per persistent shell (host process)", per_shell / 1024, 1.0, unit="MiB",
                   strict=True)]


def _rss_kib() -> dict[str, float]:
    gc.collect()
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return {"hwm": float(fields["VmHWM"].split()[0]), "rss": float(fields["VmRSS"].split()[0])}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # macOS: bytes
    return {"hwm": peak, "rss": peak}


def memory_child(kind: str, state_dir: str, sid: str, shared_dir: str) -> None:
    """In a fresh process: print the memory at 1 and 16 machines and after a second shell each."""
    lifecycle = Lifecycle(get_backend(kind), Registry(Path(state_dir)), sid, Path(shared_dir))
    made, report = [], dict[str, object]()
    try:
        for i in range(TESTS):
            machine, record = lifecycle.create(f"mem-{i}", IMAGE)
            made.append((machine, record))
            assert machine.run("true").rc == 0 and machine.host.file("/etc/passwd").exists
            if len(made) in (1, TESTS):
                report["one" if len(made) == 1 else "all"] = _rss_kib()
        for machine, _ in made:
            assert machine.run("true", user=None).rc == 0  # a second shell: the default user's
        report["shells"] = _rss_kib()
        shell = next(s for shells in lifecycle.backend.shells.idle.values() for s in shells)
        status = Path(f"/proc/{shell.proc.pid}/status")
        report["client_rss"] = (float(next(line.split()[1] for line in status.read_text().splitlines()
                                           if line.startswith("VmRSS:"))) if status.exists() else float("nan"))
    finally:
        for machine, record in made:
            lifecycle.finish(machine, record, failed=False)
    print(json.dumps(report))


# -- 5: a pyinfra deploy -----------------------------------------------------------------------------
def deploy_source(root: str = "/opt/pyinfra-bench") -> str:
    """Exactly 30 cheap operations, every one changing something on a clean machine."""
    ops = ["from pyinfra.operations import files, server", ""]
    ops += [f'files.directory(name="dir {i}", path="{root}/d{i}", mode="755")' for i in range(10)]
    ops.append(f'files.file(name="lines file", path="{root}/settings.conf")')
    ops += [f'files.line(name="line {i}", path="{root}/settings.conf", line="^key{i}=.*$", '
            f'replace="key{i}=value{i}")' for i in range(9)]
    ops += [f'files.link(name="link {i}", path="{root}/link{i}", target="{root}/d{i}")' for i in range(5)]
    ops += [f'server.shell(name="shell {i}", commands=["test -d {root}/d{i}"])' for i in range(5)]
    assert sum(line.startswith(("files.", "server.")) for line in ops) == 30
    return "\n".join(ops) + "\n"


def bench_deploy(bench: Bench, rounds: int = 5) -> list[Result]:
    deploy = bench.tmp / "deploy30.py"
    deploy.write_text(deploy_source())
    pyinfra = str(Path(PYTHON).with_name("pyinfra"))
    pyinfra = pyinfra if Path(pyinfra).exists() else shutil.which("pyinfra") or "pyinfra"
    lifecycle = bench.lifecycle()
    machine, record = lifecycle.create("pyinfra", IMAGE)
    try:
        ours = [pyinfra, "-y", f"@orbstack/{machine.name}", str(deploy), "--data",
                f"orbstack_backend={bench.backend.name}", "--data", "orbstack_user=root"]
        theirs = [pyinfra, "-y", *bench.raw.pyinfra_args(machine.name), str(deploy)]

        def side(argv: list[str]) -> Callable[[int], float]:
            def once(i: int) -> float:
                machine.backend.run(machine.name, "rm -rf /opt/pyinfra-bench", user="root")
                done: list[subprocess.CompletedProcess[str]] = []
                seconds = timed(lambda: done.append(subprocess.run(argv, capture_output=True, text=True,
                                                                   cwd=bench.tmp)))
                if done[0].returncode != 0:
                    raise RuntimeError(f"{shlex.join(argv)} failed:\n{done[0].stdout[-3000:]}{done[0].stderr[-3000:]}")
                return seconds
            return once

        A, B = "our @orbstack connector", "pyinfra's own connector"
        c = alternate({A: side(ours), B: side(theirs)}, rounds, bench.log)
        check = machine.run("grep -c = /opt/pyinfra-bench/settings.conf; ls /opt/pyinfra-bench | wc -l")
        if check.stdout.split() != ["9", "16"]:
            raise AssertionError(f"the deploy did not do its work: {check.stdout!r}")
    finally:
        lifecycle.finish(machine, record, failed=False)
    detail = c.describe(A, B) + f"\n  A: {shlex.join(ours)}\n  B: {shlex.join(theirs)}"
    connector = "@podman" if bench.backend.name == "podman" else "@docker"
    return [Result(f"5 30-op deploy pyinfra @orbstack / {connector}", c.ratio(A, B), 0.5, detail=detail)]


# -- the run -----------------------------------------------------------------------------------------
BENCHMARKS: dict[str, Callable[[Bench], list[Result]]] = {
    "1": bench_create, "2": bench_exec, "3": bench_clone, "4": bench_scale, "5": bench_deploy, "6": bench_cluster,
    "7": bench_engines, "8": bench_cache, "9": bench_cache_clones_only, "10": bench_goldens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="docker", choices=("docker", "podman", "orbstack", "incus", "auto"))
    parser.add_argument("--only", default="1,2,3,4,5", help="comma-separated numbers (default: 1-5; 6 is Incus "
                        "only and builds a cluster; 7 needs a second engine; 8, 9: the golden cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()

    def interrupt(signum: int, frame: object) -> None:  # SIGTERM: cleanup runs as on Ctrl-C
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)
    started, results, timings = time.monotonic(), [], []
    bench = Bench(args.backend, verbose=not args.quiet)
    try:
        for number in (n.strip() for n in args.only.split(",")):
            bench.log(f"benchmark {number}")
            began = time.monotonic()
            try:
                results += BENCHMARKS[number](bench)
            except Exception:  # one broken benchmark must not hide the others
                results.append(Result(f"{number} (failed)", float("nan"), 0, error=True, detail=traceback.format_exc()))
            timings.append(f"{number}: {time.monotonic() - began:.0f}s")
    finally:
        removed = bench.cleanup()
    print(f"\nbackend {bench.backend.name}; run {bench.run_id}\n")
    print_table(results)
    print(f"\ntotal {time.monotonic() - started:.0f}s ({', '.join(timings)}); cleanup removed "
          f"{len(removed)} leftover machine(s)/image(s)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:6])
    else:
        raise SystemExit(main())
