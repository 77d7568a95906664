"""The @orbstack connector, driven through pyinfra's API against a machine on each engine
(OrbStack through the orbctl emulator, Incus and Podman).

Every defect of the earlier attempt is checked: unknown machine, the execution arguments,
in-memory uploads, root-owned destinations, no blind retries, awkward paths.
"""

from __future__ import annotations

import time
from io import StringIO

import pytest
from incusenv import incus_machine
from podmanenv import podman_machine
from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server
from pyinfra_runs import apply_deploy

from pytest_orbstack.backends.orbstack.backend import OrbStackBackend


@pytest.fixture(scope="module", params=["orbstack", "incus", "podman"])
def target(request):
    """(engine, machine): OrbStack through the orbctl emulator, Incus and Podman."""
    if request.param == "incus":
        return incus_machine(request, "conn")
    if request.param == "podman":
        return podman_machine(request, "conn")
    request.getfixturevalue("orbctl_path")
    return OrbStackBackend(), request.getfixturevalue("orb_machine")


def apply(target, fn, machine=None):
    engine, name = target
    return apply_deploy(machine or name, fn, backend=engine)


def run(target, command, **kwargs):
    engine, name = target
    return engine.run(name, command, **kwargs)


def facts(machine, **commands) -> dict[str, str]:
    """Gather Command facts (name -> (command, global args)) on the machine."""
    values: dict[str, str] = {}

    def gather():
        for key, (command, kwargs) in commands.items():
            values[key] = host.get_fact(Command, command=command, **kwargs)

    result = apply(machine, gather)
    assert result.error is None, result.summary()
    return values


def test_unknown_machine_is_a_connect_error(target):
    result = apply(target, lambda: None, machine="no-such-machine")
    assert not result.success
    assert "cannot connect" in result.error and "machine not found: 'no-such-machine'" in result.error


def test_default_user_sudo_sudo_user_and_su_user(target):
    v = facts(target,
              plain=("id -un", {}),
              sudo=("id -un", {"_sudo": True}),
              sudo_user=("id -un", {"_sudo": True, "_sudo_user": "nobody"}),
              su_user=("id -un", {"_sudo": True, "_su_user": "daemon", "_su_shell": "/bin/sh"}))
    assert v["plain"] != "root"
    assert v["sudo"] == "root"
    assert v["sudo_user"] == "nobody"
    assert v["su_user"] == "daemon"


def test_chdir_and_env(target):
    v = facts(target,
              cwd=("pwd", {"_chdir": "/etc"}),
              env=('printf %s "$GREETING"', {"_env": {"GREETING": "it's \"quoted\" $HOME"}}))
    assert v["cwd"] == "/etc"
    assert v["env"] == "it's \"quoted\" $HOME"


def test_stdin_and_success_exit_codes(target):
    result = apply(target, lambda: (
        server.shell(name="stdin", commands=["cat > /tmp/pto-stdin"], _stdin="line one\nline two"),
        server.shell(name="exit 3 is fine", commands=["exit 3"], _success_exit_codes=[0, 3]),
    ))
    assert result.success, result.summary()
    assert run(target, "cat /tmp/pto-stdin").stdout == "line one\nline two\n"


def test_timeout_fails_the_operation_quickly(target):
    started = time.monotonic()
    result = apply(target, lambda: server.shell(name="slow", commands=["sleep 30"], _timeout=2))
    assert time.monotonic() - started < 20
    assert [op.name for op in result.failed] == ["slow"]


def test_failing_command_runs_once_and_reports_stderr(target):
    run(target, "rm -f /tmp/pto-count")
    result = apply(target, lambda: server.shell(
        name="fails", commands=["echo run >> /tmp/pto-count; echo 'boom: disk on fire' >&2; exit 1"]))
    assert not result.success
    assert "boom: disk on fire" in result.failed[0].stderr
    assert run(target, "wc -l < /tmp/pto-count").stdout.strip() == "1"


def test_in_memory_upload_and_template_to_root_owned_paths(target, tmp_path):
    template = tmp_path / "motd.j2"
    template.write_text("welcome to {{ place }}\n")
    result = apply(target, lambda: (
        files.put(name="put", src=StringIO("from memory\n"), dest="/etc/pto-memory.conf",
                  mode="640", _sudo=True),
        files.template(name="template", src=str(template), dest="/etc/pto-motd", place="orbstack",
                       _sudo=True),
    ))
    assert result.success, result.summary()
    out = run(target, "stat -c '%U %a' /etc/pto-memory.conf; sudo cat /etc/pto-memory.conf; "
                               "cat /etc/pto-motd", user="root").stdout
    assert out == "root 640\nfrom memory\nwelcome to orbstack\n"
    again = apply(target, lambda: files.put(name="put", src=StringIO("from memory\n"),
                                                 dest="/etc/pto-memory.conf", mode="640", _sudo=True))
    assert again.success and again.changed == []


def test_upload_without_sudo_into_root_owned_dir_fails_cleanly(target):
    """The failed operation carries the engine's reason (pyinfra keeps no output for a failed
    transfer; its connectors only log it), so the failure's headline names it."""
    result = apply(target, lambda: files.put(name="denied", src=StringIO("x"), dest="/etc/pto-denied"))
    assert [op.name for op in result.failed] == ["denied"]
    assert "File upload error" in result.failed[0].stderr
    assert "Permission denied" in result.failed[0].last_error_line()
    assert "Permission denied" in result.headline()


def test_a_missing_template_names_the_file_not_gevent(target, tmp_path):
    result = apply(target, lambda: files.template(name="tpl", src=str(tmp_path / "gone.j2"), dest="/tmp/x"))
    assert result.error is not None and "gone.j2" in result.error
    assert "gevent" not in result.error and "gevent" not in "".join(result.traceback)


@pytest.mark.parametrize("sudo", [False, True], ids=["as-user", "with-sudo"])
def test_awkward_paths_round_trip(target, tmp_path, sudo):
    directory = "/tmp/dir with space/it's \"q\" ünï ✓"
    path = f"{directory}/file $HOME `x` ✓.txt"
    data = "ünïcode ✓ and 'quotes' \"too\"\n"
    fetched = tmp_path / "fetched.txt"
    result = apply(target, lambda: (
        files.directory(name="dir", path=directory, _sudo=sudo),
        files.put(name="put", src=StringIO(data), dest=path, _sudo=sudo),
        files.get(name="get", src=path, dest=str(fetched), _sudo=sudo),
    ))
    assert result.success, result.summary()
    assert fetched.read_text(encoding="utf-8") == data
