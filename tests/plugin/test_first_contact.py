"""A newcomer's first mistakes: each gives one line naming the problem (the `-ra` summary line
too), before any machine is made where that is possible, and nothing is left behind."""

from __future__ import annotations

import json
import re

import pytest
from innerpytest import run

from pytest_orbstack.backends.incus.backend import IncusBackend

BROKEN_DEPLOY = "from pyinfra.operations import server\nserver.shell(commands=['true']\n"
RAISING_DEPLOY = '''from pyinfra.operations import server
server.shell(name="Fine", commands=["true"])
settings = {"port": 80}
port = settings["prot"]
'''


def summary_line(out: str, test: str) -> str:
    """The `-ra` short summary line of ``test``."""
    lines = [line for line in out.splitlines() if re.match(rf"(FAILED|ERROR) \S*::{test}\b", line)]
    assert len(lines) == 1, out
    return lines[0]


def test_bad_inputs_fail_with_one_line_before_any_machine(inner):
    inner.path.joinpath("broken.py").write_text(BROKEN_DEPLOY)
    inner.makepyfile(test_bad='''
        import pytest

        @pytest.mark.orbstack(deploy="missing.py")
        def test_missing_deploy_marker(orbstack):
            pass

        def test_missing_deploy_factory(orbstack_machine):
            orbstack_machine(deploy="missing.py")

        def test_deploy_syntax_error(orbstack_machine):
            orbstack_machine(deploy="broken.py")

        def test_unknown_version(orbstack_machine):
            orbstack_machine(image="ubuntu:99.99")

        def test_bad_user(orbstack_machine):
            orbstack_machine(user="Bad User")

        def test_missing_cloud_init(orbstack_machine):
            orbstack_machine(cloud_init="user-data.yaml")
    ''')
    result = run(inner, "--orbstack-timings=t.json")
    result.assert_outcomes(failed=5, errors=1)
    out = result.stdout.str()
    expected = {
        "test_missing_deploy_marker": "deploy file not found: missing.py (looked for ",
        "test_missing_deploy_factory": "deploy file not found: missing.py (looked for ",
        "test_deploy_syntax_error": "broken.py:2: SyntaxError in deploy: ",
        "test_unknown_version": "unknown ubuntu version '99.99' in image 'ubuntu:99.99': known releases",
        "test_bad_user": "invalid user name 'Bad User'",
        "test_missing_cloud_init": "cloud-init user-data file not found: user-data.yaml",
    }
    for test, cause in expected.items():
        assert f"pytest-orbstack: {cause}" in summary_line(out, test), test
    assert "Traceback" not in out and "During handling" not in out
    assert "orbstack machines" not in out  # no machine was even attempted
    assert json.loads((inner.path / "t.json").read_text())["machines"] == []  # the tests timed, no machine


def test_missing_deploy_in_apply_names_the_file(inner):
    inner.makepyfile(test_apply='''
        def test_apply_missing(orbstack_machine):
            orbstack_machine().apply("missing.py")
    ''')
    result = run(inner)
    result.assert_outcomes(failed=1)
    line = summary_line(result.stdout.str(), "test_apply_missing")
    assert "deploy file not found: missing.py (looked for " in line


def test_marker_typo_stops_at_collection(inner):
    inner.makepyfile(test_typo='''
        import pytest

        @pytest.mark.orbstack(imgae="debian:bookworm")
        def test_typo(orbstack):
            pass
    ''')
    result = run(inner)
    assert result.ret == 4  # usage error: nothing ran
    result.stderr.fnmatch_lines(["ERROR: test_typo.py::test_typo: @pytest.mark.orbstack got an unknown "
                                 "argument 'imgae' (did you mean 'image'?)*"])
    assert "orbstack machines" not in result.stdout.str()


def test_deploy_that_raises_shows_its_file_and_line(inner):
    inner.path.joinpath("deploy.py").write_text(RAISING_DEPLOY)
    inner.makepyfile(test_raises='''
        def test_golden(orbstack_machine):
            orbstack_machine(deploy="deploy.py")

        def test_fresh(orbstack_machine):
            orbstack_machine(deploy="deploy.py", clone=False)
    ''')
    result = run(inner)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    for test in ("test_golden", "test_fresh"):
        line = summary_line(out, test)
        assert "pytest-orbstack: deploy deploy.py failed: deploy.py:4: KeyError: 'prot'" in line, line
    assert 'deploy.py:4 in <module>: port = settings["prot"]' in out  # the deploy's own frame
    assert "pyinfra/api" not in out and "pytest_orbstack/" not in out  # and only the deploy's frames
    assert "while making the golden machine of debian:bookworm with deploy" in out


