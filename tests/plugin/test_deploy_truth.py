"""What the idempotence and dry-run checks say about deploys that misbehave, on Docker and on
OrbStack (through the orbctl emulator), in inner sessions as users run them:

* ``check_idempotent=True``: a deploy that writes a new file on every run fails with the file's
  unified diff, its mode and owner change; one that restarts a service on every run fails with
  the service's new process; one that installs a new version of a package on every run fails
  with both versions; a steady deploy passes;
* ``check_dry_run=True``: a deploy whose shell step makes work for a later operation (pyinfra's
  plan cannot know it) fails naming that operation; one whose plan still proposes a change
  after the apply fails naming it; a clean deploy passes (its conditional operation, which a
  plan cannot evaluate, included), through ``apply`` and the marker (on a golden machine)."""

from __future__ import annotations

import subprocess

import pytest
from innerpytest import run, sessions_of

DEPLOYS = '''
import itertools
import io
import time

from pyinfra.operations import apt, files, server, systemd

RUNS = itertools.count()
VERSIONS = itertools.count()
UNIT = "[Service]\\nExecStart=/bin/sleep infinity\\n"


def stamp():
    """New content, mode and owner on every run."""
    n = next(RUNS)
    files.put(name="Write the stamp", src=io.StringIO(f"kept line\\ndeployed at {time.time_ns()}\\n"),
              dest="/etc/pto-stamp", mode="600" if n % 2 else "640", user="root" if n % 2 else "nobody",
              _sudo=True)


def restarts():
    """A service restarted on every run."""
    files.put(name="Install the unit", src=io.StringIO(UNIT), dest="/etc/systemd/system/pto-sleeper.service",
              _sudo=True)
    systemd.service(name="Run the sleeper", service="pto-sleeper", running=True, restarted=True,
                    daemon_reload=True, _sudo=True)


def versions():
    """A package built anew with a new version on every run, then installed."""
    control = (f"Package: pto-demo\\nVersion: 1.{next(VERSIONS)}\\nArchitecture: all\\n"
               "Maintainer: t <t@example.org>\\nDescription: d\\n")
    server.shell(name="Build the package", commands=[
        "mkdir -p /tmp/pto-demo/DEBIAN", f"printf '{control}' > /tmp/pto-demo/DEBIAN/control",
        "dpkg-deb --build /tmp/pto-demo /tmp/pto-demo.deb"])
    apt.deb(name="Install the package", src="/tmp/pto-demo.deb", _sudo=True)


def steady():
    files.put(name="Steady file", src=io.StringIO("steady\\nsecond\\n"), dest="/etc/pto-steady", _sudo=True)
    files.line(name="Steady line", path="/etc/pto-steady", line="second", _sudo=True)
    files.directory(name="Steady folder", path="/etc/pto-steady.d", mode="750", _sudo=True)
    files.line(name="Only when asked", path="/etc/pto-asked", line="x", _if=lambda: False, _sudo=True)


def hides_a_change():
    """The shell step makes a file the next operation then removes: the plan cannot see it."""
    server.shell(name="Make a flag", commands=["touch /etc/pto-flag"], _sudo=True)
    files.file(name="Remove the flag", path="/etc/pto-flag", present=False, _sudo=True)
'''


def _engine(engine, orbctl_env, monkeypatch) -> None:
    if engine == "orbstack":
        for key in ("PATH", "ORBCTL_EMULATOR_HOME"):
            monkeypatch.setenv(key, orbctl_env[key])


def _no_machine_left(engine, orbctl_env, state_dir) -> None:
    if engine == "orbstack":  # (the inner fixture checks Docker's machines)
        left = subprocess.run(["orbctl", "list", "-q"], capture_output=True, text=True, check=True,
                              env={**orbctl_env}).stdout.split()
        prefixes = tuple(f"pto-{session}-" for session in sessions_of(state_dir))
        assert prefixes and [name for name in left if name.startswith(prefixes)] == []


