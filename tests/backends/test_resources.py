"""Machine resources (cpus, memory, disk, isolated, capabilities) reach each engine: Docker's
own limits, OrbStack's 2.x create flags (through the emulator, which records them as
per-machine config keys), refused where the engine cannot give them or is too old."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

import pytest_orbstack.backends.orbstack.client as orbctl_module
from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.orbstack.backend import OrbStackBackend
from pytest_orbstack.errors import EngineUnavailable, InvalidInput
from pytest_orbstack.model.inputs import check_resources
from pytest_orbstack.model.types import Resources


def host_config(name: str) -> dict:
    out = subprocess.run(["docker", "container", "inspect", name], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]["HostConfig"]


def test_docker_limits_and_capabilities_and_clones_inherit_them(request):
    engine = get_backend("docker")
    name, copy = (f"res-{secrets.token_hex(3)}" for _ in range(2))
    for machine in (name, copy):
        request.addfinalizer(lambda machine=machine: engine.delete_if_exists(machine))
    engine.create(name, "debian:bookworm",
                  resources=check_resources(cpus=1.5, memory="512M", capabilities=["NET_ADMIN"]))
    engine.clone(name, copy)
    for machine in (name, copy):
        config = host_config(machine)
        assert config["NanoCpus"] == 1_500_000_000
        assert config["Memory"] == 512 * 2**20
        assert "CAP_NET_ADMIN" in config["CapAdd"]


def test_docker_refuses_a_disk_size_before_creating_anything():
    engine = get_backend("docker")
    name = f"res-{secrets.token_hex(3)}"
    with pytest.raises(InvalidInput, match="disk= is not supported by the Docker engine"):
        engine.create(name, "debian:bookworm", resources=Resources(disk_mib=4096))
    assert engine.cli.find(name) is None


def test_orbstack_create_flags_become_the_machines_settings(orb, orbctl_path, request):
    engine = OrbStackBackend()
    name = f"res-{secrets.token_hex(3)}"
    request.addfinalizer(lambda: engine.delete_if_exists(name))
    engine.create(name, "debian:bookworm", resources=check_resources(cpus=2, memory="1G", disk="8G",
                                                                     isolated=True))
    assert orb.config_get(f"machine.{name}.cpu") == "2"
    assert orb.config_get(f"machine.{name}.memory_mib") == "1024"
    assert orb.config_get(f"machine.{name}.disk_bytes") == str(8 * 2**30)
    assert orb.info(name).machine.isolated


def test_orbstack_refuses_a_disk_of_part_of_a_gib_before_creating_anything(orbctl_path):
    engine = OrbStackBackend()
    name = f"res-{secrets.token_hex(3)}"
    with pytest.raises(InvalidInput, match=r'disk= on OrbStack takes whole GiB \("64G"\), not 1500 MiB'):
        engine.create(name, "debian:bookworm", resources=check_resources(disk="1500M"))
    assert name not in [m.name for m in engine.list()]


@pytest.mark.parametrize("version, resources, feature", [
    ("2.1.3", Resources(memory_mib=1024), "resources needs OrbStack 2.2.0"),  # #789
    ("2.0.5", Resources(isolated=True), "isolated needs OrbStack 2.1.0"),
])
def test_an_orbstack_too_old_for_a_flag_says_so_first(orbctl_path, monkeypatch, request, version, resources,
                                                      feature):
    monkeypatch.setenv("ORBCTL_EMULATOR_VERSION", version)
    monkeypatch.setattr(orbctl_module, "_VERSIONS", {})
    name = f"res-{secrets.token_hex(3)}"
    request.addfinalizer(lambda: OrbStackBackend().delete_if_exists(name))  # made only if the check fails
    with pytest.raises(EngineUnavailable, match=feature):
        OrbStackBackend().create(name, "debian:bookworm", resources=resources)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cpus=0), "cpus= must be a positive number, not 0"),
    (dict(memory="lots"), "memory= must be a size such as '512M' or '4G'"),
    (dict(disk="0G"), "disk= must be a size"),
    (dict(isolated="yes"), "isolated= must be True or False"),
    (dict(capabilities="NET_ADMIN"), "capabilities= must be a list of strings"),
    (dict(capabilities=["net admin"]), "'NET ADMIN' is not a Linux capability name"),
    (dict(target=""), "target= must name a cluster member"),
    (dict(target="m1 --force"), "target= must name a cluster member"),
    (dict(target=1), "target= must name a cluster member"),
])
def test_bad_resources_give_one_line(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        check_resources(**kwargs)


def test_sizes_and_capability_names_are_normalised():
    assert check_resources(memory="4G", disk=2048, capabilities=["cap_net_admin"]) == Resources(
        memory_mib=4096, disk_mib=2048, capabilities=("NET_ADMIN",))