def test_relative_paths_resolve_from_the_test_folder(inner):
    sub = inner.mkpydir("sub")
    sub.joinpath("deploy.py").write_text(
        "from pyinfra.operations import files\nfiles.directory(path='/srv/marker', _sudo=True)\n")
    sub.joinpath("test_sub.py").write_text('''
import pytest

@pytest.mark.orbstack(deploy="deploy.py", clone=False)
def test_marker_factory_and_apply(orbstack, orbstack_machine):
    assert orbstack.host.file("/srv/marker").is_directory
    other = orbstack_machine(deploy="deploy.py", clone=False)
    assert other.apply("deploy.py").changed == []
''')
    result = run(inner, "sub/test_sub.py")  # from the parent folder (the rootdir)
    result.assert_outcomes(passed=1)


def test_progress_lines_under_xdist_and_the_machines_own_status(inner):
    inner.makepyfile(test_status='''
        def test_status(orbstack_machine):
            status = orbstack_machine().status()
            host_uptime = float(open("/proc/uptime").read().split()[0])
            assert 0 <= status["uptime_seconds"] < 300 < host_uptime or host_uptime < 300
            assert status["memory_source"] == "cgroup"  # the machine's cgroup, not the host's meminfo
            assert 0 < status["mem_used_kib"] < status["mem_total_kib"]
            assert status["load"] >= 1  # the ps counting the tasks is itself running

        def test_other(orbstack_machine):
            orbstack_machine()
    ''')
    result = run(inner, "-v", "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(["[[]gw?[]] orbstack: create pto-*-test-status-test-status-0-*",
                                        "[[]gw?[]] orbstack: teardown pto-*-test-status-test-status-0-*",
                                        "[[]gw?[]] orbstack: create pto-*-test-status-test-other-0-*"])


def test_deploys_run_as_the_default_user_with_a_hint_and_sudo_from_host_data(inner):
    inner.path.joinpath("deploy.py").write_text(
        "from pyinfra.operations import files\nfiles.directory(name='Make /srv/site', path='/srv/site')\n")
    inner.makepyfile(test_sudo='''
        def test_without_sudo(orbstack_machine):
            orbstack_machine(deploy="deploy.py", clone=False)

        def test_with_sudo_as_host_data(orbstack_machine):
            m = orbstack_machine(deploy="deploy.py", clone=False, data={"_sudo": True})
            assert m.host.file("/srv/site").user == "root"

        def test_with_root_as_default_user(orbstack_machine):
            m = orbstack_machine(deploy="deploy.py", clone=False, user="root")
            assert m.host.file("/srv/site").is_directory
    ''')
    result = run(inner)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    line = summary_line(out, "test_without_sudo")
    assert "deploy deploy.py failed: operation 'Make /srv/site': " in line and "Permission denied" in line
    assert "hint: deploys run as the machine's default user (non-root, passwordless sudo)" in out


def test_the_environment_variable_chooses_the_engine_when_nothing_else_does(inner, monkeypatch):
    inner.makeini("[pytest]\n")  # no orbstack_backend: $PYTEST_ORBSTACK_BACKEND decides
    inner.makepyfile(test_env='''
        def test_engine(orbstack_backend):
            print("ENGINE", orbstack_backend.name)
    ''')
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "orbstack")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no orbctl here
    result = run(inner)
    result.assert_outcomes(errors=1)
    assert "pytest-orbstack: 'orbctl' not found on PATH" in summary_line(result.stdout.str(), "test_engine")
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "docker")
    docker = run(inner, "-s")
    docker.assert_outcomes(passed=1)
    docker.stdout.fnmatch_lines(["*ENGINE docker*"])


REFUSED = {  # (keyword, engine) -> the one line's cause
    ("vm=True", "inner"): "vm=True: the docker engine makes containers only",
    ("vm=True", "incus_inner"): "vm=True: this Incus daemon cannot run VMs (drivers: lxc",
    ("target='m1'", "inner"): "target='m1': the docker engine has no cluster members",
    ("target='m1'", "incus_inner"): "target='m1': the local Incus daemon is not a cluster",
}


@pytest.mark.parametrize(("keyword", "project"), list(REFUSED))
def test_what_the_engine_cannot_give_is_one_line_before_any_machine(request, keyword, project):
    """vm=True on Docker (containers only) and on an Incus daemon without its VM driver (this
    host: no vhost_vsock), target= (a cluster member) on Docker and on a lone Incus daemon: one
    line saying why, for the marker and the factory; no machine."""
    inner = request.getfixturevalue(project)
    inner.makepyfile(test_refused=f"""
        import pytest

        @pytest.mark.orbstack({keyword})
        def test_marker(orbstack):
            pass

        def test_factory(orbstack_machine):
            orbstack_machine({keyword})
    """)
    if (keyword, project) == ("vm=True", "incus_inner") and IncusBackend().vm_refusal() is None:
        pytest.skip("this Incus daemon runs VMs")
    result = run(inner, "--orbstack-timings=t.json")
    result.assert_outcomes(failed=1, errors=1)
    out = result.stdout.str()
    for test in ("test_marker", "test_factory"):
        assert f"pytest-orbstack: {REFUSED[keyword, project]}" in summary_line(out, test), out
    assert "Traceback" not in out and "orbstack machines" not in out
    assert json.loads((inner.path / "t.json").read_text())["machines"] == []  # the tests timed, no machine


