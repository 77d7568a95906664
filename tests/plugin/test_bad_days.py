"""Bad days on the engine: the engine stops answering in the middle of a session (here: the
test points DOCKER_HOST at a socket nobody serves, then back; killing the host's dockerd would
take every other test on this host with it). The affected test gets one clear line, the rest of
the session goes on, and once the engine answers again nothing of the session is left."""

from __future__ import annotations

from innerpytest import containers, run, sessions_of


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
