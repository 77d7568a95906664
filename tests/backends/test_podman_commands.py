"""The podman command builders and the PodmanCLI's Podman-specific words, without Podman: the
shapes a rootful and a rootless caller run (rootless machines cannot boot on this host:
docs/podman.md), and the facts' podman commands."""

from __future__ import annotations

import resource
import subprocess

import pytest

from pytest_orbstack.backends.docker import commands as docker
from pytest_orbstack.backends.podman import cli as podman_cli
from pytest_orbstack.backends.podman import commands as cmd
from pytest_orbstack.backends.podman.cli import PodmanCLI
from pytest_orbstack.errors import EngineUnavailable, MachineExists, MachineNotFound
from pytest_orbstack.facts.engine import OrbStackMachine, OrbStackMachines
from pytest_orbstack.model.types import Resources


def test_shared_builders_are_dockers_with_podman_and_quiet_warnings() -> None:
    for podman, dock in [(cmd.stop("m"), docker.stop("m")), (cmd.delete("m"), docker.delete("m")),
                         (cmd.rename("a", "b"), docker.rename("a", "b")),
                         (cmd.ready("m", 5, "true"), docker.ready("m", 5, "true")),
                         (cmd.exec_("m", "id", user="dev"), docker.exec_("m", "id", user="dev"))]:
        assert podman == ["podman", "--log-level=error", *dock[1:]]


def test_run_uses_podmans_systemd_mode_and_dockers_words_elsewhere() -> None:
    argv = cmd.run("web", "img", {"pytest-orbstack": "1"}, Resources(cpus=1.5, memory_mib=512,
                                                                     capabilities=("NET_ADMIN",)),
                   gateway="10.89.0.1")
    assert argv[:3] == ["podman", "--log-level=error", "run"] and argv[-1] == "img"
    assert "--systemd=always" in argv and "--privileged" not in argv and "SYS_ADMIN" not in argv
    assert not {"--cgroupns=host", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "seccomp=unconfined"} & set(argv)
    for pair in (["--network", "pytest-orbstack"], ["--network-alias", "web.orb.local"],
                 ["--add-host", "host.orb.internal:10.89.0.1"], ["--cpus", "1.5"], ["--memory", "512m"],
                 ["--cap-add", "NET_ADMIN"], ["--cap-add", "NET_RAW"], ["--label", "pytest-orbstack=1"],
                 ["--sig-proxy=false", "--name"]):
        assert any(argv[i:i + 2] == pair for i in range(len(argv))), pair
    assert "--add-host" not in cmd.run("web", "img", {})  # no gateway known: no host.orb.internal


def test_list_reads_labels_with_index_and_the_state_word() -> None:
    argv = cmd.list_machines()
    assert argv[-1].split("\t") == ["{{.ID}}", "{{.Names}}", "{{.ListContainer.State}}",
                                    '{{index .Labels "pytest-orbstack.user"}}',
                                    '{{index .Labels "pytest-orbstack.image"}}']


@pytest.mark.parametrize("may_raise", [True, False], ids=["rootful-with-CAP_SYS_RESOURCE", "rootless-or-capless"])
def test_every_run_keeps_the_callers_limits_unless_it_may_raise_them(monkeypatch, may_raise) -> None:
    monkeypatch.setattr(podman_cli, "may_raise_limits", lambda: may_raise)
    cli = PodmanCLI()
    run = cli.argv(cmd.run("m", "img", {}))
    sleeper = cli.argv(docker.sleeper("tmp", "img"))  # the container an image is prepared in
    assert run[:2] == sleeper[:2] == ["podman", "--log-level=error"] and run.count("--log-level=error") == 1
    if may_raise:
        assert "--ulimit" not in run + sleeper
    else:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for argv in (run, sleeper):
            assert argv[2:5] == ["run", "--ulimit", f"nofile={nofile}:{nofile}"] and argv[5] == "--ulimit"
            assert int(argv[6].split(":")[1]) <= 32768
    assert "--ulimit" not in cli.argv(docker.exec_("m", "true", user="root"))


def test_podmans_error_words(tmp_path) -> None:
    cli = PodmanCLI(str(tmp_path / "podman"))

    def failed(stderr: str):
        return cli.error(subprocess.CompletedProcess(["podman", "start", "m"], 125, "", stderr))
    assert isinstance(failed("Error: no container with name or ID \"m\" found: no such container"), MachineNotFound)
    assert isinstance(failed('Error: creating container storage: the container name "m" is already in use by x'),
                      MachineExists)
    assert "podman system prune" in str(failed("write: no space left on device"))
    with pytest.raises(EngineUnavailable, match=r"podman not found on PATH: install Podman \(apt-get install podman"):
        cli.call(cmd.start("m"))


def test_facts_use_the_podman_commands_and_docker_parsing() -> None:
    machines = OrbStackMachines()
    assert machines.command(engine="podman").startswith("podman --log-level=error ps -a")
    assert machines.process(["c1\tweb\trunning\tdev\tdebian:bookworm"]) == [
        {"id": "c1", "name": "web", "state": "running", "distro": "debian", "version": "bookworm", "arch": "",
         "default_username": "dev"}]
    machine = OrbStackMachine()
    assert "podman --log-level=error container inspect --format" in machine.command("web", engine="podman")
    assert machine.process(["[]", "null"]) is None  # podman's answer for a missing container
