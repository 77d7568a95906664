"""A user's repository, run as its user runs it: this package built as a wheel and installed in
a fresh virtualenv outside this repository, the project in tests/acceptance/userproject copied
next to it, and ``pytest`` started there (no path back to this repository), on Docker.

:func:`run_everything` does it all once and returns plain data (JSON) for the tests to check:
each command with its exit code, output and per-test outcomes, and what each project left in
the engine, its state dir and its temp dir. Whatever it made is removed before it returns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "userproject"
RUN_TIMEOUT = 900
DEBUG_TEST = "test_python_web_app.py::test_base_packages"


def sh(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT
       ) -> dict[str, Any]:
    """Run ``argv``; its exit code and output (stderr after stdout)."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return {"argv": argv, "rc": proc.returncode, "out": proc.stdout + proc.stderr}
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {"argv": argv, "rc": None, "out": f"{out}\n(timed out after {timeout}s)"}


def install(work: Path) -> dict[str, Any]:
    """Build this repository's wheel and install it in a fresh virtualenv under ``work``."""
    dist, venv = work / "dist", work / "venv"
    built = sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)], ROOT)
    if built["rc"] != 0:
        return {"ok": False, **built}
    wheels = sorted(dist.glob("pytest_orbstack-*.whl"))
    made = sh([sys.executable, "-m", "venv", str(venv)], work)
    if made["rc"] != 0 or not wheels:
        return {"ok": False, **made}
    pip = sh([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])], work)
    where = sh([str(venv / "bin" / "python"), "-c", "import pytest_orbstack; print(pytest_orbstack.__file__)"],
               work, env=user_env(venv, work / "state", work / "tmp"))
    return {"ok": pip["rc"] == 0, "wheel": wheels[0].name, "venv": str(venv), "pip": pip,
            "module_file": where["out"].strip()}


def user_env(venv: Path, state: Path, tmp: Path) -> dict[str, str]:
    """A user's shell environment: this session's PYTEST_*, PYTHON* and VIRTUAL_ENV variables
    gone, PATH without this repository or an ``orbctl`` (Docker machines), the venv first;
    the project's own state dir and temp dir, to look into afterwards."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PYTHON", "VIRTUAL_ENV", "COV_", "XDIST"))}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not p.startswith(str(ROOT)) and not os.path.exists(os.path.join(p, "orbctl"))]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), PYTEST_ORBSTACK_STATE_DIR=str(state),
               TMPDIR=str(tmp), COLUMNS="250")
    return env


class UserProject:
    """A copy of the user project under ``work/name``, with its state dir and temp dir."""

    def __init__(self, work: Path, name: str, venv: Path) -> None:
        self.dir, self.state, self.tmp = work / name, work / f"{name}-state", work / f"{name}-tmp"
        shutil.copytree(PROJECT, self.dir, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        self.tmp.mkdir()
        self.venv, self.runs = venv, 0

    def pytest(self, *args: str) -> dict[str, Any]:
        """``pytest ARGS`` in the project, as its user types it; with the outcome of each test
        (``--junitxml``, which the README documents) when tests ran."""
        self.runs += 1
        junit = self.dir.parent / f"{self.dir.name}-junit-{self.runs}.xml"
        tests = not {"--orbstack-list", "--orbstack-prune", "--collect-only"} & set(args)
        argv = [str(self.venv / "bin" / "pytest"), *args, *([f"--junitxml={junit}"] if tests else [])]
        started = time.time()
        result = sh(argv, self.dir, env=user_env(self.venv, self.state, self.tmp))
        result.update(started=started, ended=time.time(), outcomes=outcomes(junit) if tests else {})
        result["argv"] = ["pytest", *args]
        return result

    def sessions(self) -> list[str]:
        """Ids of the sessions that ran here (the state dir's sessions.log)."""
        log = self.state / "sessions.log"
        return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


def outcomes(junit: Path) -> dict[str, dict[str, str]]:
    """``{file::test: {"outcome": ..., "message": ...}}`` from a junit XML file."""
    if not junit.exists():
        return {}
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = f"{child.get('message', '')}\n{child.text or ''}"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        found[name] = {"outcome": outcome, "message": message, "machine": props.get("orbstack.machine", "")}
    return found


def created_since(since: float, until: float, prefix: str) -> list[str]:
    """Containers the engine created between ``since`` and ``until`` named ``prefix*``."""
    out = sh(["docker", "events", "--since", str(int(since)), "--until", str(int(until) + 1), "--filter",
              "type=container", "--filter", "event=create", "--format", "{{.Actor.Attributes.name}}"], ROOT)
    return [name for name in out["out"].split() if name.startswith(prefix)]


def leftovers(project: UserProject) -> dict[str, list[str]]:
    """What the project's sessions left: containers and images (snapshot, clone) of its
    sessions, session state files, lock files of its machines, and anything but pytest's own
    basetemp folders in its temp dir (and in those, anything of pytest-orbstack's)."""
    sessions = project.sessions()
    names = sh(["docker", "ps", "-a", "--format", "{{.Names}}"], ROOT)["out"].split()
    images = sh(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], ROOT)["out"].split()
    labelled = []
    for session in sessions:
        labelled += sh(["docker", "images", "-q", "--filter", f"label=pytest-orbstack.session={session}"],
                       ROOT)["out"].split()
    locks = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pytest-orbstack" / "locks"
    tmp = [str(p.relative_to(project.tmp)) for p in project.tmp.rglob("*")
           if not p.relative_to(project.tmp).parts[0].startswith("pytest-of-") or "orbstack" in p.name]
    return {
        "sessions": sessions,
        "containers": [n for n in names if any(f"pto-{s}-" in n for s in sessions)],
        "images": [i for i in images if any(f"pto-{s}-" in i for s in sessions)] + labelled,
        "state_files": sorted(p.name for p in (project.state / "sessions").glob("*")),
        "locks": sorted(p.name for p in locks.glob("*") if any(f"pto-{s}-" in p.name for s in sessions)),
        "tmp": tmp,
        "system_tmp": [p.name for p in Path("/tmp").glob("*") if any(s in p.name for s in sessions)],
    }


