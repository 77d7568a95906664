"""Real `pyinfra` CLI runs: the nginx example through @orbstack/NAME, and the machine
operations through @local, each run twice (the second run must change nothing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from incusenv import incus, instances, why_no_incus
from testenv import EXAMPLE_DEPLOY, unique

HERE = Path(__file__).parent


def pyinfra(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyinfra", "-y", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def changed_count(output: str) -> int:
    """Operations that changed something: the Success column of pyinfra's "Grand total" row
    (columns: Hosts, Success, Error, No Change; "-" means 0). Errors must be 0 too."""
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, output
    _hosts, success, error, _no_change = (0 if v == "-" else int(v) for v in match.groups())
    assert error == 0, output
    return success


def test_nginx_deploy_through_the_connector_twice(orbctl_env, orb_machine, orb):
    first = pyinfra(orbctl_env, f"@orbstack/{orb_machine}", EXAMPLE_DEPLOY.name,
                    cwd=EXAMPLE_DEPLOY.parent)
    assert first.returncode == 0, first.stdout + first.stderr
    assert orb.run(orb_machine, "systemctl is-active nginx").stdout.strip() == "active"
    assert "hello from pyinfra" in orb.run(orb_machine, "curl -fsS http://localhost:8080/").stdout
    second = pyinfra(orbctl_env, f"@orbstack/{orb_machine}", EXAMPLE_DEPLOY.name,
                     cwd=EXAMPLE_DEPLOY.parent)
    assert second.returncode == 0, second.stdout + second.stderr
    assert changed_count(second.stdout + second.stderr) == 0, second.stdout + second.stderr


def test_machine_operations_are_idempotent(orbctl_env, orb):
    base, copy, legacy, renamed = unique("ops"), unique("opsc"), unique("opsl"), unique("opsr")
    data = ["--data", f"base={base}", "--data", f"copy={copy}", "--data", f"legacy={legacy}",
            "--data", f"renamed={renamed}", "--data", "memory=4096"]
    orb.create("debian:bookworm", legacy)
    try:
        first = pyinfra(orbctl_env, "@local", str(HERE / "deploys" / "lifecycle.py"), *data)
        assert first.returncode == 0, first.stdout + first.stderr
        machines = {m.name: m for m in orb.list()}
        assert machines[base].running and machines[base].default_username == "deploy"
        assert renamed in machines and legacy not in machines
        assert machines[copy].state == "stopped" and machines[copy].image.distro == "debian"
        assert orb.config_get("memory_mib") == "4096"
        second = pyinfra(orbctl_env, "@local", str(HERE / "deploys" / "lifecycle.py"), *data)
        assert second.returncode == 0, second.stdout + second.stderr
        assert changed_count(second.stdout + second.stderr) == 0, second.stdout + second.stderr
    finally:
        gone = pyinfra(orbctl_env, "@local", str(HERE / "deploys" / "teardown.py"),
                       "--data", f"machines={base},{copy},{legacy},{renamed}")
        assert gone.returncode == 0, gone.stdout + gone.stderr
    names = {m.name for m in orb.list()}
    assert not names & {base, copy, legacy, renamed}


@pytest.mark.parametrize("case, args, expected", [
    ("bad name", ["@orbstack/bad_name", "exec", "--", "true"], "invalid machine name 'bad_name'"),
    ("missing machine", ["@orbstack/absent-vm", "exec", "--", "true"],
     "machine not found: 'absent-vm'"),
])
def test_bad_input_gives_one_clear_line(orbctl_env, case, args, expected):
    proc = pyinfra(orbctl_env, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out, out
    assert "Traceback" not in out, out


def test_missing_orbctl_is_named(orbctl_env):
    env = {**orbctl_env, "PATH": "/usr/bin:/bin"}
    proc = pyinfra(env, "@orbstack/web", "exec", "--data", "orbstack_backend=orbstack", "--", "true")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'orbctl' not found on PATH" in out, out
    assert "Traceback" not in out, out
    for where in ({"PYTEST_ORBSTACK_BACKEND": "orbstack"}, {}):  # the variable; auto falls back to docker
        proc = pyinfra({**env, **where}, "@orbstack/no-such-vm", "exec", "--", "true")
        out = proc.stdout + proc.stderr
        expected = "'orbctl' not found on PATH" if where else "machine 'no-such-vm' on docker: machine not found"
        assert proc.returncode != 0 and expected in out, out


def test_unknown_config_key_is_named(orbctl_env):
    proc = pyinfra(orbctl_env, "@local", "pytest_orbstack.pyinfra.operations.config", "key=no.such.key",
                   "value=1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Unknown configuration key: no.such.key" in out, out
    assert "Traceback" not in out, out


def test_uploads_through_the_cli_on_the_docker_backend(tmp_path):
    """Under the CLI, gevent patches subprocess: uploads (stdin-fed commands) must still work."""
    from pytest_orbstack.backends.docker.backend import DockerBackend
    backend = DockerBackend()
    name = unique("cli")
    backend.create(name, "debian:bookworm")
    try:
        deploy = tmp_path / "deploy.py"
        deploy.write_text("from io import StringIO\nfrom pyinfra.operations import files\n"
                          "files.put(name='put', src=StringIO('through the cli\\n'), "
                          "dest='/etc/pto-cli', _sudo=True)\n")
        proc = pyinfra(None, f"@orbstack/{name}", str(deploy), "--data", "orbstack_backend=docker")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert backend.run(name, "cat /etc/pto-cli", user="root").stdout == "through the cli\n"
    finally:
        backend.delete(name)


def test_machine_operation_round_trip_on_docker(tmp_path):
    """`pyinfra @local` with operations.machine makes a running Docker machine (its docker
    commands shown with -vv); a second run changes nothing; --dry makes nothing; present=False
    deletes it. (pyinfra 3.10's --dry prints no commands for any operation, builtin ones too.)"""
    web = unique("opsd")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    data = ["--data", f"web={web}", "--data", "orbstack_backend=docker"]
    deploy = str(HERE / "deploys" / "machine.py")
    try:
        dry = pyinfra(env, "--dry", "@local", deploy, *data)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert not docker_names() & {web}
        first = pyinfra(env, "-vv", "@local", deploy, *data)
        assert first.returncode == 0, first.stdout + first.stderr
        assert changed_count(first.stdout + first.stderr) == 1
        assert f"docker run -d --sig-proxy=false --name {web} --hostname {web}" in first.stdout + first.stderr
        ready = subprocess.run(["docker", "exec", web, "sh", "-c", "systemctl is-system-running; id -un deploy;"
                                " sudo -n -u deploy sudo -n true && echo sudo-ok"],
                               capture_output=True, text=True)
        assert ready.stdout.split() == ["running", "deploy", "sudo-ok"], ready.stdout + ready.stderr
        second = pyinfra(env, "@local", deploy, *data)
        assert second.returncode == 0 and changed_count(second.stdout + second.stderr) == 0, second.stdout
    finally:
        gone = pyinfra(env, "-vv", "@local", str(HERE / "deploys" / "teardown.py"), "--data",
                       f"machines={web}", "--data", "orbstack_backend=docker")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert f"docker rm -f -v {web}" in gone.stdout + gone.stderr
    assert web not in docker_names()


def docker_names() -> set[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return set(out.stdout.split())


def test_machine_operation_round_trip_on_incus():
    """`pyinfra -y @local` with operations.machine and ``--data orbstack_backend=incus`` makes a
    running Incus instance (systemd up, the default user with sudo); a second run changes nothing
    (pyinfra's "No changes" for it); present=False deletes it."""
    why = why_no_incus()
    if why:
        pytest.skip(why)
    web = unique("opsi")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    data = ["--data", f"web={web}", "--data", "orbstack_backend=incus"]
    deploy = str(HERE / "deploys" / "machine.py")
    try:
        first = pyinfra(env, "-vv", "@local", deploy, *data)
        assert first.returncode == 0, first.stdout + first.stderr
        assert changed_count(first.stdout + first.stderr) == 1
        assert web in instances()
        ready = incus("exec", web, "--", "sh", "-c", "systemctl is-system-running; systemd-detect-virt -c; "
                      "id -un deploy; sudo -n -u deploy sudo -n true && echo sudo-ok")
        assert ready.stdout.split() == ["running", "lxc", "deploy", "sudo-ok"], ready.stdout + ready.stderr
        second = pyinfra(env, "@local", deploy, *data)
        out = second.stdout + second.stderr
        assert second.returncode == 0 and changed_count(out) == 0, out
        assert re.search(r"\[@local\] No changes", out), out
    finally:
        gone = pyinfra(env, "@local", str(HERE / "deploys" / "teardown.py"), "--data",
                       f"machines={web}", "--data", "orbstack_backend=incus")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert changed_count(gone.stdout + gone.stderr) == 1
    assert web not in instances()
    assert incus("info", web).returncode != 0
