"""Benchmark 2 - exec overhead: running commands in a machine, ours vs the engine's own.

2a  A: ``machine.run("true")`` - Machine from pytest_orbstack.machine, i.e. the testinfra Host
       ``orbstack://root@NAME`` on our backend (``docker exec -i -u root NAME sh -c true``).
    B: ``docker exec NAME true`` as a bare subprocess argv (OrbStack: ``orbctl run``).
    200 calls a side per pass, in blocks of 20 that alternate A/B; ratio = median per-call
    time of A / of B; target <= 1.2. For the breakdown more sides run in the same rotation
    (5 calls a block unless said): our exact argv through a bare ``subprocess.run`` (engine
    cost of our argv, no Python layers), the persistent-shell prototype of bench/proposed.py
    (20 calls a block: what a command costs without one ``docker exec`` each), and
    ``machine.run("true", user=None)`` (as the default user) with the package's backend and
    with bench/proposed.py's, which remembers the default user.
2b  A: a testinfra check suite of 50 assertions (files, packages, services, users, groups,
       commands) on ``testinfra.get_host("orbstack://root@NAME", engine=backend)``.
    B: the same suite on testinfra's own docker backend ``docker://root@NAME`` (OrbStack:
       testinfra's ssh backend through OrbStack's SSH server), same container.
    One untimed pass each (fills testinfra's per-host caches), then alternating passes;
    ratio = median(A)/median(B); target <= 1.0. Both sides must give the same answers. On
    Docker a third side runs the suite through bench/proposed.py's backend without ``-i``.

    python bench/exec_overhead.py [--backend docker|orbstack]
"""

from __future__ import annotations

import subprocess
from typing import Callable

import testinfra

import benchlib
from benchlib import IMAGE, BenchSession, Result
from pytest_orbstack.machine import Machine

CALLS, BLOCK, PASSES = 200, 20, 1
SUITE_ROUNDS = 4
EXEC_TARGET, SUITE_TARGET = 1.2, 1.0


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
    ARGV, SHELL = "our argv, bare subprocess", "persistent shell (bench/proposed.py prototype)"
    DEFAULT, DEFAULT_FIXED = "machine.run('true', user=None)", "same, default user remembered (proposed)"

    def block(call: Callable[[], object], calls: int) -> Callable[[int], float]:
        """Seconds per call, over ``calls`` calls."""
        def run_block(i: int) -> float:
            return benchlib.timed(lambda: [call() for _ in range(calls)]) / calls
        return run_block

    from proposed import PersistentShell, ProposedDockerBackend
    shell = PersistentShell(machine.backend.exec_argv(machine.name, "exec sh", user="root"))
    # the two measured sides run BLOCK calls a round; the explanatory ones a quarter of that
    sides = {A: block(lambda: machine.run("true"), BLOCK),
             B: block(lambda: subprocess.run(raw_argv, capture_output=True), BLOCK),
             ARGV: block(lambda: subprocess.run(our_argv, capture_output=True,
                                                stdin=subprocess.DEVNULL), BLOCK // 4),
             DEFAULT: block(lambda: machine.run("true", user=None), BLOCK // 4),
             SHELL: block(lambda: shell.run("true"), BLOCK)}
    if session.kind == "docker":
        remembering = Machine(machine.name, ProposedDockerBackend(), machine.image)
        sides[DEFAULT_FIXED] = block(lambda: remembering.run("true", user=None), BLOCK // 4)
    try:
        for side in sides.values():
            side(-1)  # warm-up
        session.log(f"exec overhead: {passes} x {CALLS} calls a side, blocks of {BLOCK}")
        comparison = benchlib.alternate(sides, passes * CALLS // BLOCK)
    finally:
        shell.close()
    detail = (f"  per {CALLS} calls (median per-call time x {CALLS}): "
              + ", ".join(f"{name}: {comparison.median(name) * CALLS:.2f}s" for name in sides)
              + f"\n  our argv: {benchlib.quote(our_argv)}"
              + f"\n  our argv / raw argv (engine cost of -i -u root sh -c): "
              f"{comparison.ratio(ARGV, B):.3f}; machine.run / our argv (Python layers): "
              f"{comparison.ratio(A, ARGV):.3f}; persistent shell / raw argv: "
              f"{comparison.ratio(SHELL, B):.4f}; as the default user / as root: "
              f"{comparison.ratio(DEFAULT, A):.3f}")
    if DEFAULT_FIXED in sides:
        detail += f", with the default user remembered: {comparison.ratio(DEFAULT_FIXED, A):.3f}"
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
    FIXED = "ours without docker exec -i (bench/proposed.py)"
    sides = {A: side(ours), B: side(theirs)}
    if session.kind == "docker":
        from proposed import no_stdin_testinfra_host
        fixed = no_stdin_testinfra_host(machine.name, machine.backend)
        sides[FIXED] = side(fixed)
    for run_suite in sides.values():
        run_suite(-1)
    if len({repr(v) for v in answers.values()}) != 1:
        raise AssertionError("the testinfra backends disagree")
    session.log(f"testinfra suite: {rounds} rounds of 50 assertions a side")
    comparison = benchlib.alternate(sides, rounds, session.log)
    with benchlib.traced_subprocesses() as calls:
        sides[A](-1)
    detail = (comparison.describe(A, B) + f"\n  commands per suite pass (ours): {len(calls)}")
    if FIXED in sides:
        detail += (f"\n  {FIXED}: median {comparison.median(FIXED):.2f}s, ratio "
                   f"{comparison.ratio(FIXED, B):.3f}")
    return Result("2b testinfra suite (50 checks)", comparison.ratio(A, B), SUITE_TARGET,
                  detail=detail)


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
