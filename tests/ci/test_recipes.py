"""The CI recipes of docs/ci/ (docs/ci.md), run here as far as this host allows.

GitHub Actions: the shard job's shell steps run for each matrix value, both shards at once, on
this host's Docker, each in its own copy of examples/ (as each job has its own checkout), with
the expressions filled in as the runner would (``matrix.shard``, ``strategy.job-total``); then
the report job's merge step runs on their files laid out as download-artifact lays them out.
Together the two shards run every example test exactly once, the golden machine is made in one
shard only, the merged JUnit has every test, and nothing is left on the engine. The GitLab
job's commands run with its variables set: its pytest line with ``--collect-only -qq`` added (the
same command as GitHub's, which made the machines), its report job's merges for real.
The steps that are GitHub or GitLab actions (checkout, cache, artifacts) cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from innerpytest import containers, sessions_of
from testenv import ROOT, needs_docker

RECIPES = ROOT / "docs" / "ci"
EXAMPLES = ROOT / "examples"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
EXAMPLE_TESTS = 7


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def commands(run: str) -> list[str]:
    """The shell commands of a ``run:`` step, but installing the package (this virtualenv has it)."""
    return [line for line in run.splitlines() if line.strip() and "pip install" not in line]


def fill(command: str, values: dict[str, str]) -> str:
    """GitHub's ``${{ ... }}`` expressions replaced as the runner would."""
    return EXPRESSION.sub(lambda m: values[m[1]], command)


def checkout(where: Path) -> Path:
    """A job's own checkout of examples/: links to its files, outputs written beside them."""
    where.mkdir(parents=True)
    for entry in EXAMPLES.iterdir():
        if entry.name not in ("__pycache__", ".pytest_cache"):
            (where / entry.name).symlink_to(entry)
    return where