def remove_leftovers(found: dict[str, list[str]]) -> None:
    """Delete what :func:`leftovers` found in the engine (after it was recorded)."""
    if found["containers"]:
        sh(["docker", "rm", "-f", *found["containers"]], ROOT)
    if found["images"]:
        sh(["docker", "rmi", "-f", *found["images"]], ROOT)



def debug_loop(project: UserProject) -> dict[str, Any]:
    """The README's debug loop from a shell: keep (the bare flag before a path too), list,
    reuse twice, list, prune, list; what each said and what the engine created while reusing."""
    steps: dict[str, Any] = {}
    steps["keep_path"] = project.pytest("--orbstack-keep", "test_python_web_app.py", "--collect-only", "-q")
    steps["keep"] = project.pytest("--orbstack-keep=always", "-v", DEBUG_TEST)
    steps["list"] = project.pytest("--orbstack-list")
    created = []
    for step in ("reuse", "reuse_again"):  # a reuse chain: each reuse keeps the machine again
        steps[step] = reuse = project.pytest("--orbstack-reuse", "-v", DEBUG_TEST)
        created += created_since(reuse["started"], reuse["ended"], f"pto-{project.sessions()[-1]}-")
    steps["created_by_reuse"] = created
    steps["list_after_reuse"] = project.pytest("--orbstack-list")
    steps["prune"] = project.pytest("--orbstack-prune")
    steps["list_after_prune"] = project.pytest("--orbstack-list")
    return steps


def run_everything() -> dict[str, Any]:
    """Install, then the project's whole suite (``pytest -n 2 -v``, as CI runs it) in one copy
    while the debug loop runs in another; what each left. Removes all it made before returning."""
    from concurrent.futures import ThreadPoolExecutor

    work = Path(tempfile.mkdtemp(prefix="pytest-orbstack-accept-"))
    results: dict[str, Any] = {"work": str(work)}
    projects: list[UserProject] = []
    try:
        results["install"] = installed = install(work)
        if not installed["ok"]:
            return results
        venv = Path(installed["venv"])
        suite, loop = UserProject(work, "suite", venv), UserProject(work, "loop", venv)
        projects += [suite, loop]
        with ThreadPoolExecutor(1) as pool:
            whole = pool.submit(suite.pytest, "-n", "2", "-v")
            results["loop"] = debug_loop(loop)
            results["suite"] = whole.result()
        for project in projects:
            results[f"{project.dir.name}_leftovers"] = leftovers(project)
    finally:
        for project in projects:
            remove_leftovers(leftovers(project))
        shutil.rmtree(work, ignore_errors=True)
    results["work_removed"] = not work.exists()
    return results
