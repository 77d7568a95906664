"""DockerBackend against the real Docker engine (no mocks).

Two machines are shared by the module: ``machine`` (plain, default user) and ``ci_machine``
(explicit user + cloud-init); the clone test makes and deletes a third. Every name starts with
``ptobk-``; the finalizer deletes them all and checks ``docker ps -a`` shows none of them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import uuid

import pytest
from testenv import delete_racing

from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.backends.docker.cli import DockerCLI
from pytest_orbstack.errors import (
    CommandTimeout,
    EngineUnavailable,
    InvalidName,
    MachineExists,
    MachineNotFound,
    OrbStackError,
    UnknownImage,
)
from pytest_orbstack.model.inputs import default_login


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


pytestmark = pytest.mark.skipif(not docker_answers(), reason="needs a running Docker engine")

CLOUD_CONFIG = """\
#cloud-config
timezone: Etc/UTC
write_files:
  - path: /etc/ptobk/hello world.txt
    content: "hi 'there' $HOME\\n"
    permissions: '0600'
    owner: ci-user:ci-user
runcmd:
  - echo from-runcmd
  - [touch, /tmp/ran with space]
  - exit 3
"""


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def backend() -> DockerBackend:
    return DockerBackend()


@pytest.fixture(scope="module")
def new_name(backend):
    """Makes unique ``ptobk-`` names; everything made under them is removed at the end."""
    made: list[str] = []

    def make() -> str:
        made.append(f"ptobk-{secrets.token_hex(4)}")
        return made[-1]

    yield make
    for name in made:
        backend.delete_if_exists(name)
        docker("rm", "-f", "-v", name)  # foreign containers made by the tests themselves
    left = set(docker("ps", "-a", "--format", "{{.Names}}").stdout.split())
    assert not left & set(made), f"containers left behind: {left & set(made)}"
    images = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert not [i for i in images if i.split(":", 1)[1] in made], "clone images left behind"


@pytest.fixture(scope="module")
def machine(backend, new_name):
    name = new_name()
    backend.create(name, "debian:12", labels={"ptobk-test": "yes"})
    return name


@pytest.fixture(scope="module")
def ci_machine(backend, new_name, tmp_path_factory):
    user_data = tmp_path_factory.mktemp("ci") / "user-data.yaml"
    user_data.write_text(CLOUD_CONFIG)
    name = new_name()
    backend.create(name, "debian", user="ci-user", cloud_init=user_data)
    return name


def out(backend, name, command, **kwargs) -> str:
    proc = backend.run(name, command, timeout=60, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_info_of_a_new_machine(backend, machine):
    info = backend.info(machine)
    m = info.machine
    assert (m.name, m.state, m.default_username) == (machine, "running", default_login(None))
    assert (m.image.distro, m.image.version) == ("debian", "bookworm")
    assert m.image.arch in ("amd64", "arm64")
    assert info.ip4 and info.disk_size is None and len(m.id) == 64
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", machine).stdout)
    assert labels["pytest-orbstack"] == "1" and labels["pytest-orbstack.image"] == "debian:12"
    assert labels["pytest-orbstack.user"] == m.default_username and labels["ptobk-test"] == "yes"


def test_systemd_flags_not_privileged(machine):
    host = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", machine).stdout)
    assert host["Privileged"] is False and host["CapAdd"] in (["SYS_ADMIN"], ["CAP_SYS_ADMIN"])
    assert host["CgroupnsMode"] == "host" and "seccomp=unconfined" in host["SecurityOpt"]


def test_list_has_our_machines_sorted(backend, machine, ci_machine):
    machines = backend.list()
    names = [m.name for m in machines]
    assert names == sorted(names) and {machine, ci_machine} <= set(names)
    listed = next(m for m in machines if m.name == machine)
    assert listed == backend.info(machine).machine


def test_exec_as_default_user_and_root(backend, machine):
    user = backend.default_user(machine)
    assert out(backend, machine, "id -un") == user
    assert out(backend, machine, "id -u", user="root") == "0"
    assert out(backend, machine, "sudo -n id -u") == "0"
    assert out(backend, machine, "hostname") == machine
    assert out(backend, machine, "pwd", workdir="/tmp") == "/tmp"
    assert out(backend, machine, "cat", input="from stdin") == "from stdin"
    assert backend.run(machine, "echo oops >&2; exit 7").returncode == 7
    assert backend.exec_argv(machine, "true", user="root", workdir="/w") == [
        "docker", "exec", "-i", "-u", "root", machine, "sh", "-c", "cd /w || exit 126; true"]


def test_put_get_round_trip(backend, machine):
    data = bytes(range(256)) * 512 + "ünïcødé\n".encode()
    out(backend, machine, "mkdir -p '/tmp/dir with spaces'")
    path = "/tmp/dir with spaces/fïlé ü.bin"
    backend.put(machine, data, path)
    assert backend.get(machine, path) == data
    assert out(backend, machine, f"stat -c %U '{path}'") == backend.default_user(machine)


def test_put_get_permissions(backend, machine):
    with pytest.raises(OrbStackError, match="Permission denied"):
        backend.put(machine, b"x", "/root/nope")
    backend.put(machine, b"secret\x00", "/root/secret", user="root")
    assert backend.get(machine, "/root/secret", user="root") == b"secret\x00"
    with pytest.raises(OrbStackError, match="Permission denied"):
        backend.get(machine, "/root/secret")


def test_dns_between_machines(backend, machine, ci_machine):
    for here, there in ((machine, ci_machine), (ci_machine, machine)):
        line = out(backend, here, f"getent hosts {there}.orb.local")
        assert line.split()[0] == backend.info(there).ip4
    assert out(backend, machine, "getent hosts host.orb.internal")


def test_machines_have_their_own_machine_id(backend, machine, ci_machine):
    assert out(backend, machine, "cat /etc/machine-id") != out(backend, ci_machine, "cat /etc/machine-id")


def test_cloud_init_applied_and_failure_only_logged(backend, ci_machine):
    assert backend.info(ci_machine).machine.default_username == "ci-user"
    assert out(backend, ci_machine, "id -un") == "ci-user"
    path = "'/etc/ptobk/hello world.txt'"
    assert out(backend, ci_machine, f"stat -c '%a %U' {path}") == "600 ci-user"
    assert out(backend, ci_machine, f"cat {path}") == "hi 'there' $HOME"
    assert out(backend, ci_machine, "test -e '/tmp/ran with space' && echo yes") == "yes"
    logs = backend.logs(ci_machine)
    assert "from-runcmd" in logs and "Failed to run module scripts-user" in logs
    assert "Startup finished" in logs  # the boot journal


def test_clone_stop_start_delete(backend, machine, new_name):
    out(backend, machine, "echo marker > ~/marker")
    name = new_name()
    info = backend.clone(machine, name, labels={"ptobk-clone": "1"})
    assert info.machine.state == "running" and info.ip4 and info.ip4 != backend.info(machine).ip4
    assert info.machine.default_username == backend.default_user(machine)
    assert backend.info(machine).machine.state == "running"  # the source keeps running
    assert out(backend, name, "hostname") == name
    assert out(backend, name, "cat ~/marker") == "marker"
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", name).stdout)
    assert labels["pytest-orbstack.clone-image"] == f"pytest-orbstack-clone:{name}"

    backend.stop(name)
    stopped = backend.info(name)
    assert (stopped.machine.state, stopped.ip4) == ("stopped", None)
    backend.start(name)
    assert backend.info(name).machine.state == "running"
    assert out(backend, name, "cat ~/marker && systemctl is-system-running") == "marker\nrunning"

    backend.delete(name)
    with pytest.raises(MachineNotFound, match=f"machine not found: '{name}'"):
        backend.info(name)
    with pytest.raises(MachineNotFound):
        backend.delete(name)
    assert docker("image", "inspect", f"pytest-orbstack-clone:{name}").returncode != 0


def test_exists_error(backend, machine):
    with pytest.raises(MachineExists, match=f"^machine already exists: '{machine}'$"):
        backend.create(machine, "debian:12")


def test_invalid_name_error(backend):
    with pytest.raises(InvalidName, match="invalid machine name 'bad_name'"):
        backend.create("bad_name", "debian:12")
    assert docker("container", "inspect", "bad_name").returncode != 0


def test_unknown_image_error(backend, new_name):
    if docker("image", "inspect", "ubuntu:noble").returncode == 0:
        pytest.skip("ubuntu:noble is available locally")
    name = new_name()
    with pytest.raises(UnknownImage) as caught:
        DockerBackend().create(name, "ubuntu:24.04")
    message = str(caught.value)
    assert message.startswith("image 'ubuntu:24.04' is not available to docker: no registry has it (")
    assert message.endswith(") and it cannot be built here: only Debian is built without a registry")
    assert "\n" not in message
    assert not backend.exists(name)
    with pytest.raises(UnknownImage, match="unknown image 'windows:11'"):
        backend.create(name, "windows:11")


def test_missing_machine_errors(backend, new_name):
    name = new_name()
    for call in (backend.info, backend.start, backend.stop, backend.delete, backend.logs):
        with pytest.raises(MachineNotFound, match=f"^machine not found: '{name}'$"):
            call(name)
    with pytest.raises(MachineNotFound):
        backend.clone(name, new_name())
    assert backend.delete_if_exists(name) is False


def test_a_machine_another_process_removes_is_gone_when_delete_ends(backend, machine, new_name):
    """A prune and a watcher may delete the same machine: the second ``docker rm`` is refused
    while the first runs ("removal ... already in progress") and ``docker ps -a`` still lists
    it. Delete then waits for it to go and says MachineNotFound (it did not delete it); when
    it is first, it deletes it. Either way the machine is gone when delete ends."""
    outcomes = []
    for _ in range(5):  # (0.05 s: about a docker CLI's start-up: the other removal is under way)
        name = new_name()
        backend.clone(machine, name)
        outcomes.append(delete_racing(backend, name, ["docker", "rm", "-f", "-v", name], 0.05))
        assert name not in docker("ps", "-a", "--format", "{{.Names}}").stdout.split(), outcomes


def test_foreign_container_is_not_a_machine(backend, new_name):
    name = new_name()
    assert docker("run", "-d", "--name", name, "--entrypoint", "sleep", "debian:bookworm",
                  "infinity").returncode == 0
    with pytest.raises(MachineNotFound):
        backend.delete(name)
    assert name not in [m.name for m in backend.list()]
    with pytest.raises(MachineExists):
        backend.create(name, "debian:12")
    assert docker("container", "inspect", name).returncode == 0  # left alone


def test_engine_unavailable_errors():
    with pytest.raises(EngineUnavailable, match="not found on PATH: install Docker"):
        DockerBackend(docker="/nonexistent/docker").list()
    unreachable = DockerBackend(env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    with pytest.raises(EngineUnavailable, match=r"DOCKER_HOST=unix:///nonexistent/docker\.sock"):
        unreachable.list()
    assert unreachable.exec_argv("m1", "true", user="root")[:3] == [
        "docker", "-H", "unix:///nonexistent/docker.sock"]


class FailsAfterRun(DockerBackend):
    """A real DockerBackend whose boot wait fails: create/clone must leave nothing behind."""

    def wait_ready(self, name, timeout=90.0, *, setup=None):
        raise CommandTimeout(f"machine {name} did not finish booting (test)")


def test_failure_after_run_leaves_nothing(backend, machine, new_name):
    failing = FailsAfterRun()
    name = new_name()
    with pytest.raises(CommandTimeout, match="did not finish booting"):
        failing.create(name, "debian:12")
    assert docker("container", "inspect", name).returncode != 0
    with pytest.raises(CommandTimeout):
        failing.clone(machine, name)
    assert docker("container", "inspect", name).returncode != 0
    assert docker("image", "inspect", f"pytest-orbstack-clone:{name}").returncode != 0
    assert backend.info(machine).machine.state == "running"


def test_invalid_user_is_refused_before_anything_runs(backend, new_name):
    name = new_name()
    with pytest.raises(ValueError, match="invalid user name 'Bad User'"):
        backend.create(name, "debian:12", user="Bad User")
    assert docker("container", "inspect", name).returncode != 0


def test_image_lacking_tools_without_apt_get_is_refused(backend, new_name):
    tag = f"debian:{new_name()}"
    temp = new_name()
    made = docker("run", "--name", temp, "--entrypoint", "sh", "debian:bookworm", "-c",
                  "rm /usr/sbin/useradd /usr/bin/apt-get")
    assert made.returncode == 0, made.stderr
    assert docker("commit", temp, tag).returncode == 0
    try:
        name = new_name()
        with pytest.raises(UnknownImage, match=f"image '{tag}' cannot run as a machine on docker: "
                                               "it lacks useradd and it has no apt-get"):
            backend.create(name, tag)
        assert not backend.exists(name)
    finally:
        docker("rmi", tag)


def test_prepared_images_of_older_base_images_are_removed(backend):
    from pytest_orbstack.backends.docker.images import _remove_stale
    repo = f"pytest-orbstack-test/stale-{uuid.uuid4().hex[:8]}"
    tags = [f"{repo}:bookworm-aaaaaaaaaaaa", f"{repo}:bookworm-bbbbbbbbbbbb", f"{repo}:trixie-cccccccccccc"]
    for tag in tags:
        docker("tag", "debian:bookworm", tag)
    try:
        _remove_stale(backend.cli, repo, "bookworm-", keep=tags[1])
        left = set(docker("images", "--format", "{{.Repository}}:{{.Tag}}", repo).stdout.split())
        assert left == {tags[1], tags[2]}  # the current one and other releases stay
    finally:
        for tag in tags:
            docker("rmi", tag)


class CountingCLI(DockerCLI):
    """The docker command line, recording the docker verbs it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.verbs: list[str] = []

    def call(self, argv, **kwargs):
        self.verbs.append(" ".join(a for a in argv[1:3] if not a.startswith("-")))
        return super().call(argv, **kwargs)


