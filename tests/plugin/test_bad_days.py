"""Bad days on the engine: the engine stops answering in the middle of a session (here: the
test points DOCKER_HOST at a socket nobody serves, then back; killing the host's dockerd would
take every other test on this host with it). The affected test gets one clear line, the rest of
the session goes on, and once the engine answers again nothing of the session is left."""

from __future__ import annotations

from innerpytest import containers, run, sessions_of, slow_engine


def test_engine_gone_then_back_mid_session(inner, tmp_path):
    inner.makepyfile(test_gone='''
        import os

        def test_a_engine_goes_away(orbstack_machine):
            orbstack_machine()
            os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # the engine is gone

        def test_b_engine_is_back(orbstack_machine):
            os.environ.pop("DOCKER_HOST")
            assert orbstack_machine().run("true").succeeded
    ''')
    result = run(inner, "-rA", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "ERROR test_gone.py::test_a_engine_goes_away - Failed: pytest-orbstack: teardown of pto-* "
        "failed: docker daemon not answering at DOCKER_HOST=unix:///nonexistent/docker.sock: *"])
    summary = result.stdout.str().split("short test summary info")[1]
    assert "Traceback" not in summary
    (session,) = sessions_of(tmp_path / "state")
    assert containers(session) == set()  # test a's machine: deleted by the session's sweep


def test_a_hanging_engine_call_fails_that_test_only(inner, tmp_path, monkeypatch):
    """The engine makes test a's machine but its `docker run` never returns: after
    PYTEST_ORBSTACK_ENGINE_TIMEOUT that test fails in one line, its machine is removed at once,
    and the next test runs."""
    monkeypatch.setenv("PATH", slow_engine(tmp_path / "bin", "run", tmp_path / "hung", hang="after"))
    monkeypatch.setenv("PYTEST_ORBSTACK_ENGINE_TIMEOUT", "15")
    inner.makepyfile(test_hang='''
        import subprocess

        def test_a_create_hangs(orbstack_machine):
            orbstack_machine(clone=False)

        def test_b_goes_on(orbstack_machine, request):
            machine = orbstack_machine(clone=False)
            assert machine.run("true").succeeded
            mine = "pto-" + machine.name.split("-")[1] + "-"  # this session's (others may run beside it)
            names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"],
                                   capture_output=True, text=True).stdout.split()
            assert not [n for n in names if n.startswith(mine) and "test-a-create-hangs" in n]  # gone at its timeout
    ''')
    result = run(inner, "-rA", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_hang.py::test_a_create_hangs - *docker run did not finish in 15s*"])
    summary = result.stdout.str().split("short test summary info")[1]
    assert "Traceback" not in summary
    (session,) = sessions_of(tmp_path / "state")
    assert containers(session) == set()


def test_machines_stopped_as_an_engine_restart_stops_them(inner, tmp_path):
    """Restarting dockerd stops every machine (it cannot be done here: the host's engine
    serves the other tests); the machines are killed from outside instead. The test whose
    machine stopped fails naming that, in testinfra checks as in `run`; the next test clones
    from a golden machine that was stopped too; nothing is left."""
    inner.makepyfile(test_restart='''
        import subprocess

        def deploy():
            from pyinfra.operations import server
            server.shell(commands=["true"])

        def kill_all_machines(name):
            session = "-".join(name.split("-")[:2])  # pto-<session>
            ids = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{session}-"],
                                 capture_output=True, text=True, check=True).stdout.split()
            subprocess.run(["docker", "kill", *ids], capture_output=True, check=True)

        def test_a_machine_stops_under_the_test(orbstack_machine):
            machine = orbstack_machine(deploy=deploy)
            kill_all_machines(machine.name)  # this test's and the golden machine
            assert machine.host.file("/etc/os-release").exists

        def test_b_goes_on(orbstack_machine):
            assert orbstack_machine(deploy=deploy).run("true").succeeded

        def test_c_machine_stops_during_a_deploy(orbstack_machine):
            from pyinfra.operations import python, server
            machine = orbstack_machine()

            def stopping():
                python.call(name="Stop it", function=lambda: kill_all_machines(machine.name))
                server.shell(name="Too late", commands=["true"])
            machine.apply(stopping)
    ''')
    result = run(inner, "-rA", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*FAILED Too late*", "*machine pto-* is not running (exit code 137 at *Z)*"])
    result.stdout.fnmatch_lines(["E * pytest_orbstack.errors.MachineError: machine pto-* is not running (exit "
                                 "code 137 at *Z): it was stopped or killed, or the docker engine restarted",
                                 "FAILED test_restart.py::test_a_machine_stops_under_the_test - *MachineError: "
                                 "machine pto-* is not running*"])
    (session,) = sessions_of(tmp_path / "state")
    assert containers(session) == set()
