"""The acceptance test's one run of the user project (tests/acceptance/userrepo.py), shared by
its tests and done once per session even under ``pytest -n N`` (a file lock decides which
process runs it; the others read its results)."""

from __future__ import annotations

import json

import pytest
from filelock import FileLock

collect_ignore = ["userproject"]  # the user's tests: run by the acceptance test, not collected here


@pytest.fixture(scope="session")
def user_repo(tmp_path_factory, worker_id):
    """What :func:`userrepo.run_everything` found, run once for the whole session."""
    from userrepo import run_everything

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    results = shared / "acceptance-user-repo.json"
    with FileLock(str(shared / "acceptance-user-repo.lock")):
        if not results.exists():
            results.write_text(json.dumps(run_everything()))
    return json.loads(results.read_text())
