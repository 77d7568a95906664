"""Machines on Docker: containers running systemd that behave like OrbStack machines.

Machines are found again through their labels (``pytest-orbstack=1``, ``.user``, ``.image``),
so every process using the same engine sees the same machines. Every docker command comes from
:mod:`.commands` and runs through the engine's :class:`~.cli.DockerCLI`; nothing assumes the
engine is local (``DOCKER_HOST`` is honoured): files move through ``docker exec``.
"""

from __future__ import annotations

import builtins
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend, Step
from pytest_orbstack.backends.docker import cloudinit
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.cli import DockerCLI
from pytest_orbstack.backends.docker.commands import LABEL, SETUP_DONE, check_docker_resources
from pytest_orbstack.backends.docker.images import prepared_image
from pytest_orbstack.backends.process import answers
from pytest_orbstack.backends.process import last_line as _last_line
from pytest_orbstack.errors import MachineError, MachineExists, MachineNotFound
from pytest_orbstack.model.inputs import check_cloud_init, default_login, image_codename
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import NO_RESOURCES, READY_STATES, EngineMachine, MachineInfo, Resources

if TYPE_CHECKING:
    from pytest_orbstack.backends.docker.cache import DockerCacheStore

class DockerBackend(Backend):
    """Machines as systemd containers on a Docker engine: its :class:`.DockerCLI` runs
    ``docker`` with ``env`` (which extends this process's environment)."""

    name = "docker"
    client_program = cmd.DOCKER
    commands = cmd
    engine_files = ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname")
    engine_files_why = "a bind mount no snapshot holds"
    cli_class: type[DockerCLI] = DockerCLI  # the command line of this flavour of engine

    def __init__(self, docker: str = "docker", env: dict[str, str] | None = None) -> None:
        self.cli = self.cli_class(docker, env)
        self.env = self.cli.env
        self.env_overrides = self.cli.env_overrides
        self._tags: dict[str, str] = {}  # image -> prepared tag (the base does not change mid-session)
        self._users: dict[str, str] = {}  # machine -> default user
        self._frozen: dict[str, tuple[str, dict[str, str]]] = {}  # golden -> its snapshot, labels
        self._known: dict[str, tuple[str, str | None]] = {}  # machine -> (id, its clone image) once inspected

    @classmethod
    def answers(cls) -> bool:
        """True if ``docker`` is on PATH and its daemon answers ``docker version``."""
        return answers(["docker", "version", "--format", "{{.Server.Version}}"], settings.PROBE_TIMEOUT)

    def login_command(self, name: str) -> str:
        """``docker exec -it NAME bash -l``, with ``-H DOCKER_HOST`` when one is set (a shell
        without it would ask another engine)."""
        return f"{self._docker()} exec -it {shlex.quote(name)} bash -l"

    def start_command(self, name: str) -> str:
        return f"{self._docker()} start {shlex.quote(name)}"

    def _docker(self) -> str:
        host = self.cli.host()
        return f"docker -H {shlex.quote(host)}" if host else "docker"

    def _inspect(self, name: str) -> dict[str, Any]:
        """Like :meth:`.DockerCLI.find`, for a machine: InvalidName for a name no machine can
        have, MachineNotFound unless this package made it."""
        data = self.cli.find(validate_machine_name(name))
        labels = (data["Config"].get("Labels") or {}) if data else {}
        if data is None or labels.get(LABEL) != "1":
            raise MachineNotFound(f"machine not found: {name!r}")
        self._known[name] = (data["Id"], labels.get(f"{LABEL}.clone-image"))
        return data

    def prepare(self, image: str, *, stable_tag: bool = False) -> str:
        """What a machine of ``image`` needs before ``docker run``: the machines' network and
        the prepared image (built once); returns the image's tag. With ``stable_tag`` the
        stable tag pyinfra operations refer to (:func:`.commands.machine_image`) points at it too."""
        self.cli.ensure_network()
        if image not in self._tags:
            self._tags[image] = prepared_image(self.cli, image, self.notice)
        if stable_tag:
            self.cli.call(cmd.tag(self._tags[image], cmd.machine_image(image)))
        return self._tags[image]

    def create_steps(self, name: str, image: str, *, arch: str | None = None, user: str | None = None,
                     cloud_init: str | None = None, labels: dict[str, str] | None = None,
                     resources: Resources = NO_RESOURCES) -> builtins.list[Step]:
        """As :meth:`create`, as the commands the engine's host runs (:meth:`prepare` and
        cloud-init stay calls, so ``--dry`` builds nothing); ``arch`` is the engine's."""
        login = default_login(user)
        check_docker_resources(resources)
        labels = {**(labels or {}), **cmd.machine_labels(login, image, resources)}
        return [(self.prepare, (image,), {"stable_tag": True}),
                cmd.run(name, cmd.machine_image(image), labels, resources),
                cmd.ready(name, setup=cmd.user_setup(login) if login != "root" else None),
                *([(cloudinit.run, (self.cli, name, cloud_init), {})] if cloud_init else [])]

    def _run_container(self, name: str, image_ref: str, labels: dict[str, str]) -> None:
        """``docker run`` a machine (within the resources its labels record); a failed or timed
        out run leaves no container behind."""
        self.cli.ensure_network()
        with self.cli.removed_on_failure(name):  # a run that timed out: the engine may still make it
            proc = self.cli.call(self._run_argv(name, image_ref, labels), check=False)
        if proc.returncode != 0:
            if "is already in use" in proc.stderr:
                raise MachineExists(f"machine already exists: {name!r}", stderr=proc.stderr)
            self.cli.call(cmd.delete(name), check=False)
            raise self.cli.error(proc)

    def _run_argv(self, name: str, image_ref: str, labels: dict[str, str]) -> builtins.list[str]:
        return cmd.run(name, image_ref, labels, cmd.label_resources(labels))

    # -- machines -------------------------------------------------------------------------------
    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               resources: Resources = NO_RESOURCES) -> MachineInfo:
        """Run ``name`` from ``image``, wait for systemd, add the default user (passwordless
        sudo), then run ``cloud_init`` (Debian's cloud-init; a failure is only logged, as on
        OrbStack). OrbStack adds its default user after cloud-init (orbstack/orbstack#1446);
        here it exists first, as in :func:`pytest_orbstack.pyinfra.operations.machine`, so a machine
        listed by the engine always has its user."""
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        path = check_cloud_init(cloud_init)
        ref = self.prepare(image)
        # a name in use fails `docker run` itself ("is already in use" -> MachineExists)
        check_docker_resources(resources)
        self.refuse_resources(resources)
        self._run_container(name, ref, {**(labels or {}), **cmd.machine_labels(login, image, resources)})
        with self.cli.removed_on_failure(name):
            # the user is added while systemd boots, in the first readiness probe
            self.wait_ready(name, setup=cmd.user_setup(login) if login != "root" else None)
            if path is not None:
                cloudinit.run(self.cli, name, path)
            return self.info(name)

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        """Commit ``source`` to an image and run ``name`` from it like :meth:`create` (own
        hostname); the source keeps running. With ``frozen_source`` (a golden machine that no
        longer changes) one snapshot image of the source serves every clone; it goes with the
        source, and this process asks the engine about the source only for its first clone."""
        validate_machine_name(name)
        if frozen_source and source in self._frozen:  # asked once per process: a golden is fixed
            (image, source_labels), owned = self._frozen[source], None  # a name in use: run fails
        else:
            source_labels = self._inspect(source)["Config"].get("Labels") or {}
            if self.cli.find(name) is not None:
                raise MachineExists(f"machine already exists: {name!r}")
            marks = [f"LABEL {key}={value}" for key, value in (labels or {}).items()]  # the session's
            if frozen_source:
                image, owned = self._snapshot(source, marks), None
                self._frozen[source] = (image, source_labels)
            else:
                image = owned = f"pytest-orbstack-clone:{name}"
                self.cli.call(cmd.commit(source, image, f"LABEL {LABEL}.clone-of={source}", *marks),
                              timeout=settings.DOCKER_COMMIT_TIMEOUT)
        labels = {**(labels or {}), LABEL: "1",
                  **{k: v for k, v in source_labels.items() if k in cmd.INHERITED_LABELS}}
        if owned:
            labels[f"{LABEL}.clone-image"] = owned
        try:
            self._run_container(name, image, labels)
        except BaseException:
            if owned:
                self.cli.remove_image(owned)
            raise
        with self.cli.removed_on_failure(name, owned):
            self.wait_ready(name)
            return self.info(name)

    def _snapshot(self, source: str, marks: builtins.list[str]) -> str:
        """The snapshot image of ``source``, committed once (a file lock spans processes)."""
        image = f"pytest-orbstack-snapshot:{source}"
        with FileLock(settings.lock_path(f"snapshot-{source}"), timeout=settings.SNAPSHOT_LOCK_WAIT):
            if self.cli.call(cmd.image_id(image), check=False).returncode != 0:
                self.cli.call(cmd.commit(source, image, f"LABEL {LABEL}.snapshot-of={source}", *marks),
                          timeout=settings.DOCKER_COMMIT_TIMEOUT)
        return image

    def frozen_as(self, source: str, image: str, labels: dict[str, str]) -> None:
        """Clones of ``source`` (which need not exist) run from ``image``, labelled ``labels``."""
        self._frozen[source] = (image, labels)

    def cache_store(self) -> DockerCacheStore:
        from pytest_orbstack.backends.docker.cache import DockerCacheStore
        return DockerCacheStore(self)

    def remove_session_images(self, session_id: str) -> None:
        """Remove the session's snapshot and clone images (labelled with it) no container uses."""
        for image in self.cli.call(cmd.session_images(session_id)).stdout.split():
            self.cli.remove_image(image)

    def remove_unused_images(self, removable: Callable[[Mapping[str, str]], bool]) -> builtins.list[str]:
        """See :meth:`.Backend.remove_unused_images` and :mod:`.leftovers`."""
        from pytest_orbstack.backends.docker.leftovers import remove_unused
        return remove_unused(self.cli, removable)

    def start(self, name: str) -> None:
        self.cli.call(cmd.start(self._inspect(name)["Id"]))
        self.wait_ready(name)

    def stop(self, name: str) -> None:
        self.close_shells(name)
        self.cli.call(cmd.stop(self._inspect(name)["Id"]))

    def restart(self, name: str) -> None:
        """``docker restart``: systemd's clean shutdown (the machine's stop signal), 10 s at most,
        then a new PID 1 in the same container; its tmpfs /tmp and /run start empty."""
        self.cli.call(cmd.restart(self._inspect(name)["Id"]), timeout=settings.call_timeout() + 10)

    def delete(self, name: str) -> None:
        """Remove the container and its volumes, and its clone image unless still in use. A
        machine this process has inspected (every one it made) is removed by the id it had
        then, without asking the engine again; MachineNotFound if that container is gone, or
        once it is (its images removed) when another process was removing it."""
        if name not in self._known:
            self._inspect(name)
        cid, clone_image = self._known.pop(name)
        self.close_shells(name)
        self._users.pop(name, None)
        self._frozen.pop(name, None)
        proc = self.cli.call(cmd.delete(cid), check=False)
        elsewhere = self.cli.removed_elsewhere(cid, proc)
        if not elsewhere and (proc.returncode != 0 or "No such container" in proc.stderr):  # (`rm -f` exits 0)
            raise self.cli.error(proc)
        if clone_image:
            self.cli.remove_image(clone_image)
        if os.path.exists(settings.lock_path(f"snapshot-{name}")):  # it was a frozen source: a snapshot
            self.cli.remove_image(f"pytest-orbstack-snapshot:{name}")
            settings.remove_lock(f"snapshot-{name}")
        if elsewhere:
            raise MachineNotFound(f"machine not found: {name!r}")

    def state(self, name: str) -> tuple[str, str]:
        """From the inspect alone (no ``docker info``, no parse of the image label)."""
        data = self._inspect(name)
        user = data["Config"]["Labels"].get(f"{LABEL}.user") or "root"
        return ("running" if data["State"]["Running"] else "stopped"), user

    def info(self, name: str) -> MachineInfo:
        info = self.cli.machine_info(self._inspect(name))
        assert info is not None  # _inspect checked the label
        return info

    def list(self) -> builtins.list[EngineMachine]:
        return cmd.parse_list(self.cli.call(self._list_argv()).stdout, self.cli.architecture())

    def _list_argv(self) -> builtins.list[str]:
        return cmd.list_machines()

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        """``docker exec -i -u USER [-w DIR] NAME sh -c COMMAND``, with ``-H HOST`` first when
        ``env`` sets DOCKER_HOST (the argv runs in the caller's environment, not ``env``)."""
        validate_machine_name(name)
        if user is None:  # the label never changes: one inspect per machine, not per command
            user = self._users.get(name) or self._users.setdefault(name, self.default_user(name))
        return self.cli.exec_argv(name, command, user=user, workdir=workdir)

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes]) -> MachineError | None:
        """See :meth:`.DockerCLI.refusal`."""
        return self.cli.refusal(name, proc, self.name)

    def logs(self, name: str) -> str:
        """``docker logs``, and when running the boot journal and the cloud-init output."""
        data = self._inspect(name)
        proc = self.cli.call(cmd.logs(data["Id"]), check=False)
        parts = [proc.stdout + proc.stderr]
        if data["State"]["Running"]:
            parts.append(self.cli.exec_root(name, (
                f"journalctl -b --no-pager -n 300 2>&1; if [ -s {cloudinit.LOG} ]; then "
                f"echo '--- {cloudinit.LOG} ---'; cat {cloudinit.LOG}; fi")).stdout)
        return "\n".join(part for part in parts if part)

    def wait_ready(self, name: str, timeout: float = settings.BOOT_TIMEOUT, *, setup: str | None = None) -> str:
        """Wait for systemd in ``name`` (running or degraded), running ``setup`` as root first.

        One ``docker exec`` (:func:`.docker_commands.ready`) does it all; polling follows only
        if that did not end ready. Fails at once if the container exits while booting."""
        proc = self.cli.call(cmd.ready(name, int(timeout), setup), check=False, timeout=timeout + 30)
        self.cli.raise_if_stopped(name, proc)
        words = proc.stdout.split()
        if setup is not None and SETUP_DONE not in words:
            raise MachineError(f"default user setup failed in {name}: {_last_line(proc.stderr)}",
                               stderr=proc.stderr)
        if words and words[-1] in READY_STATES:
            return words[-1]
        return super().wait_ready(name, timeout)
