"""Spare clones (pytest_orbstack/spares.py): while a test runs, the machine the next test will
likely ask for is cloned from the same golden machine. Checked from outside, against the engine:
a spare is a complete machine of its own name, a wrong guess never reaches a test, and a spare
nobody takes is deleted when the test it was made for ends."""

from __future__ import annotations

import json
import subprocess

import pytest
from innerpytest import run, sessions_of

DEPLOYS = '''
from pyinfra.operations import files

def deploy_a():
    files.put(name="Mark a", src=__import__("io").StringIO("a\\n"), dest="/etc/which-deploy", _sudo=True)

def deploy_b():
    files.put(name="Mark b", src=__import__("io").StringIO("b\\n"), dest="/etc/which-deploy", _sudo=True)

def made_here(orbstack, backend):
    """This session's test machines on the engine: this one's and its spares'."""
    prefix = "-".join(orbstack.name.split("-")[:2]) + "-"
    return [m.name for m in backend.list() if m.name.startswith(prefix) and "-golden-" not in m.name]
'''


def machines(result_path) -> dict[str, dict]:
    return {m["test"]: m for m in json.loads(result_path.read_text())["machines"] if m["kind"] == "test"}


@pytest.mark.parametrize("engine", ["docker", "orbstack"])
def test_the_next_tests_machine_is_cloned_while_a_test_runs(inner, engine, orbctl_env, monkeypatch, tmp_path):
    """Tests sharing an ``orbstack`` marker: every machine after the first was cloned early
    (while the first test runs, the next two tests' machines are made: ``spares.DEPTH``), and
    is what a clone made on demand is: its own hostname and name on the network, the deploy's
    running. On both engines (OrbStack through the emulator)."""
    if engine == "orbstack":
        for key in ("PATH", "ORBCTL_EMULATOR_HOME"):
            monkeypatch.setenv(key, orbctl_env[key])
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_seq='''
        import time
        import pytest
        from conftest import deploy_a, made_here

        pytestmark = pytest.mark.orbstack(deploy=deploy_a)

        @pytest.mark.parametrize("i", range(3))
        def test_machine(orbstack, orbstack_backend, i):
            deadline = time.monotonic() + 60
            while i == 0 and len(made_here(orbstack, orbstack_backend)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)  # (each spare's clone is started in a thread of its own)
            if i == 0:  # its own, and those of test_machine[1] and [2]
                assert len(made_here(orbstack, orbstack_backend)) == 3, made_here(orbstack, orbstack_backend)
            assert orbstack.run("hostname").stdout.strip() == orbstack.name
            assert orbstack.run("cat /etc/which-deploy").stdout == "a\\n"
            assert orbstack.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
            assert orbstack.run(f"getent hosts {orbstack.name}.orb.local").succeeded  # (not ip4 on OrbStack: #2676)

        def test_other_function_same_marker(orbstack):
            assert orbstack.run("hostname").stdout.strip() == orbstack.name
    ''')
    result = run(inner, "-v", "--orbstack-timings=t.json", f"--orbstack-backend={engine}")
    result.assert_outcomes(passed=4)
    made = {test.split("::")[-1].split("#")[0]: m["created_by"] for test, m in machines(inner.path / "t.json").items()}
    assert made == {"test_machine[0]": "clone", "test_machine[1]": "spare", "test_machine[2]": "spare",
                    "test_other_function_same_marker": "spare"}
    if engine == "orbstack":  # (the inner fixture checks Docker's machines)
        left = subprocess.run(["orbctl", "list", "-q"], capture_output=True, text=True, check=True,
                              env={**orbctl_env}).stdout.split()
        prefixes = tuple(f"pto-{session}-" for session in sessions_of(tmp_path / "state"))
        assert prefixes and [name for name in left if name.startswith(prefixes)] == []