class CountingDocker(DockerBackend):
    """The Docker engine, recording the docker verbs it runs (``verbs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.cli = CountingCLI()
        self.verbs = self.cli.verbs


def test_no_engine_call_wasted_on_the_hot_path(new_name):
    """The address create reported answers ``ip4`` (no inspect); ``docker info`` is asked once
    per process; deleting a machine it made is one ``docker rm`` (no inspect, no snapshot
    image removed: it never was a golden one)."""
    from pytest_orbstack.machines.machine import Machine
    engine = CountingDocker()
    name = new_name()
    machine = Machine(name, engine, "debian:bookworm", created=engine.create(name, "debian:bookworm"))
    engine.verbs.clear()
    assert machine.ip4 and machine.ip4 == machine.ip4 == engine.info(name).ip4
    assert engine.verbs == ["container inspect"]  # only the explicit info() above
    another = CountingDocker()  # a new engine object (a new connection) asks no `docker info`
    another.info(name)
    assert another.verbs == ["container inspect"]
    engine.verbs.clear()
    engine.delete(name)
    assert engine.verbs == ["rm"]
    assert docker("ps", "-aq", "--filter", f"name=^{name}$").stdout == ""


def test_a_machine_removed_from_outside_is_not_found_and_its_name_reused_by_another_is_left(new_name):
    """delete() removes the container this process made by its id: once that is gone (removed
    from outside) it raises MachineNotFound, even if a container now has the name."""
    engine = CountingDocker()
    name = new_name()
    engine.create(name, "debian:bookworm")
    docker("rm", "-f", name)
    docker("run", "-d", "--name", name, "--label", "pytest-orbstack=1", "debian:bookworm", "sleep", "300")
    try:
        with pytest.raises(MachineNotFound):
            engine.delete(name)
        assert docker("ps", "-q", "--filter", f"name=^{name}$").stdout.strip()  # not ours: still there
    finally:
        docker("rm", "-f", name)


def test_clones_of_a_golden_machine_ask_the_engine_about_it_once(new_name):
    """The first clone of a frozen source inspects it and commits its snapshot; later clones
    in the process only run, wait for systemd and read their own info. A name in use still
    fails as MachineExists, and the snapshot goes with the source."""
    from pytest_orbstack.errors import MachineExists
    engine = CountingDocker()
    golden, first, second = new_name(), new_name(), new_name()
    engine.create(golden, "debian:bookworm")
    try:
        engine.clone(golden, first, frozen_source=True)
        engine.verbs.clear()
        engine.clone(golden, second, frozen_source=True)
        assert engine.verbs == ["run", "exec", "container inspect"], engine.verbs
        assert engine.info(second).machine.default_username == engine.info(golden).machine.default_username
        with pytest.raises(MachineExists):
            engine.clone(golden, first, frozen_source=True)
        assert engine.exists(first)
    finally:
        for name in (second, first, golden):
            engine.delete_if_exists(name)
    assert docker("image", "inspect", f"pytest-orbstack-snapshot:{golden}").returncode != 0
