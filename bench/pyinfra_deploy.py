"""Benchmark 5 - a pyinfra deploy of 30 operations: our connector vs pyinfra's own.

A: ``pyinfra -y @orbstack/NAME deploy.py --data orbstack_backend=docker --data
   orbstack_user=root`` (our connector; as root, like side B, so no sudo wrapping).
B: ``pyinfra -y @docker/CONTAINER_ID deploy.py`` (pyinfra's docker connector) on the same
   container (OrbStack: pyinfra's @ssh through OrbStack's SSH server, ``root@NAME@orb``).

The deploy (generated) has 30 cheap operations: 10 ``files.directory``, 10 ``files.line``
(after a ``files.file``), 5 ``files.link`` and 5 ``server.shell``. No ``files.put``: uploads
through ``@orbstack`` fail under the pyinfra CLI (gevent's ``subprocess.run`` refuses the
``stdin=None`` that ``Backend.run`` passes with ``input=``; see docs/performance.md). Before
every run its target ``/opt/pyinfra-bench`` is removed (untimed), so every run does the same
work: facts, then every operation changes something. Whole CLI runs are timed (start-up
included on both sides); one untimed run each first (on Docker with a logging ``docker`` shim
on PATH: the profile of docker calls in the details); runs alternate; ratio =
median(A)/median(B); target <= 0.5.

    python bench/pyinfra_deploy.py [--backend docker|orbstack]
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import benchlib
from benchlib import IMAGE, PYTHON, BenchSession, Result

ROUNDS = 5
TARGET = 0.5
ROOT_DIR = "/opt/pyinfra-bench"


def deploy_source() -> str:
    """A deploy file of exactly 30 operations."""
    ops = ["from pyinfra.operations import files, server", ""]
    for i in range(10):
        ops.append(f'files.directory(name="dir {i}", path="{ROOT_DIR}/d{i}", mode="755")')
    ops.append(f'files.file(name="lines file", path="{ROOT_DIR}/settings.conf")')
    for i in range(9):
        ops.append(f'files.line(name="line {i}", path="{ROOT_DIR}/settings.conf", '
                   f'line="^key{i}=.*$", replace="key{i}=value{i}")')
    for i in range(5):  # not files.put: see the module docstring
        ops.append(f'files.link(name="link {i}", path="{ROOT_DIR}/link{i}", target="{ROOT_DIR}/d{i}")')
    for i in range(5):
        ops.append(f'server.shell(name="shell {i}", commands=["test -d {ROOT_DIR}/d{i}"])')
    assert sum(line.startswith(("files.", "server.")) for line in ops) == 30
    return "\n".join(ops) + "\n"


def docker_logging_shim(folder: Path) -> Path:
    """A ``docker`` on PATH that logs "<ms> <subcommand>" per call to $BENCH_DOCKER_LOG."""
    folder.mkdir(exist_ok=True)
    real = shutil.which("docker") or "docker"
    script = folder / "docker"
    script.write_text(f"""#!/bin/sh
start=$(date +%s%N)
{shlex.quote(real)} "$@"
rc=$?
echo "$(( ($(date +%s%N) - start) / 1000000 )) $1" >> "$BENCH_DOCKER_LOG"
exit $rc
""")
    script.chmod(0o755)
    return folder


def summarize_docker_log(log: Path, seconds: float) -> str:
    calls: dict[str, list[int]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        ms, sub = line.split(maxsplit=1)
        calls.setdefault(sub, []).append(int(ms))
    total = sum(sum(v) for v in calls.values()) / 1000
    rows = [f"    {len(v):3d} x docker {k}: {sum(v) / 1000:.2f}s" for k, v in
            sorted(calls.items(), key=lambda kv: -sum(kv[1]))]
    return "\n".join(rows + [f"    inside docker calls {total:.2f}s of {seconds:.2f}s (rest: pyinfra, "
                               "Python start-up, host shells; the shim adds ~2ms a call)"])


def run(session: BenchSession, rounds: int = ROUNDS) -> list[Result]:
    deploy = session.tmp / "deploy30.py"
    deploy.write_text(deploy_source())
    pyinfra = str(Path(PYTHON).with_name("pyinfra"))
    if not Path(pyinfra).exists():
        pyinfra = shutil.which("pyinfra") or "pyinfra"
    lifecycle = session.lifecycle()
    machine, record = lifecycle.create("pyinfra", IMAGE)
    try:
        ours = [pyinfra, "-y", f"@orbstack/{machine.name}", str(deploy), "--data",
                f"orbstack_backend={session.kind}", "--data", "orbstack_user=root"]
        theirs = [pyinfra, "-y", *session.raw.pyinfra_args(machine.name), str(deploy)]

        shim = docker_logging_shim(session.tmp / "shim") if session.kind == "docker" else None
        profiles: dict[str, str] = {}

        def side(argv: list[str]):
            def deploy_once(i: int) -> float:
                machine.backend.run(machine.name, f"rm -rf {ROOT_DIR}", user="root")
                env = None
                if i < 0 and shim is not None:  # the untimed warm-up is profiled
                    log = session.tmp / f"docker-calls-{len(profiles)}.log"
                    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
                           "BENCH_DOCKER_LOG": str(log)}
                proc = []
                seconds = benchlib.timed(lambda: proc.append(subprocess.run(
                    argv, capture_output=True, text=True, cwd=session.tmp, env=env)))
                if env is not None:
                    profiles[argv[2]] = summarize_docker_log(log, seconds)
                if proc[0].returncode != 0:
                    raise RuntimeError(f"{benchlib.quote(argv)} failed:\n{proc[0].stdout[-3000:]}"
                                       f"{proc[0].stderr[-3000:]}")
                return seconds
            return deploy_once

        A, B = "our @orbstack connector", "pyinfra's own connector"
        sides = {A: side(ours), B: side(theirs)}
        session.log("pyinfra deploy: warm-up")
        for deploy_once in sides.values():
            deploy_once(-1)
        check = machine.run(f"grep -c = {ROOT_DIR}/settings.conf; ls {ROOT_DIR} | wc -l")
        if check.stdout.split() != ["9", "16"]:
            raise AssertionError(f"the deploy did not do its work: {check.stdout!r}")
        comparison = benchlib.alternate(sides, rounds, session.log)
    finally:
        lifecycle.finish(machine, record, failed=False)
    detail = (comparison.describe(A, B) + f"\n  A: {benchlib.quote(ours)}\n  B: {benchlib.quote(theirs)}")
    for argv, name in ((ours, A), (theirs, B)):
        if argv[2] in profiles:
            detail += f"\n  docker calls of one run (profiled warm-up), {name}:\n{profiles[argv[2]]}"
    return [Result("5 pyinfra deploy, 30 ops", comparison.ratio(A, B), TARGET, detail=detail)]


if __name__ == "__main__":
    raise SystemExit(benchlib.standalone(run, __doc__.splitlines()[0]))