def _failure(result, test: str) -> str:
    """The failure report of inner test ``test``."""
    text = result.stdout.str()
    start = text.index(f"_ {test} _")
    end = text.find("\n___", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("engine", ["docker", "orbstack"])
def test_idempotence_failures_show_what_changed(inner, engine, orbctl_env, monkeypatch, tmp_path):
    _engine(engine, orbctl_env, monkeypatch)
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_checks='''
        from conftest import restarts, stamp, steady, versions

        def test_stamp(orbstack_machine):
            orbstack_machine(clone=False).apply(stamp, check_idempotent=True)

        def test_restarts(orbstack_machine):
            orbstack_machine(clone=False).apply(restarts, check_idempotent=True)

        def test_versions(orbstack_machine):
            orbstack_machine(clone=False).apply(versions, check_idempotent=True)

        def test_steady(orbstack_machine):
            machine = orbstack_machine(clone=False)
            machine.apply(steady, check_idempotent=True)
            assert machine.run("cat /etc/pto-steady").stdout == "steady\\nsecond\\n"
    ''')
    result = run(inner, f"--orbstack-backend={engine}")
    result.assert_outcomes(passed=1, failed=3)
    stamp = _failure(result, "test_stamp")
    assert "1 operation(s) changed on the second run" in stamp
    assert "Write the stamp" in stamp
    assert "--- /etc/pto-stamp (before the second run)" in stamp
    assert "+++ /etc/pto-stamp (after it)" in stamp
    assert "-deployed at " in stamp and "+deployed at " in stamp
    assert "-kept line" not in stamp  # only what changed, with its context
    assert "/etc/pto-stamp: mode 640 -> 600" in stamp
    assert "/etc/pto-stamp: owner nobody:root -> root:root" in stamp
    restart = _failure(result, "test_restarts")
    assert "Run the sleeper" in restart
    line = next(line for line in restart.splitlines() if "service pto-sleeper:" in line)
    old, new = line.split("service pto-sleeper: ")[1].split(" -> ")
    assert old.startswith("active/running") and new.startswith("active/running")
    assert old.split("pid ")[1].split(",")[0] != new.split("pid ")[1].split(",")[0], line
    package = _failure(result, "test_versions")
    assert "Install the package" in package and "Build the package" not in package  # shell: exempt
    assert "    package pto-demo: 1.0 -> 1.1" in package
    _no_machine_left(engine, orbctl_env, tmp_path / "state")


@pytest.mark.parametrize("engine", ["docker", "orbstack"])
def test_dry_run_check_names_what_the_plan_hid(inner, engine, orbctl_env, monkeypatch, tmp_path):
    _engine(engine, orbctl_env, monkeypatch)
    inner.makeconftest(DEPLOYS)
    inner.makepyfile(test_plans='''
        import pytest
        from conftest import hides_a_change, stamp, steady

        def test_hidden(orbstack_machine):
            orbstack_machine(clone=False).apply(hides_a_change, check_dry_run=True)

        def test_proposed_again(orbstack_machine):
            orbstack_machine(clone=False).apply(stamp, check_dry_run=True)

        def test_clean(orbstack_machine):
            machine = orbstack_machine(clone=False)
            machine.apply(steady, check_dry_run=True)
            assert machine.run("test -d /etc/pto-steady.d").rc == 0

        @pytest.mark.orbstack(deploy=steady, check_dry_run=True, check_idempotent=True)
        def test_clean_golden(orbstack):
            assert orbstack.run("cat /etc/pto-steady").stdout == "steady\\nsecond\\n"

        @pytest.mark.orbstack(deploy=hides_a_change, check_dry_run=True)
        def test_hidden_golden(orbstack):
            pass
    ''')
    result = run(inner, f"--orbstack-backend={engine}")
    result.assert_outcomes(passed=2, failed=2, errors=1)
    hidden = _failure(result, "test_hidden")
    assert "pyinfra's plan (--dry) on " in hidden and "did not name 1 operation(s) the apply then changed" in hidden
    assert "  Remove the flag: changed, the plan said no change" in hidden
    assert "Make a flag:" not in hidden  # a shell step is always in the plan
    again = _failure(result, "test_proposed_again")
    assert "after the apply on " in again and "still proposes 1 change(s):" in again
    assert "  Write the stamp: the plan says it will change" in again
    golden = _failure(result, "ERROR at setup of test_hidden_golden")
    assert "  Remove the flag: changed, the plan said no change" in golden
    _no_machine_left(engine, orbctl_env, tmp_path / "state")