def test_a_deploy_that_exits_or_fails_only_the_second_time_says_so_and_the_next_test_runs(inner):
    """``sys.exit()`` in a deploy is its failure in one line (it used to escape as SystemExit
    through the package and break the next test's fixtures), and a deploy that fails only on
    check_idempotent's second run says it was the second run."""
    inner.path.joinpath("exits.py").write_text(
        "import sys\nfrom pyinfra.operations import server\nserver.shell(name='x', commands=['true'])\nsys.exit(0)\n")
    inner.path.joinpath("once.py").write_text(
        "from pyinfra.operations import server\n"
        "server.shell(name='only once', commands=['test ! -e /etc/once && touch /etc/once'], _sudo=True)\n")
    inner.path.joinpath("fine.py").write_text(
        "from pyinfra.operations import server\nserver.shell(commands=['true'])\n")
    inner.makepyfile(test_ends='''
        def test_exits(orbstack_machine):
            orbstack_machine(deploy="exits.py")

        def test_once(orbstack_machine):
            orbstack_machine(deploy="once.py", check_idempotent=True)

        def test_next_is_fine(orbstack_machine):
            assert orbstack_machine(deploy="fine.py").run("true").succeeded
    ''')
    result = run(inner)
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert "pytest-orbstack: deploy exits.py failed: exits.py:4: SystemExit: 0" in summary_line(out, "test_exits")
    assert ("deploy once.py failed on its second run (check_idempotent; the first succeeded): operation "
            "'only once'") in summary_line(out, "test_once")
    assert "pytest_orbstack/" not in out


def test_a_marker_that_drops_a_check_or_reaches_no_machine_is_warned_about(inner):
    """The closest marker alone describes the ``orbstack`` machine, and only that fixture
    reads a marker's deploy: a test's own marker that silently drops the module's
    check_idempotent, or carries a deploy to a test without the fixture, is warned about."""
    inner.makepyfile(test_w='''
        import pytest

        pytestmark = pytest.mark.orbstack(deploy="d.py", check_idempotent=True)

        @pytest.mark.orbstack(deploy="d.py", data={"x": 1})
        def test_override(orbstack):
            pass

        @pytest.mark.orbstack(deploy="d.py", check_idempotent=True)
        def test_factory_only(orbstack_machine):
            pass

        def test_module_marker_and_factory(orbstack_machine):
            pass
    ''')
    out = run(inner, "--collect-only", "-q").stdout.str()
    assert ("test_w.py::test_override: its @pytest.mark.orbstack replaces the farther one, so "
            "check_idempotent=True does not apply to it: repeat it there") in out, out
    assert ("test_w.py::test_factory_only: its @pytest.mark.orbstack(deploy=..., check_idempotent=...) is "
            "read only by the orbstack fixture, which this test does not use") in out, out
    assert out.count("PytestWarning") == 2, out  # a module's marker over factory tests is the usual case


def test_testinfras_host_under_the_marker_fails_naming_orbstack_host(inner):
    """Molecule's tests check ``host``; here, without ``--hosts``, testinfra's ``host`` is the
    machine pytest runs on, so ``assert not host.package("nginx").is_installed`` passed over a
    deploy installing nginx (red team 2, finding 13). A marked test asking for it fails at
    setup naming ``orbstack.host``, before any machine is made; a project's own ``host``
    fixture and an unmarked test are left alone."""
    inner.makepyfile(test_h='''
        import pytest

        @pytest.mark.orbstack(deploy="d.py")
        def test_host_only(host):
            assert not host.package("nginx").is_installed

        @pytest.mark.orbstack(deploy="d.py")
        def test_both(orbstack, host):
            pass

        def test_unmarked(host):
            assert host.run("true").rc == 0
    ''')
    inner.mkdir("own").joinpath("conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef host():\n    return 'mine'\n")
    inner.path.joinpath("own", "test_own.py").write_text(
        "import pytest\n\n@pytest.mark.orbstack(image='debian:bookworm')\n"
        "def test_own_host(host):\n    assert host == 'mine'\n")
    result = run(inner, "-ra", "--orbstack-timings=timings.json")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines([
        "ERROR test_h.py::test_host_only[[]local[]] - Failed: test_h.py::test_host_only[[]local[]] is marked "
        "@pytest.mark.orbstack but checks testinfra's `host`, the machine pytest runs on (no --hosts "
        "given): use orbstack.host, the test's machine",
        "ERROR test_h.py::test_both[[]local[]] - *use orbstack.host*"])
    assert json.loads(inner.path.joinpath("timings.json").read_text())["machines"] == []