def test_a_wrong_guess_is_deleted_and_the_test_gets_its_own_machine(inner):
    """The same test function asking for another deploy each run: the spare (the previous
    run's deploy) is deleted and the test gets a clone of its own deploy's golden machine, its
    name still recorded in the session. A spare whose test asks for no machine, or never sets
    its fixtures up (``xfail(run=False)``), is deleted when that test ends."""
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_guess='''
        import subprocess
        import pytest
        from conftest import deploy_a, deploy_b
        from pytest_orbstack.machines.registry import Registry

        SESSION = []  # this session's id, from the first machine: other sessions run beside it

        def names():
            mine = f"pto-{SESSION[0]}-"
            return [n for n in subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"],
                                              capture_output=True, text=True, check=True).stdout.split()
                    if n.startswith(mine)]

        @pytest.mark.parametrize("deploy", [
            deploy_a, deploy_b, None, deploy_a,
            pytest.param("notrun", marks=pytest.mark.xfail(run=False, reason="never set up")), "check",
        ], ids=["a", "b", "none", "c", "notrun", "check"])
        def test_guess(orbstack_machine, deploy):
            if deploy is None:
                pytest.skip("asks for no machine")
            if deploy == "check":  # the spares made for [none] and [notrun] went when they ended
                assert not [n for n in names() if "test-guess-none" in n or "test-guess-notrun" in n]
                return
            machine = orbstack_machine(deploy=deploy)
            expected = "a\\n" if deploy is deploy_a else "b\\n"
            assert machine.run("cat /etc/which-deploy").stdout == expected
            session = machine.name.split("-")[1]
            SESSION[:] = [session]
            assert machine.name in Registry().get(session).machines  # recorded, spare or not
    ''')
    result = run(inner, "-v", "--orbstack-timings=t.json")
    result.assert_outcomes(passed=4, skipped=1, xfailed=1)
    made = {test.split("[")[-1].split("]")[0]: m["created_by"] for test, m in machines(inner.path / "t.json").items()}
    assert made == {"a": "clone", "b": "clone", "c": "clone"}


@pytest.mark.parametrize("spares", ["on", "off"])
def test_spares_under_xdist_with_clone_off_and_switched_off(inner, spares):
    """Under ``-n 2`` each worker clones its own next machine; ``clone=False`` makes no spare,
    nor does anything with ini ``orbstack_spares`` false (given as ``-o``)."""
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_x='''
        import pytest
        from conftest import deploy_a

        @pytest.mark.orbstack(deploy=deploy_a)
        @pytest.mark.parametrize("i", range(4))
        def test_cloned(orbstack, i):
            assert orbstack.run("cat /etc/which-deploy").stdout == "a\\n"

        @pytest.mark.orbstack(deploy=deploy_a, clone=False)
        @pytest.mark.parametrize("i", range(2))
        def test_fresh(orbstack, i):
            assert orbstack.run("cat /etc/which-deploy").stdout == "a\\n"
    ''')
    switch = ["-o", "orbstack_spares=false"] if spares == "off" else []
    result = run(inner, "-n", "2", "--orbstack-timings=t.json", *switch)
    result.assert_outcomes(passed=6)
    made = [m["created_by"] for m in machines(inner.path / "t.json").values()]
    assert made.count("create") == 2, made
    assert made.count("spare") >= 1 if spares == "on" else made.count("clone") == 4, made


def test_under_xdist_each_worker_clones_its_next_two_tests_machines(inner):
    """Under ``-n 2`` a worker knows more than its next test (the scheduler keeps the next ones
    queued on it: :func:`pytest_orbstack.plugin.state.worker_queue`), so each worker keeps
    ``spares.DEPTH`` spares too: while the tests of one golden run on two workers, this
    session's test machines reach 5 or more at once (each worker's own and two spares; one
    spare per worker would make 4 at most)."""
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_x='''
        import os, time
        import pytest
        from conftest import deploy_a, made_here

        @pytest.mark.orbstack(deploy=deploy_a)
        @pytest.mark.parametrize("i", range(8))
        def test_cloned(orbstack, orbstack_backend, i):
            seen, deadline = 0, time.monotonic() + 8
            while seen < 5 and not os.path.exists("saw5") and time.monotonic() < deadline:
                seen = len(made_here(orbstack, orbstack_backend))
                time.sleep(0.1)
            if seen >= 5:
                open("saw5", "w").close()
            assert orbstack.run("cat /etc/which-deploy").stdout == "a\\n"
    ''')
    result = run(inner, "-n", "2", "--orbstack-timings=t.json")
    result.assert_outcomes(passed=8)
    assert (inner.path / "saw5").exists(), "no test saw more than 4 of this session's test machines at once"
