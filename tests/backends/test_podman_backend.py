"""PodmanBackend against real rootful Podman (no mocks; ``bash scripts/dev.sh podman`` sets it up).

The module shares one machine (default user, labels, CPU and memory limits); other tests make
and delete more. Every name starts with ``ptpod-``; the finalizer deletes them and checks that
no container or clone image of theirs is left. cloud-init on Podman: tests/backends/test_cloudinit.py;
the connector, testinfra, the debug loop and kill -9 on Podman: the suites of those, parametrized.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest
from podmanenv import podman, why_no_podman

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.podman import commands as cmd
from pytest_orbstack.backends.podman.backend import PodmanBackend
from pytest_orbstack.errors import InvalidInput, InvalidName, MachineError, MachineExists, MachineNotFound
from pytest_orbstack.model.types import Resources

REASON = why_no_podman()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
SESSION = "pytest-orbstack.session"


@pytest.fixture(scope="module")
def backend() -> PodmanBackend:
    engine = get_backend("podman")
    assert isinstance(engine, PodmanBackend)
    return engine


@pytest.fixture(scope="module")
def new_name():
    """Makes unique ``ptpod-`` names; everything made under them is removed at the end."""
    made: list[str] = []

    def make() -> str:
        made.append(f"ptpod-{secrets.token_hex(4)}")
        return made[-1]

    yield make
    for name in made:
        podman("rm", "-f", "-v", name)
    left = set(podman("ps", "-a", "--format", "{{.Names}}").stdout.split())
    assert not left & set(made), f"containers left behind: {left & set(made)}"
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert not [i for i in images if any(n in i for n in made)], f"images left behind: {images}"


@pytest.fixture(scope="module")
def machine(backend, new_name):
    name = new_name()
    backend.create(name, "debian:12", labels={SESSION: "s-podman", "ptpod-test": "yes"},
                   resources=Resources(cpus=1.5, memory_mib=512, capabilities=("NET_ADMIN",)))
    return name


def out(backend, name, command, **kwargs) -> str:
    proc = backend.run(name, command, timeout=60, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def inspect(name: str) -> dict:
    return json.loads(podman("container", "inspect", name).stdout)[0]


def test_a_new_machine_boots_systemd_in_podmans_systemd_mode(backend, machine):
    info = backend.info(machine)
    assert info.machine.state == "running" and info.machine.image.version == "bookworm"
    assert info.ip4 and info.machine.default_username
    assert out(backend, machine, "systemctl is-system-running --wait || true") in ("running", "degraded")
    assert out(backend, machine, "cat /proc/1/comm") == "systemd"
    config = inspect(machine)
    assert "--systemd=always" in config["Config"]["CreateCommand"]
    assert config["HostConfig"]["Privileged"] is False


def test_labels_and_list(backend, machine):
    labels = inspect(machine)["Config"]["Labels"]
    assert labels[SESSION] == "s-podman" and labels["ptpod-test"] == "yes" and labels["pytest-orbstack"] == "1"
    listed = {m.name: m for m in backend.list()}
    assert listed[machine].state == "running" and listed[machine].default_username == labels["pytest-orbstack.user"]
    assert [m.name for m in backend.list()] == sorted(listed)


def test_resources_are_podman_limits(backend, machine):
    host = inspect(machine)["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000 and host["Memory"] == 512 * 1024 * 1024
    with pytest.raises(InvalidInput, match="disk="):
        backend.create("ptpod-nodisk", "debian:12", resources=Resources(disk_mib=1024))


def test_root_has_dockers_default_capabilities_and_the_asked_ones(backend, machine):
    """NET_ADMIN asked for; NET_RAW, MKNOD, AUDIT_WRITE as Docker grants them; SYS_ADMIN not."""
    caps = int(out(backend, machine, "grep CapEff /proc/self/status", user="root").split()[1], 16)
    bits = {"MKNOD": 27, "AUDIT_WRITE": 29, "NET_RAW": 13, "NET_ADMIN": 12, "SYS_ADMIN": 21}
    assert {name for name, bit in bits.items() if caps >> bit & 1} == set(bits) - {"SYS_ADMIN"}
    assert out(backend, machine, "ip addr add 192.0.2.7/32 dev lo && ip -o addr show lo | grep -c 192.0.2.7",
               user="root") == "1"


def test_exec_as_default_user_root_and_another(backend, machine):
    user = backend.default_user(machine)
    assert out(backend, machine, "id -un") == user
    assert out(backend, machine, "id -un", user="root") == "root"
    assert out(backend, machine, "pwd", workdir="/etc") == "/etc"
    assert out(backend, machine, "sudo -n id -u") == "0"
    proc = backend.run(machine, "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")  # no podman warnings


def test_persistent_shell_and_uploads(backend, machine):
    for i in range(3):
        assert backend.execute(machine, f"echo {i}").stdout == f"{i}\n".encode()
    backend.put(machine, b"\x00bytes\xff", "/tmp/ptpod-file")
    assert backend.get(machine, "/tmp/ptpod-file") == b"\x00bytes\xff"


def test_clone_stop_start_rename_delete(backend, machine, new_name):
    out(backend, machine, "echo golden | sudo tee /etc/ptpod-mark")
    clone, renamed = new_name(), new_name()
    info = backend.clone(machine, clone, labels={SESSION: "s-podman"})
    assert info.machine.state == "running" and info.machine.default_username == backend.default_user(machine)
    assert out(backend, clone, "cat /etc/ptpod-mark; hostname") == f"golden\n{clone}"
    backend.stop(clone)
    assert backend.info(clone).machine.state == "stopped"
    with pytest.raises(MachineError, match=f"^machine {clone} is not running .*podman engine restarted$"):
        backend.run(clone, "true")
    backend.start(clone)
    assert out(backend, clone, "systemctl is-system-running --wait || true") in ("running", "degraded")
    subprocess.run(cmd.rename(clone, renamed), check=True, capture_output=True)  # pyinfra's rename
    assert backend.info(renamed).machine.name == renamed and not backend.exists(clone)
    backend.delete(renamed)
    assert not backend.exists(renamed)
    assert podman("image", "exists", f"pytest-orbstack-clone:{clone}").returncode != 0


def test_machines_find_each_other_as_name_orb_local(backend, machine, new_name):
    other = new_name()
    backend.create(other, "debian:bookworm")
    try:
        assert out(backend, other, f"getent hosts {machine}.orb.local").split()[0] == backend.info(machine).ip4
        assert out(backend, machine, f"getent hosts {other}.orb.local").split()[0] == backend.info(other).ip4
        assert out(backend, other, "getent hosts host.orb.internal").split()[0]
    finally:
        backend.delete(other)


def test_errors_are_typed_and_one_line(backend, machine, new_name):
    with pytest.raises(MachineExists):
        backend.create(machine, "debian:bookworm")
    with pytest.raises(InvalidName):
        backend.create("bad name", "debian:bookworm")
    missing = new_name()
    for call in (backend.info, backend.start, backend.stop, backend.delete):
        with pytest.raises(MachineNotFound):
            call(missing)
    with pytest.raises(MachineNotFound):
        backend.clone(missing, new_name())


def test_a_foreign_container_is_not_a_machine(backend, new_name):
    name = new_name()
    podman("create", "--name", name, "debian:bookworm", "true")
    with pytest.raises(MachineNotFound):
        backend.info(name)
    assert name not in {m.name for m in backend.list()}


def test_cache_entries_are_only_the_projects_own(backend, tmp_path):
    """Podman 4 ORs two ``--filter label=`` (Docker ANDs them): another project's entry must
    not be listed, counted or pruned as this one's (red team 2, finding 10)."""
    from pytest_orbstack.backends.cache_store import entry_labels

    store = backend.cache_store()
    digests = {project: secrets.token_hex(16) for project in ("ptpod-proj-a", "ptpod-proj-b")}
    refs = []
    try:
        for project, digest in digests.items():
            labels = entry_labels(digest, 1.0, "test entry", project)
            (tmp_path / "Containerfile").write_text("FROM localhost/debian:bookworm\n" + "".join(
                f"LABEL {key}={json.dumps(value)}\n" for key, value in labels.items()))
            refs.append(f"localhost/pytest-orbstack-cache:{digest[:32]}")
            built = podman("build", "-q", "-t", refs[-1], str(tmp_path))
            assert built.returncode == 0, built.stderr
        for project, digest in digests.items():
            assert [(e.project, e.digest) for e in store.entries(project)] == [(project, digest)]
        assert store.entries("ptpod-no-such-project") == []
    finally:
        for ref in refs:
            podman("image", "rm", "-f", ref)
