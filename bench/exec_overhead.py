"""Benchmark 2 - exec overhead: running commands in a machine, ours vs the engine's own.

2a  A: ``machine.run("true")``: the testinfra Host ``orbstack://root@NAME`` on our backend,
       through the machine's persistent shell (pytest_orbstack/backends/shell.py).
    B: ``docker exec NAME true`` as a bare subprocess argv (OrbStack: ``orbctl run``).
    200 calls a side per pass, in blocks of 20 that alternate A/B; ratio = median per-call
    time of A / of B; target <= 0.10. Two more sides run in the same rotation (5 calls a
    block): our exact per-command argv through a bare ``subprocess.run`` (what
    ``PYTEST_ORBSTACK_SHELL=off`` costs) and ``machine.run("true", user=None)``.
2b  A: a testinfra check suite of 50 assertions (files, packages, services, users, groups,
       commands) on ``testinfra.get_host("orbstack://root@NAME", engine=backend)``.
    B: the same suite on testinfra's own docker backend ``docker://root@NAME`` (OrbStack:
       testinfra's ssh backend through OrbStack's SSH server), same container.
    One untimed pass each (fills testinfra's per-host caches), then alternating passes;
    ratio = median(A)/median(B); target <= 0.25. Both sides must give the same answers.

    python bench/exec_overhead.py [--backend docker|orbstack]
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import benchlib
import testinfra
from benchlib import IMAGE, BenchSession, Result

CALLS, BLOCK, PASSES = 200, 20, 1
SUITE_ROUNDS = 4
EXEC_TARGET, SUITE_TARGET = 0.10, 0.25


def checks(login: str) -> list[Callable[[testinfra.host.Host], object]]:
    """50 assertions; each returns what it checked (compared between the two sides)."""
    files = ["/etc/passwd", "/etc/group", "/etc/hostname", "/etc/debian_version", "/etc/hosts"]
    dirs = ["/etc", "/usr/bin", "/var/log", "/root", f"/home/{login}"]
    out: list[Callable[[testinfra.host.Host], object]] = []
    for path in files:  # 5 x 4 = 20
        out += [lambda h, p=path: _check(h.file(p).is_file),
                lambda h, p=path: _check(h.file(p).user == "root"),
                lambda h, p=path: _check(h.file(p).mode == 0o644),
                lambda h, p=path: _check(h.file(p).size > 0)]
    for path in dirs:  # 5
        out.append(lambda h, p=path: _check(h.file(p).is_directory))
    out += [lambda h: _check(h.file("/etc/passwd").contains("^root:")),
            lambda h: _check(h.file("/etc/os-release").contains("bookworm"))]
    for package in ("bash", "systemd", "dbus", "coreutils", "sudo", "iproute2"):  # 6
        out.append(lambda h, p=package: _check(h.package(p).is_installed))
    out.append(lambda h: _check(not h.package("nginx").is_installed))
    for service in ("dbus", "systemd-journald", "systemd-logind"):  # 3
        out.append(lambda h, s=service: _check(h.service(s).is_running))
    out.append(lambda h: _check(h.service("systemd-pstore").is_enabled))
    out += [lambda h: _check(h.user("root").uid == 0),  # 7
            lambda h: _check(h.user("root").home == "/root"),
            lambda h: _check(h.user(login).exists),
            lambda h: _check(h.user(login).shell == "/bin/bash"),
            lambda h: _check(h.user("root").shell == "/bin/bash"),
            lambda h: _check(h.group("root").exists),
            lambda h: _check(h.group(login).exists)]
    out += [lambda h: _check(h.run("true").rc == 0),  # 5
            lambda h: _check(h.run("echo hello").stdout == "hello\n"),
            lambda h: _check(h.check_output("uname -s") == "Linux"),
            lambda h: _check(h.run("exit 3").rc == 3),
            lambda h: _check(h.exists("systemctl"))]
    assert len(out) == 50, len(out)
    return out


def _check(ok: bool) -> bool:
    assert ok
    return ok


def run(session: BenchSession, passes: int = PASSES, suite_rounds: int = SUITE_ROUNDS) -> list[Result]:
    lifecycle = session.lifecycle()
    machine, record = lifecycle.create("exec", IMAGE)
    try:
        return [exec_calls(session, machine, passes), check_suite(session, machine, suite_rounds)]
    finally:
        lifecycle.finish(machine, record, failed=False)


def exec_calls(session: BenchSession, machine, passes: int) -> Result:
    raw_argv = session.raw.exec_argv(machine.name, "true")
    our_argv = machine.backend.exec_argv(machine.name, "true", user="root")
    A, B = "machine.run('true')", benchlib.quote(raw_argv)
    ARGV = "our argv, one process per command (PYTEST_ORBSTACK_SHELL=off)"
    DEFAULT = "machine.run('true', user=None)"

    def block(call: Callable[[], object], calls: int) -> Callable[[int], float]:
        """Seconds per call, over ``calls`` calls."""
        def run_block(i: int) -> float:
            return benchlib.timed(lambda: [call() for _ in range(calls)]) / calls
        return run_block

    # the two measured sides run BLOCK calls a round; the explanatory ones a quarter of that
    sides = {A: block(lambda: machine.run("true"), BLOCK),
             B: block(lambda: subprocess.run(raw_argv, capture_output=True), BLOCK),
             ARGV: block(lambda: subprocess.run(our_argv, capture_output=True,
                                                stdin=subprocess.DEVNULL), BLOCK // 4),
             DEFAULT: block(lambda: machine.run("true", user=None), BLOCK // 4)}
    for side in sides.values():
        side(-1)  # warm-up (starts the persistent shells)
    session.log(f"exec overhead: {passes} x {CALLS} calls a side, blocks of {BLOCK}")
    comparison = benchlib.alternate(sides, passes * CALLS // BLOCK)
    detail = (f"  per {CALLS} calls (median per-call time x {CALLS}): "
              + ", ".join(f"{name}: {comparison.median(name) * CALLS:.2f}s" for name in sides)
              + f"\n  one command: machine.run {comparison.median(A) * 1000:.2f} ms, raw "
              f"{comparison.median(B) * 1000:.1f} ms; our argv / raw argv: {comparison.ratio(ARGV, B):.3f}; "
              f"as the default user / as root: {comparison.ratio(DEFAULT, A):.3f}")
    return Result("2a exec: 200 x machine.run", comparison.ratio(A, B), EXEC_TARGET, detail=detail)


def check_suite(session: BenchSession, machine, rounds: int) -> Result:
    ours = testinfra.get_host(f"orbstack://root@{machine.name}", engine=machine.backend)
    theirs = testinfra.get_host(session.raw.testinfra_spec(machine.name))
    login = machine.backend.default_user(machine.name)
    suite = checks(login)
    answers = {}

    def side(host) -> Callable[[int], float]:
        def run_suite(i: int) -> float:
            results = []
            seconds = benchlib.timed(lambda: results.extend(check(host) for check in suite))
            answers.setdefault(id(host), results)
            return seconds
        return run_suite

    A, B = "our testinfra backend", "testinfra's own backend"
    sides = {A: side(ours), B: side(theirs)}
    for run_suite in sides.values():
        run_suite(-1)
    if len({repr(v) for v in answers.values()}) != 1:
        raise AssertionError("the testinfra backends disagree")
    session.log(f"testinfra suite: {rounds} rounds of 50 assertions a side")
    comparison = benchlib.alternate(sides, rounds, session.log)
    with benchlib.traced_subprocesses() as calls:
        sides[A](-1)
    detail = (comparison.describe(A, B) + f"\n  engine processes per suite pass (ours): {len(calls)}")
    return Result("2b testinfra suite (50 checks)", comparison.ratio(A, B), SUITE_TARGET,
                  detail=detail)


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
