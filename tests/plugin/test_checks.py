"""A user's checks never pass by accident: ``assert machine.connectivity(...)`` and ``assert
machine.dns(...)`` fail when the target is not reached or the name does not resolve, with the
reason in pytest's message; ``assert machine.status()``, ``assert machine.run(...)`` and
``assert machine.apply(..., check=False)`` cannot be written; ``status()`` counts
the whole machine's memory; testinfra's ``--hosts=orbstack://NAME`` runs as root and a mistyped
name stops the run with one line."""

from __future__ import annotations

import re
import secrets

from innerpytest import run

from pytest_orbstack.backends import get_backend

CHECKS = '''
import pytest

@pytest.fixture(scope="module")
def m(orbstack_module_machine):
    return orbstack_module_machine(memory="256M")

def test_closed_port(m):
    assert m.connectivity(m.domain, method="tcp", port=3306, timeout=2)

def test_unresolved_name(m):
    assert m.dns("nosuch.invalid")

def test_status_has_no_truth_value(m):
    assert m.status()

def test_network_has_no_truth_value(m):
    assert m.network()

def test_run_has_no_truth_value(m):
    assert m.run("systemctl is-active nosuch.service")

def test_apply_result_has_no_truth_value(m):
    assert m.apply("fails.py", check=False)

def test_what_holds(m):
    assert m.connectivity(m.domain)                   # ping: reached
    closed = m.connectivity(m.domain, method="tcp", port=3306, timeout=2)
    assert not closed and closed["reachable"] is False and closed["port"] == 3306
    assert m.dns(m.domain) == [m.ip4] and m.dns("nosuch.invalid") == []
    status = m.status()
    assert status["system"] in ("running", "degraded") and dict(status)["os"].startswith("Debian")
    assert m.network()["ip4"] == m.ip4
    assert m.run("true").succeeded and m.run("exit 3").rc == 3
    assert m.apply("fails.py", check=False).success is False

def test_memory_is_the_whole_machines(m):
    before = m.status()
    assert before["memory_source"] == "cgroup" and before["mem_total_kib"] == 256 * 1024  # its limit
    m.run("head -c 64M /dev/zero > /tmp/ballast")  # tmpfs: charged to the machine, not to its init
    after = m.status()
    assert after["mem_used_kib"] - before["mem_used_kib"] >= 60 * 1024, (before, after)
'''


def test_a_failed_check_fails_the_users_assert_and_says_why(inner):
    inner.makepyfile(test_user=CHECKS)
    inner.path.joinpath("fails.py").write_text(
        'from pyinfra.operations import server\nserver.shell(name="exit 3", commands=["exit 3"])\n')
    result = run(inner, "-ra")
    out = result.stdout.str()
    result.assert_outcomes(failed=6, passed=2)
    assert re.search(r"AssertionError: assert <tcp pto-\S+\.orb\.local:3306 unreachable: exit 1: "
                     r"bash: connect: Connection refused", out), out
    assert "<dns nosuch.invalid: does not resolve (getent ahosts exit 2: name not found)>" in out
    assert ("TypeError: Machine.status() has no truth value (it is always there): compare a field, "
            "e.g. status()['system'] == 'running'") in out
    assert "TypeError: Machine.network() has no truth value" in out
    assert ("TypeError: a command's result has no truth value (it is always there): assert "
            "result.succeeded (exit status 0), result.rc == N or a field of result.stdout") in out
    assert "TypeError: a deploy's result has no truth value (it is always there): assert result.success" in out


def test_testinfra_hosts_run_as_root_and_a_mistyped_name_is_one_line(inner, request):
    inner.makepyfile(test_ti='''
        def test_root(host):
            assert host.user().name == "root"
            assert host.check_output("id -un") == "root"
    ''')
    result = run(inner, "--hosts=orbstack://nosuch")
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    assert result.stderr.str().strip() == "ERROR: orbstack://nosuch: no such machine 'nosuch' on docker", \
        result.stderr.str()
    assert not result.stdout.str().strip(), result.stdout.str()
    engine = get_backend("docker")
    name = f"ptochk-{secrets.token_hex(3)}"
    request.addfinalizer(lambda: engine.delete_if_exists(name))
    engine.create(name, "debian:bookworm")
    assert engine.info(name).machine.default_username != "root"
    run(inner, f"--hosts=orbstack://{name}").assert_outcomes(passed=1)
