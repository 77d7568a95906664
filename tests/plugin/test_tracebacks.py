"""A failing ``apply`` called in a test's body fails at the test's own line, as the fixtures'
failures do: the deploy report or the input error, and no frame from inside the package (even
with ``--tb=long``, which shows every frame pytest does not hide)."""

from __future__ import annotations

import re

from innerpytest import run

FAILING = '''from pyinfra.operations import server
server.shell(name="Fail here", commands=["echo broken-on-purpose >&2; exit 3"])
'''
CHANGES_AGAIN = '''import io
import time

from pyinfra.operations import files
files.put(name="Stamp", src=io.StringIO(str(time.time_ns())), dest="/tmp/stamp")
'''
TESTS = '''
def test_failing_operation(orbstack_machine):
    machine = orbstack_machine()
    machine.apply("failing.py")


def test_missing_deploy_file(orbstack_machine):
    machine = orbstack_machine()
    machine.apply("no-such-deploy.py")


def test_not_idempotent(orbstack_machine):
    machine = orbstack_machine()
    machine.apply("changes_again.py", check_idempotent=True)


def test_group(orbstack_machines):
    group = orbstack_machines({"web": {}})
    group.apply("failing.py")
'''


def failure_of(out: str, test: str) -> str:
    match = re.search(rf"_{{3,}} {test} _{{3,}}\n(.*?)(?=\n_{{3,}} \w+ _{{3,}}\n|\n={{3,}} )", out, re.S)
    assert match, out
    return match.group(1)


def test_a_failing_apply_in_a_test_body_fails_at_the_tests_line(inner):
    inner.path.joinpath("failing.py").write_text(FAILING)
    inner.path.joinpath("changes_again.py").write_text(CHANGES_AGAIN)
    inner.makepyfile(test_body=TESTS)
    lines = TESTS.lstrip("\n").splitlines()
    result = run(inner, "--tb=long")
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    expected = {
        "test_failing_operation": ('machine.apply("failing.py")', "DeployError",
                                   "operation 'Fail here': broken-on-purpose"),
        "test_missing_deploy_file": ('machine.apply("no-such-deploy.py")', "InvalidInput",
                                     "deploy file not found: no-such-deploy.py"),
        "test_not_idempotent": ('machine.apply("changes_again.py", check_idempotent=True)', "IdempotenceError",
                                "Stamp"),
        "test_group": ('group.apply("failing.py")', "DeployError", "operation 'Fail here': broken-on-purpose"),
    }
    for test, (call, error, message) in expected.items():
        report = failure_of(out, test)
        line = lines.index(f"    {call}") + 1
        assert f">       {call}\n" in report, report  # the test's own line is the failing one
        assert f"\ntest_body.py:{line}: {error}" in report, report  # ... and the last frame shown
        assert message in report, report
        assert "pytest_orbstack/" not in report, report  # no frame from inside the package
        assert report.count("test_body.py:") == 1, report  # one frame: the test's
