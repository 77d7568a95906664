"""IncusBackend against the real Incus daemon (no mocks; ``bash scripts/dev.sh incus`` sets it up).

The module shares one machine (default user, labels, CPU and memory limits); the clone test makes
and deletes more. Every name starts with ``ptinc-``; the finalizer deletes them and checks that no
instance, snapshot or storage volume of theirs is left.
"""

from __future__ import annotations

import json

import pytest
from incusenv import incus, made_names, why_no_incus
from testenv import delete_racing

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.backends.incus.cli import POOL
from pytest_orbstack.backends.incus.commands import image_alias
from pytest_orbstack.errors import (
    EngineUnavailable,
    InvalidInput,
    InvalidName,
    MachineError,
    MachineExists,
    MachineNotFound,
    UnknownImage,
)
from pytest_orbstack.model.inputs import default_login
from pytest_orbstack.model.types import Resources

REASON = why_no_incus()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
SESSION = "pytest-orbstack.session"


@pytest.fixture(scope="module")
def backend() -> IncusBackend:
    return IncusBackend()


@pytest.fixture(scope="module")
def new_name(backend):
    """Makes unique ``ptinc-`` names; everything made under them is removed at the end."""
    yield from made_names("ptinc")


@pytest.fixture(scope="module")
def machine(backend, new_name):
    name = new_name()
    backend.create(name, "debian:12", labels={SESSION: "s-incus", "ptinc-test": "yes"},
                   resources=Resources(cpus=1.5, memory_mib=512))
    return name