def shell(command: str, cwd: Path, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture
def job_env(tmp_path) -> dict[str, str]:
    """A job's environment: this virtualenv's python first on PATH, a state dir of its own."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}


def test_the_recipes_are_what_docs_ci_says():
    github, gitlab = load("github-actions.yml"), load("gitlab-ci.yml")
    shard = github["jobs"]["shard"]
    assert shard["runs-on"].startswith("ubuntu-") and shard["strategy"]["matrix"]["shard"] == [1, 2]
    runs = [step["run"] for step in shard["steps"] if "run" in step]
    assert any("--orbstack-shard=${{ matrix.shard }}/${{ strategy.job-total }}" in run for run in runs)
    uploads = [s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert "junit.xml" in uploads[0]["with"]["path"] and "timings.json" in uploads[0]["with"]["path"]
    assert github["jobs"]["report"]["needs"] == "shard"
    job = gitlab["machine-tests"]
    assert job["parallel"] == 2 and job["services"][0]["name"].startswith("docker:")
    assert any('--orbstack-shard="$CI_NODE_INDEX/$CI_NODE_TOTAL"' in line for line in job["script"])


@needs_docker("the GitHub Actions shard job")
def test_github_shards_then_report_run_here(tmp_path, job_env):
    github = load("github-actions.yml")
    shard_job = github["jobs"]["shard"]
    total = len(shard_job["strategy"]["matrix"]["shard"])
    steps = [step["run"] for step in shard_job["steps"] if "run" in step]
    jobs = {}
    for index in shard_job["strategy"]["matrix"]["shard"]:
        values = {"matrix.shard": str(index), "strategy.job-total": str(total)}
        script = " && ".join(fill(c, values) for run in steps for c in commands(run))
        jobs[index] = (checkout(tmp_path / f"job-{index}"),
                       shell(script, tmp_path / f"job-{index}", job_env, start_new_session=True))
    try:
        outputs = {index: proc.communicate(timeout=1200)[0] for index, (_, proc) in jobs.items()}
        for index, (_, proc) in jobs.items():
            assert proc.returncode == 0, outputs[index][-6000:]
            assert f"orbstack: shard {index}/{total}:" in outputs[index]
            assert re.search(r"cgroup v\d, driver \w+", outputs[index])  # the engine-facts step ran
            print(*[line for line in outputs[index].splitlines() if re.match(r"(orbstack: shard|=+ \d+ passed)", line)])
        ran = {i: _junit_tests(work / "junit.xml") for i, (work, _) in jobs.items()}
        assert not ran[1] & ran[2] and len(ran[1] | ran[2]) == EXAMPLE_TESTS, ran
        timings = {i: json.loads((work / "timings.json").read_text()) for i, (work, _) in jobs.items()}
        goldens = {i: [m for m in t["machines"] if m["kind"] == "golden"] for i, t in timings.items()}
        assert sorted(len(g) for g in goldens.values()) == [0, 1], goldens  # made in one shard only
        assert all(m["outcome"] == "deleted" for t in timings.values() for m in t["machines"])
        _ran_at_once(timings[1], timings[2])
        report = _report_job(github, tmp_path, jobs, job_env)
        assert _junit_tests(report / "junit.xml") == ran[1] | ran[2]
        merged = json.loads((report / "orbstack-timings.json").read_text())
        assert set(merged["sessions"]) == {timings[1]["session"], timings[2]["session"]}
        _balanced_on_merged(report, jobs, goldens, job_env)
    finally:
        for _, proc in jobs.values():
            if proc.poll() is None:  # a job that hung: its process group goes (the watcher reaps)
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=120)
        for session in sessions_of(tmp_path / "state"):
            assert not containers(session), f"session {session} left machines"


def _junit_tests(path: Path) -> set[str]:
    cases = ET.parse(path).getroot().iter("testcase")
    return {f"{case.get('classname')}::{case.get('name')}" for case in cases}


def _ran_at_once(first: dict, second: dict) -> None:
    """The two sessions had machines at the same time on one engine and state dir: neither
    pruned the other's (both passed, every machine deleted by its own session)."""
    spans = [[m["created_at"] for m in t["machines"] if m["created_at"]] for t in (first, second)]
    assert all(spans) and min(spans[0]) < max(spans[1]) and min(spans[1]) < max(spans[0]), spans


def _report_job(github: dict, tmp_path: Path, jobs: dict, env: dict[str, str]) -> Path:
    """The report job's merge step, on the shards' files as download-artifact lays them out."""
    report = tmp_path / "report"
    for index, (work, _) in jobs.items():
        (report / f"shard-{index}").mkdir(parents=True)
        for name in ("junit.xml", "timings.json"):
            (report / f"shard-{index}" / name).write_bytes((work / name).read_bytes())
    for step in github["jobs"]["report"]["steps"]:
        for command in commands(step.get("run", "")):
            proc = subprocess.run(["bash", "-c", command], cwd=report, env=env, capture_output=True, text=True)
            assert proc.returncode == 0 and "merge: 7 tests from 2 file(s)" in proc.stdout, proc.stdout + proc.stderr
    return report


def _balanced_on_merged(report: Path, jobs: dict, goldens: dict, env: dict[str, str]) -> None:
    """The next run's shards, balanced on the merged timings, find the golden machine's cost by
    the key the shard that made it computes at collection."""
    index = next(i for i, g in goldens.items() if g)
    work = jobs[index][0]
    (work / "orbstack-timings.json").write_bytes((report / "orbstack-timings.json").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                           f"--orbstack-shard={index}/2", "--orbstack-shard-timings=orbstack-timings.json"],
                          cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "by orbstack-timings.json; 1 golden machines' costs recorded" in proc.stdout, proc.stdout[-3000:]


def test_gitlab_job_commands_run_here(tmp_path, job_env):
    gitlab = load("gitlab-ci.yml")
    job = gitlab["machine-tests"]
    total = job["parallel"]
    selected = {}
    for index in range(1, total + 1):
        work = checkout(tmp_path / f"job-{index}")
        env = {**job_env, "CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": str(total)}
        for command in job["script"]:
            collect = command + " --collect-only -qq" if " -m pytest " in command else command
            proc = subprocess.run(["bash", "-c", collect], cwd=work, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        selected[index] = {line for line in proc.stdout.splitlines() if "::" in line}
        assert (work / f"junit-{index}.xml").exists() and (work / f"timings-{index}.json").exists()
        (tmp_path / f"junit-{index}.xml").write_bytes((work / f"junit-{index}.xml").read_bytes())
        (tmp_path / f"timings-{index}.json").write_bytes((work / f"timings-{index}.json").read_bytes())
    assert not selected[1] & selected[2] and len(selected[1] | selected[2]) == EXAMPLE_TESTS, selected
    for command in gitlab["machine-tests-report"]["script"]:
        if "pip install" not in command:
            proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=job_env, capture_output=True, text=True)
            assert proc.returncode == 0 and "from 2 file(s)" in proc.stdout, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "orbstack-timings.json").read_text())["machines"] == []
