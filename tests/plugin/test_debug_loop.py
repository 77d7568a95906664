"""The debug loop: keep the machine of a failing test, see it with ``--orbstack-list``, fix the
deploy, rerun with ``--orbstack-reuse``: the kept machine is used (nothing is created), the fixed
deploy is applied to it, the test passes; ``--orbstack-prune`` ends it."""

from __future__ import annotations

import subprocess
import time

from innerpytest import run, sessions_of

DEPLOY = "from pyinfra.operations import files\nfiles.line(name='motd', path='/etc/motd', line='{}', _sudo=True)\n"


def created_since(since: int) -> list[str]:
    until = str(int(time.time()) + 1)
    out = subprocess.run(["docker", "events", "--since", str(since), "--until", until, "--filter",
                          "type=container", "--filter", "event=create", "--format",
                          "{{.Actor.Attributes.name}}"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def image_session(image: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "pytest-orbstack.session"}}',
                           image], capture_output=True, text=True).stdout.strip()


def test_keep_fix_reuse(inner, tmp_path):
    inner.makefile(".py", deploy=DEPLOY.format("version 1"))
    inner.makepyfile(test_motd='''
        import pytest

        @pytest.mark.orbstack(deploy="deploy.py")
        def test_motd(orbstack):
            assert "version 2" in orbstack.host.file("/etc/motd").content_string
    ''')
    first = run(inner, "--orbstack-keep=failed")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["kept 1 machine(s); log in with:", "  docker exec -it pto-* bash -l",
                                "rerun the tests on them: pytest --orbstack-reuse *-p no:cacheprovider"])
    kept = first.stdout.str().split("docker exec -it ")[1].split()[0]

    listed = run(inner, "--orbstack-list")
    listed.stdout.fnmatch_lines([f"{kept} *debian:bookworm *test_motd.py::test_motd#0",
                                 f"* docker exec -it {kept} bash -l"])

    inner.makefile(".py", deploy=DEPLOY.format("version 2"))  # the fix
    since = int(time.time())
    second = run(inner, "--orbstack-reuse", "-v")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines([f"orbstack: reusing kept {kept} (debian:bookworm)",
                                 f"orbstack: deploy {kept}: deploy.py: 1 operations, 1 changed*"])
    reuse_session = sessions_of(tmp_path / "state")[-1]
    created = [n for n in created_since(since) if n.startswith(f"pto-{reuse_session}")]
    assert created == []  # no machine, no golden machine: nothing was created

    run(inner, "--orbstack-list").stdout.fnmatch_lines([f"{kept} *test_motd.py::test_motd#0"])
    pruned = run(inner, "--orbstack-prune")
    pruned.stdout.fnmatch_lines([f"orbstack: pruned 1 machine(s) of this project*{kept}*"])
    run(inner, "--orbstack-list").stdout.fnmatch_lines(["orbstack: no kept machines in this project*"])
    images = subprocess.run(["docker", "images", "-q", "--filter", "label=pytest-orbstack.session"],
                            capture_output=True, text=True, check=True).stdout.split()
    sessions = set(sessions_of(tmp_path / "state"))
    assert len(sessions) == 2  # --orbstack-list and --orbstack-prune open none
    assert not [i for i in images if image_session(i) in sessions]  # the golden's snapshot went too
