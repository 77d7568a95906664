"""``--orbstack-prune`` of a project and of the whole host: a kept clone of a failed test and its
snapshot image go with the project's prune, another project's kept machine is left to it, and
``--orbstack-prune=all`` takes that one too."""

from __future__ import annotations

import subprocess
import sys

from innerpytest import run, session_leftovers, sessions_of

# ``--orbstack-prune=all`` also removes every project's cached golden machines and the package's
# images no recorded session or machine needs, engine-wide: on this shared engine that would
# take those of the tests running beside this one (a snapshot image between two clones, a cache
# entry between two runs). The inner project's conftest narrows both to this test's own sessions.
ONLY_THIS_TESTS_SESSIONS = """
import os
from pathlib import Path
from pytest_orbstack.backends.docker.cache import DockerCacheStore
from pytest_orbstack.machines import reaper
from pytest_orbstack.model.names import SESSION_LABEL

log = Path(os.environ["PYTEST_ORBSTACK_STATE_DIR"]) / "sessions.log"
ours = {line.split()[1] for line in log.read_text().splitlines()} if log.exists() else set()
engine_wide = reaper.removable
reaper.removable = lambda *args: (lambda labels: engine_wide(*args)(labels) and labels.get(SESSION_LABEL) in ours)
DockerCacheStore.entries = lambda self, project: []
"""


def test_a_kept_clone_and_its_snapshot_go_with_prune_and_other_projects_are_left(inner, tmp_path):
    inner.path.joinpath("deploy.py").write_text(
        "from pyinfra.operations import files\nfiles.directory(path='/srv/app', _sudo=True)\n")
    inner.makepyfile(test_kept='''
        def test_fails_on_a_clone(orbstack_machine):
            orbstack_machine(deploy="deploy.py")
            assert False, "on purpose"
    ''')
    other = tmp_path / "other-project"  # a second project with a kept machine of its own
    other.mkdir()
    (other / "pytest.ini").write_text("[pytest]\norbstack_backend = docker\n")
    (other / "test_other.py").write_text("def test_keep(orbstack_machine):\n    orbstack_machine()\n")
    kept_other = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--orbstack-keep"],
                                cwd=other, capture_output=True, text=True, timeout=300)
    assert kept_other.returncode == 0, kept_other.stdout
    sessions = sessions_of(tmp_path / "state")
    result = run(inner, "--orbstack-keep=failed")
    result.assert_outcomes(failed=1)
    ours = next(s for s in sessions_of(tmp_path / "state") if s not in sessions)
    assert any(n.startswith("pytest-orbstack-snapshot:") for n in session_leftovers(ours))  # kept clone uses it
    pruned = run(inner, "--orbstack-prune")
    assert pruned.ret == 0
    pruned.stdout.fnmatch_lines([f"orbstack: pruned 1 machine(s) of this project ({inner.path}): pto-{ours}-*",
                                 f"orbstack: left session {sessions[0]}: another project *"])
    assert session_leftovers(ours) == []  # the clone, then its snapshot image
    assert session_leftovers(sessions[0]) != []  # the other project's kept machine stays
    inner.makeconftest(ONLY_THIS_TESTS_SESSIONS)
    everything = run(inner, "--orbstack-prune=all")
    assert everything.ret == 0 and session_leftovers(sessions[0]) == []
