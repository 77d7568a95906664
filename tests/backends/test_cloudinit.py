"""Real cloud-init (Debian's own, from a NoCloud seed) on the Docker and Podman engines and in
the orbctl emulator, checked with testinfra. No mocks: each engine makes one machine with the
user-data below for the module (the Docker one also a clone and two more machines); every machine made
here is deleted, also when a test fails.
"""

from __future__ import annotations

import subprocess

import pytest
import testinfra
from podmanenv import why_no_podman
from testenv import unique

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.facts import MachineStatus
from pytest_orbstack.machines.diagnostics import SCRIPT as DIAGNOSTICS

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"
USER_DATA = f"""#cloud-config
users:
  - name: ops
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys: ["{KEY}"]
write_files:
  - path: /etc/demo/hello.txt
    content: "hi 'there' $HOME\\n"
    permissions: '0640'
  - path: /home/ops/notes.txt
    content: deferred
    owner: ops:ops
    defer: true
packages: [jq]
bootcmd:
  - echo boot >> /var/log/bootcmd.log
runcmd:
  - echo "runcmd as $(id -un)" > /var/log/runcmd.log
  - [sh, -c, "echo argv-form >> /var/log/runcmd.log"]
"""


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not docker_answers(), reason="needs a running Docker engine")


@pytest.fixture(scope="module", params=["docker", "orbstack", "podman"])
def engine(request):
    """The Docker engine, the OrbStack engine driving the orbctl emulator, or the Podman engine
    (skipped in one line where Podman is unusable)."""
    if request.param == "orbstack":
        request.getfixturevalue("orbctl_path")
    if request.param == "podman" and why_no_podman():
        pytest.skip(why_no_podman() or "")
    return get_backend(request.param)


@pytest.fixture(scope="module")
def made(engine):
    """Names of the machines a module made on ``engine``; all deleted at the end."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            engine.delete(name)
        except Exception as exc:  # one left behind must not hide the others
            print(f"could not delete {name}: {exc}")


@pytest.fixture(scope="module")
def machine(engine, made, tmp_path_factory):
    path = tmp_path_factory.mktemp("ci") / "user-data.yaml"
    path.write_text(USER_DATA)
    name = unique("ci")
    made.append(name)
    engine.create(name, "debian:bookworm", user="alice", cloud_init=path)
    return name


def host(engine, name):
    return testinfra.get_host(f"orbstack://root@{name}", engine=engine)


def test_users_write_files_packages_runcmd_bootcmd(engine, machine):
    h = host(engine, machine)
    ops = h.user("ops")
    assert ops.exists and ops.shell == "/bin/bash" and ops.home == "/home/ops"
    keys = h.file("/home/ops/.ssh/authorized_keys")
    assert keys.content_string.strip() == KEY and keys.user == "ops" and keys.mode == 0o600
    assert h.run("sudo -u ops sudo -n id -un").stdout.strip() == "root"  # NOPASSWD sudo
    hello = h.file("/etc/demo/hello.txt")
    assert (hello.content_string, hello.mode, hello.user) == ("hi 'there' $HOME\n", 0o640, "root")
    assert h.file("/home/ops/notes.txt").user == "ops"
    assert h.package("jq").is_installed
    assert h.file("/var/log/runcmd.log").content_string == "runcmd as root\nargv-form\n"
    assert h.file("/var/log/bootcmd.log").content_string == "boot\n"
    assert h.run("cloud-init status").stdout.strip() == "status: done"
    assert h.run("hostname").stdout.strip() == machine


def test_the_default_user_and_cloud_init_users(engine, machine):
    """OrbStack (and so the emulator) runs cloud-init first: the first user it makes gets uid
    1000 (#1446); the Docker and Podman engines add the default user first."""
    h = host(engine, machine)
    first = h.user("ops" if engine.name == "orbstack" else "alice")
    assert first.uid == 1000
    assert h.run("sudo -u alice sudo -n true").rc == 0
    assert engine.info(machine).machine.default_username == "alice"


def test_a_failing_user_data_is_logged_and_shown_in_diagnostics(engine, made, tmp_path):
    script = tmp_path / "user-data"
    script.write_text("#!/bin/sh\necho script ran as $(id -un)\nexit 3\n")
    name = unique("cif")
    made.append(name)
    engine.create(name, "debian:bookworm", cloud_init=script)  # does not raise
    h = host(engine, name)
    status = h.run("cloud-init status")
    assert (status.rc, status.stdout) == (1, "status: error\n")
    assert "script ran as root" in h.file("/var/log/cloud-init-output.log").content_string
    diagnostics = h.run(DIAGNOSTICS).stdout
    assert "--- cloud-init status\nstatus: error" in diagnostics and "scripts_user" in diagnostics
    lines = h.run(MachineStatus().command()).stdout.splitlines()
    assert MachineStatus().process(lines)["cloud_init"] == "error"


def test_clone_keeps_the_instance_and_runs_only_per_boot_modules(tmp_path):
    """The seed is NoCloud's, instance-id = the machine's name. A clone has the source's seed
    and instance-id: cloud-init sees the same instance, so only per-boot modules (bootcmd) run
    again; its hostname stays its own. A machine without user-data never runs cloud-init."""
    engine = DockerBackend()
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    source, clone, plain = unique("cis"), unique("cic"), unique("cip")
    try:
        engine.create(source, "debian:bookworm", cloud_init=user_data)
        s = host(engine, source)
        assert "DataSourceNoCloud" in s.run("cloud-init status --long").stdout
        assert s.file(f"/var/lib/cloud/instances/{source}").is_directory
        engine.clone(source, clone)
        h = host(engine, clone)
        assert h.file("/var/log/bootcmd.log").content_string == "boot\nboot\n"
        assert h.file("/var/log/runcmd.log").content_string == "runcmd as root\nargv-form\n"
        assert h.run("cloud-init status").stdout.strip() == "status: done"
        assert h.run("hostname").stdout.strip() == clone
        engine.create(plain, "debian:bookworm")  # no user-data: cloud-init stays disabled
        p = host(engine, plain)
        assert p.file("/etc/cloud/cloud-init.disabled").exists
        assert not p.file("/run/cloud-init/enabled").exists
        assert not p.service("cloud-init-local").is_running
        assert "cloud-init status" not in p.run(DIAGNOSTICS).stdout
    finally:
        for name in (plain, clone, source):
            try:
                engine.delete(name)
            except Exception as exc:
                print(f"could not delete {name}: {exc}")