def out(backend, name, command, **kwargs) -> str:
    proc = backend.run(name, command, timeout=60, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def config(name: str) -> dict[str, str]:
    return json.loads(incus("query", f"/1.0/instances/{name}").stdout)["config"]


def test_the_registry_names_incus():
    assert isinstance(get_backend("incus"), IncusBackend)


def test_a_new_machine_is_an_lxc_system_container(backend, machine):
    info = backend.info(machine)
    m = info.machine
    assert (m.name, m.state, m.default_username) == (machine, "running", default_login(None))
    assert (m.image.distro, m.image.version, m.image.arch) == ("debian", "bookworm", "amd64")
    assert info.ip4 and info.ip4.startswith("10.")
    assert out(backend, machine, "systemd-detect-virt -c") == "lxc"
    assert out(backend, machine, "hostname; cat /etc/hostname") == f"{machine}\n{machine}"
    assert out(backend, machine, "cat /proc/1/comm", user="root") == "systemd"
    assert backend.wait_ready(machine) in ("running", "degraded")


def test_labels_and_ownership_are_user_keys(backend, machine):
    keys = config(machine)
    assert keys["user.pytest-orbstack"] == "1" and keys["user.pytest-orbstack.image"] == "debian:12"
    assert keys["user.pytest-orbstack.session"] == "s-incus" and keys["user.ptinc-test"] == "yes"
    labels = backend.labels(machine)
    assert labels[SESSION] == "s-incus" and labels["pytest-orbstack.user"] == default_login(None)
    machines = backend.list()
    assert [m.name for m in machines] == sorted(m.name for m in machines)
    assert backend.info(machine).machine in machines


def test_resources_are_incus_limits(backend, machine):
    keys = config(machine)
    assert (keys["limits.cpu"], keys["limits.cpu.allowance"], keys["limits.memory"]) == (
        "2", "150ms/100ms", "512MiB")
    assert backend.resources(machine) == Resources(cpus=1.5, memory_mib=512)
    limit = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    assert out(backend, machine, limit) == str(512 * 1024 * 1024)  # cgroup v2 or v1


def test_exec_as_default_user_root_and_another(backend, machine):
    user = backend.default_user(machine)
    assert out(backend, machine, "id -un; echo $HOME $USER") == f"{user}\n/home/{user} {user}"
    assert out(backend, machine, "id -u", user="root") == "0"
    assert out(backend, machine, "sudo -n id -u") == "0"
    assert out(backend, machine, "pwd", workdir="/tmp") == "/tmp"
    assert out(backend, machine, "cat", input="from stdin") == "from stdin"
    proc = backend.run(machine, "echo oops >&2; exit 7")
    assert (proc.returncode, proc.stderr) == (7, "oops\n")
    assert backend.run(machine, "true", workdir="/nonexistent").returncode == 126
    out(backend, machine, "id -u nobody2 >/dev/null 2>&1 || useradd -m nobody2", user="root")
    assert out(backend, machine, "id -un; echo $HOME", user="nobody2") == "nobody2\n/home/nobody2"
    assert backend.exec_argv(machine, "true", user="root") == [
        "incus", "exec", "-T", machine, "--", "sh", "-c", "true"]


def test_put_get_round_trip_and_permissions(backend, machine):
    data = bytes(range(256)) * 512 + "ünïcødé\n".encode()
    path = "/tmp/dir with spaces/fïlé ü.bin"
    out(backend, machine, "mkdir -p '/tmp/dir with spaces'")
    backend.put(machine, data, path)
    assert backend.get(machine, path) == data
    assert out(backend, machine, f"stat -c %U '{path}'") == backend.default_user(machine)
    with pytest.raises(MachineError, match="Permission denied"):
        backend.put(machine, b"x", "/root/nope")
    backend.put(machine, b"secret\x00", "/root/secret", user="root")
    assert backend.get(machine, "/root/secret", user="root") == b"secret\x00"


def test_clone_stop_start_rename_delete(backend, machine, new_name):
    out(backend, machine, "echo marker > ~/marker")
    first, second, renamed = new_name(), new_name(), new_name()
    info = backend.clone(machine, first, labels={SESSION: "s-clone"}, frozen_source=True)
    assert info.machine.state == "running" and info.ip4 and info.ip4 != backend.info(machine).ip4
    assert out(backend, first, "hostname; cat ~/marker") == f"{first}\nmarker"
    backend.clone(machine, second, frozen_source=True)  # the same snapshot, no label given
    snapshots = json.loads(incus("query", f"/1.0/instances/{machine}?recursion=1").stdout)["snapshots"]
    assert [s["name"] for s in snapshots] == ["pytest-orbstack-frozen"]
    assert backend.labels(first)[SESSION] == "s-clone" and SESSION not in backend.labels(second)
    assert backend.resources(first) == Resources(cpus=1.5, memory_mib=512)
    assert backend.info(machine).machine.state == "running"  # the source keeps running
    # a clone keeps its source's machine-id, as an OrbStack clone does (docs/orbstack.md)
    assert out(backend, first, "cat /etc/machine-id") == out(backend, machine, "cat /etc/machine-id")

    backend.stop(first)
    assert (backend.info(first).machine.state, backend.info(first).ip4) == ("stopped", None)
    with pytest.raises(MachineError, match=f"^machine {first} is not running: it was stopped"):
        backend.run(first, "true")
    backend.rename(first, renamed)
    backend.start(renamed)
    assert out(backend, renamed, "hostname; systemctl is-system-running") == f"{renamed}\nrunning"
    with pytest.raises(MachineNotFound):
        backend.info(first)
    for name in (renamed, second):
        backend.delete(name)
        with pytest.raises(MachineNotFound, match=f"^machine not found: '{name}'$"):
            backend.delete(name)


def test_a_machine_another_process_deletes_is_gone_when_delete_ends(backend, machine, new_name):
    """A prune and a watcher may delete the same machine: incusd makes the second ``incus
    delete`` wait for the first and refuses it ("A matching non-reusable operation has now
    succeeded"). Delete then says MachineNotFound (it did not delete it); when it is first, it
    deletes it. Either way the machine is gone when delete ends."""
    outcomes = []
    for head_start in (0.05, 0.1, 0.2, 0.4, 0.8):  # (an incus client starts in about 0.05 s)
        name = new_name()
        backend.clone(machine, name)
        outcomes.append(delete_racing(backend, name, ["incus", "delete", "--force", name], head_start))
        assert incus("query", f"/1.0/instances/{name}").returncode != 0, outcomes
    assert "deleted by the other" in outcomes  # (the race this test is for did happen)


def test_machines_find_each_other_as_name_orb_local(backend, machine, new_name):
    other = new_name()
    info = backend.clone(machine, other)
    try:
        assert info.domain == f"{other}.orb.local"
        line = out(backend, machine, f"getent hosts {info.domain}")
        assert line.split() == [info.ip4, info.domain]
    finally:
        backend.delete(other)


def test_missing_machine_errors(backend, new_name):
    name = new_name()
    for call in (backend.info, backend.start, backend.stop, backend.delete, backend.logs):
        with pytest.raises(MachineNotFound, match=f"^machine not found: '{name}'$"):
            call(name)
    with pytest.raises(MachineNotFound):
        backend.clone(name, new_name())
    with pytest.raises(MachineNotFound, match=f"^machine not found: '{name}'$"):
        backend.run(name, "true", user="root")
    assert backend.delete_if_exists(name) is False


def test_bad_input_is_one_line_and_leaves_nothing(backend, machine, new_name, tmp_path):
    name = new_name()
    with pytest.raises(MachineExists, match=f"^machine already exists: '{machine}'$"):
        backend.create(machine, "debian:12")
    with pytest.raises(InvalidName, match="invalid machine name 'bad_name'"):
        backend.create("bad_name", "debian:12")
    with pytest.raises(UnknownImage, match="unknown image 'windows:11'"):
        backend.create(name, "windows:11")
    with pytest.raises(UnknownImage) as caught:
        backend.create(name, "ubuntu:24.04")
    assert str(caught.value).startswith("image 'ubuntu:24.04' is not available to Incus: no image "
                                        "pytest-orbstack/ubuntu/noble here, images:ubuntu/noble failed (")
    assert str(caught.value).endswith("cannot be built here: only Debian is built without an image server")
    assert "\n" not in str(caught.value)
    with pytest.raises(InvalidInput, match=r"cloud-init user-data file"):
        backend.create(name, "debian:12", cloud_init=tmp_path / "missing.yaml")
    assert incus("query", f"/1.0/instances/{name}").returncode != 0


def test_disk_is_the_root_volume_size_where_the_pool_limits_sizes(backend, new_name):
    """btrfs (the set-up's pool wherever the host has loop devices): the machine's root volume
    gets the size and a write beyond it fails; dir (no size limits): one line before any machine."""
    name = new_name()
    disk = Resources(disk_mib=2048)
    if json.loads(incus("query", f"/1.0/storage-pools/{POOL}").stdout)["driver"] == "dir":
        with pytest.raises(InvalidInput, match=r"^disk= needs an Incus storage pool that limits sizes"):
            backend.create(name, "debian:12", resources=disk)
        assert incus("query", f"/1.0/instances/{name}").returncode != 0
        return
    backend.create(name, "debian:12", resources=disk)
    try:
        root = json.loads(incus("query", f"/1.0/instances/{name}").stdout)["expanded_devices"]["root"]
        assert root["size"] == "2048MiB"
        full = incus("exec", name, "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=2300")
        assert full.returncode != 0 and "Disk quota exceeded" in full.stderr, full.stderr  # (btrfs qgroup)
    finally:
        backend.delete(name)


def test_foreign_instance_is_not_a_machine(backend, new_name):
    name = new_name()
    assert incus("init", image_alias("debian:bookworm"), name).returncode == 0
    with pytest.raises(MachineNotFound):
        backend.delete(name)
    assert name not in [m.name for m in backend.list()]
    with pytest.raises(MachineExists):
        backend.create(name, "debian:12")
    assert incus("query", f"/1.0/instances/{name}").returncode == 0  # left alone


def test_engine_unavailable_errors():
    with pytest.raises(EngineUnavailable, match="not found on PATH: install Incus"):
        IncusBackend(incus="/nonexistent/incus").list()
