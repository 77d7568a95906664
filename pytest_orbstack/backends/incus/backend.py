"""Machines on Incus: unprivileged LXC system containers running systemd, the kind of machine an
OrbStack machine is (``systemd-detect-virt -c`` says ``lxc``, the hostname is the name).

Ownership and the session's labels are ``user.*`` config keys (:mod:`.commands`), so every
process using the same daemon sees the same machines. A clone is ``incus copy`` of the source
(of one snapshot of it for a golden machine) and has its own hostname, MAC and DHCP address;
copies and snapshots go with their machine, so there are no images to clean up.
"""

from __future__ import annotations

import builtins
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, AnyStr

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus import images, vm
from pytest_orbstack.backends.incus.cache import IncusCacheStore
from pytest_orbstack.backends.incus.cli import DELETED_ELSEWHERE, NOT_RUNNING, IncusCLI
from pytest_orbstack.backends.incus.instances import parse_instance, recorded_resources, recorded_user, session_keys
from pytest_orbstack.backends.process import answers
from pytest_orbstack.backends.process import last_line as _last_line
from pytest_orbstack.errors import InvalidInput, MachineError, MachineExists, MachineNotFound, UnknownImage
from pytest_orbstack.model.inputs import check_cloud_init, default_login, image_codename
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import NO_RESOURCES, READY_STATES, EngineMachine, MachineInfo, Resources, in_workdir


class IncusBackend(Backend):
    """Machines as system containers of an Incus daemon: the local one, or ``remote``'s (an
    ``incus remote``; default ``$PYTEST_ORBSTACK_INCUS_REMOTE``), where every argv names
    ``REMOTE:NAME`` (:class:`.cli.IncusCLI`). ``env`` extends this process's environment."""

    name = "incus"
    engine_files = ("/etc/hosts", "/etc/hostname")  # rootfs.TEMPLATES
    engine_files_why = "its image's templates, written again on every copy"
    client_program = cmd.INCUS
    commands = cmd

    def __init__(self, incus: str = "incus", env: dict[str, str] | None = None,
                 remote: str | None = None, target: str | None = None) -> None:
        self.cli = IncusCLI(incus, env, remote, target)
        self.incus, self.call = incus, self.cli.call
        self.env = self.cli.env  # commands in machines (exec, shells) run with it too
        self._images: dict[tuple[str, bool], str] = {}  # (image, cloud) -> the Incus image reference
        self._users: dict[str, tuple[str, int, int, str]] = {}  # machine -> (user, uid, gid, home)
        self._frozen: dict[str, tuple[str, set[str], str | None]] = {}  # golden -> copied, keys dropped, member

    def at(self, name: str) -> str:
        return self.cli.at(name)  # REMOTE:NAME on a remote

    @classmethod
    def answers(cls) -> bool:
        """True if ``incus`` is on PATH and its daemon answers (``incus query /1.0``, ~20 ms)."""
        return answers(["incus", "query", "/1.0"], settings.PROBE_TIMEOUT)

    def login_command(self, name: str) -> str:
        return f"incus exec {shlex.quote(self.at(name))} -- bash -l"

    def start_command(self, name: str) -> str:
        return f"incus start {shlex.quote(self.at(name))}"

    def _query(self, name: str) -> dict[str, Any]:
        """The instance ``name`` with state and snapshots; MachineNotFound unless this package
        made it."""
        data = self.cli.instance(validate_machine_name(name)) or {}
        if (data.get("config") or {}).get(cmd.KEY) != "1":
            raise MachineNotFound(f"machine not found: {name!r}")
        return data

    def image_ref(self, image: str, cloud: bool = False) -> str:
        """The Incus image machines of ``image`` (``cloud``: with cloud-init) start from, built
        offline on first use when neither the daemon nor the image server has it (:mod:`.images`)."""
        if (image, cloud) not in self._images:
            self._images[image, cloud] = images.image_ref(self.cli, image, cloud, self.notice)
        return self._images[image, cloud]

    def vm_refusal(self) -> str | None:
        """None when this daemon has its qemu driver, else why not (:func:`.vm.refusal`)."""
        return vm.ask(self.cli)

    def target_refusal(self, target: str) -> str | None:
        return self.cli.target_refusal(target)  # None on a cluster

    def _check_resources(self, resources: Resources) -> None:
        """InvalidInput for a VM, a cluster member or a disk size this daemon cannot give."""
        self.refuse_resources(resources)
        why = self.cli.disk_refusal() if resources.disk_mib is not None else None
        if why:
            raise InvalidInput(why)

    # -- machines ---------------------------------------------------------------------------
    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               resources: Resources = NO_RESOURCES) -> MachineInfo:
        """Launch ``name`` from ``image`` within ``resources``; with ``cloud_init`` from its
        ``cloud`` variant, the user-data file in ``cloud-init.user-data``, and wait for cloud-init
        to finish (a failure is only logged in the machine, as on OrbStack, which adds its default
        user after cloud-init); then wait for systemd and add the default user (passwordless
        sudo) in the same command."""
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        user_data = check_cloud_init(cloud_init)
        self._check_resources(resources)
        ref = (cmd.remote_image(image) if resources.vm  # (offline images: containers only)
               else self.image_ref(image, cloud=user_data is not None))
        config = {**{cmd.key(k): v for k, v in (labels or {}).items()},
                  **cmd.machine_config(login, image, resources)}
        if user_data is not None:
            config[cmd.USER_DATA] = Path(user_data).read_text()
        member = resources.target or self.cli.target
        proc = self.call(cmd.launch(self.at(name), ref, config, resources, member), check=False,
                         timeout=settings.INCUS_CREATE_TIMEOUT)
        if proc.returncode != 0:
            error = self.cli.failed(proc, name)
            if ref.startswith("images:") and not isinstance(error, MachineExists):
                raise UnknownImage(f"image {image!r}: incus launch {ref} failed: {_last_line(proc.stderr)}",
                                   stderr=proc.stderr)
            raise error
        with self.cli.deleted_on_failure(name):
            if user_data is not None:
                self.call(cmd.exec_(self.at(name), cmd.cloud_init_wait(int(settings.CLOUD_INIT_TIMEOUT))),
                          timeout=settings.CLOUD_INIT_TIMEOUT + 30)
            self.wait_ready(name, setup=cmd.user_setup(login) if login != "root" else None)
            return self.info(name)

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        """``incus copy`` of ``source`` (running or not), started as ``name`` on the member the
        source was put on with ``target=`` (else as new machines are). With ``frozen_source``
        every clone copies one snapshot of the source, taken once (of a cache entry after
        :meth:`frozen_as`)."""
        validate_machine_name(name)
        snap: str | None = cmd.SNAPSHOT
        if frozen_source and source in self._frozen:  # asked once per process: a golden is fixed
            origin, dropping, member = self._frozen[source]
        else:
            data = self._query(source)
            origin, dropping, member = self._copied(source, data.get("config") or {})
            snap = self._snapshot(source, data, (origin, dropping, member)) if frozen_source else None
        own = {cmd.KEY: "1", **{cmd.key(k): v for k, v in (labels or {}).items()}}
        dropped = {k: "" for k in dropping if k not in own}  # the source's session is not the clone's
        proc = self.call(cmd.copy(self.at(origin), self.at(name), {**dropped, **own}, snap, member),
                         check=False, timeout=settings.INCUS_CREATE_TIMEOUT)
        if proc.returncode != 0:
            raise self.cli.failed(proc, name)
        with self.cli.deleted_on_failure(name):
            self.call(cmd.start(self.at(name)))
            self.wait_ready(name)
            return self.info(name)

    def _snapshot(self, source: str, data: dict[str, Any], frozen: tuple[str, set[str], str | None]) -> str:
        """The golden machine's snapshot, made once (a file lock spans processes)."""
        if cmd.SNAPSHOT not in {s["name"] for s in data.get("snapshots") or []}:
            with FileLock(settings.lock_path(f"incus-snapshot-{source}"), timeout=settings.SNAPSHOT_LOCK_WAIT):
                self.call(cmd.snapshot(self.at(source)), ok=("already exists",), timeout=settings.INCUS_CREATE_TIMEOUT)
        self._frozen[source] = frozen
        return cmd.SNAPSHOT

    def start(self, name: str) -> None:
        self._query(name)
        self.call(cmd.start(self.at(name)))
        self.wait_ready(name)

    def stop(self, name: str) -> None:
        self._query(name)
        self.close_shells(name)
        self.call(cmd.stop(self.at(name)), timeout=settings.INCUS_STOP_TIMEOUT)

    def restart(self, name: str) -> None:
        """``incus restart``: a clean shutdown within 10 s, forced when that failed (as :meth:`stop`)."""
        self._query(name)
        if self.call(cmd.restart(self.at(name)), check=False, timeout=settings.INCUS_STOP_TIMEOUT).returncode:
            self.call(cmd.restart(self.at(name), force=True), timeout=settings.INCUS_STOP_TIMEOUT)

    def delete(self, name: str) -> None:
        """Delete ``name`` (running or not) with its snapshots; MachineNotFound if absent, or
        when another process's delete of it (a prune racing the session's watcher) ran first:
        incusd then waits for that one and answers :data:`~.cli.DELETED_ELSEWHERE`."""
        self._query(name)
        self.forget(name)
        proc = self.call(cmd.delete(self.at(name)), timeout=settings.INCUS_DELETE_TIMEOUT, ok=(DELETED_ELSEWHERE,))
        if proc.returncode != 0:
            raise MachineNotFound(f"machine not found: {name!r}")

    def forget(self, name: str) -> None:
        """Drop what this process knows of machine ``name`` (its shells, user, snapshot lock)."""
        self.close_shells(name)
        self._users.pop(name, None)
        self._frozen.pop(name, None)
        settings.remove_lock(f"incus-snapshot-{name}")

    def _copied(self, origin: str, config: dict[str, str]) -> tuple[str, set[str], str | None]:
        """What a clone of ``origin`` (config ``config``) copies, the keys it drops and its member."""
        return origin, session_keys(config), recorded_resources(config).target or self.cli.target

    def frozen_as(self, source: str, entry: str, config: dict[str, str]) -> None:
        """Clones of ``source`` (which need not exist) copy the snapshot of ``entry`` (config ``config``)."""
        self._frozen[source] = self._copied(entry, config)

    def rename(self, old: str, new: str) -> None:
        """Rename stopped machine ``old`` to ``new`` (Incus renames only stopped instances)."""
        self._query(old)
        validate_machine_name(new)
        self.forget(old)
        self.call(cmd.rename(self.at(old), self.at(new)))

    def info(self, name: str) -> MachineInfo:
        info = parse_instance(self._query(name))
        assert info is not None  # _query checked the key
        return info

    def list(self) -> builtins.list[EngineMachine]:
        items = json.loads(self.call(cmd.list_machines(self.cli.remote)).stdout or "[]")
        infos = (parse_instance(item) for item in items)
        return sorted((i.machine for i in infos if i is not None), key=lambda m: m.name)

    def resources(self, name: str) -> Resources:
        """The resources ``name`` was made with (clones: their source's)."""
        return recorded_resources(self._query(name).get("config") or {})

    def labels(self, name: str) -> dict[str, str]:
        """The ``user.*`` keys of ``name`` as labels (``pytest-orbstack.session``, ...)."""
        return cmd.labels(self._query(name).get("config") or {})

    def cache_store(self) -> IncusCacheStore:
        return IncusCacheStore(self)

    def remove_session_images(self, session_id: str) -> None:
        """Nothing to remove: clones are copies of machines, snapshots go with their machine."""

    # -- commands in machines -----------------------------------------------------------------
    def _user(self, name: str) -> tuple[str, int, int, str]:
        """The default user's name, uid, gid and home (recorded at creation; asked once)."""
        if name not in self._users:
            self._users[name] = recorded_user(self._query(name).get("config") or {})
        return self._users[name]

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        """``incus exec -T NAME [--user UID --group GID --env HOME=.. --env USER=..] -- sh -c
        COMMAND`` for root and the default user; another user through ``su`` as root."""
        validate_machine_name(name)
        command = in_workdir(command, workdir) if workdir else command
        if user == "root":
            return [self.incus, *cmd.exec_(self.at(name), command)[1:]]
        login, uid, gid, home = self._user(name)
        if user is None or user == login:
            env = {"HOME": home, "USER": login, "LOGNAME": login} if uid else {}
            return [self.incus, *cmd.exec_(self.at(name), command, uid=uid, gid=gid, env=env)[1:]]
        return [self.incus, *cmd.exec_(self.at(name), cmd.as_user(user, command))[1:]]

    def own_result(self, proc: subprocess.CompletedProcess[AnyStr]) -> subprocess.CompletedProcess[AnyStr]:
        """Without the line ``incus exec`` adds after exit code 126/127 (:func:`.commands.exit_note`)."""
        return cmd.without_exit_note(proc)

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes]) -> MachineError | None:
        """:meth:`.IncusCLI.refusal`: the machine or the daemon gone, not the command's own exit code."""
        return self.cli.refusal(name, proc)

    def logs(self, name: str) -> str:
        """The container's console log, and when running the boot journal and the cloud-init output."""
        running = self._query(name).get("status") == "Running"
        parts = [self.call(cmd.console_log(self.at(name)), check=False).stdout]
        if running:
            parts.append(self.run(name, cmd.BOOT_LOGS, user="root").stdout)
        return "\n".join(part for part in parts if part)

    def wait_ready(self, name: str, timeout: float = settings.BOOT_TIMEOUT, *, setup: str | None = None) -> str:
        """Wait for systemd in ``name`` (running or degraded), running ``setup`` (the default
        user's, :func:`.commands.user_setup`) first and recording that user's ids."""
        proc = self.call(cmd.ready(self.at(name), int(timeout), setup), check=False, timeout=timeout + 30)
        if proc.returncode != 0 and (proc.stderr.strip() == NOT_RUNNING or "not found" in proc.stderr):
            raise MachineError(f"machine {name} stopped while booting: {_last_line(proc.stderr)}")
        if setup is not None:
            done = next((line.split() for line in proc.stdout.splitlines()
                         if line.startswith(cmd.SETUP_DONE)), None)
            if done is None or len(done) != 4:
                raise MachineError(f"default user setup failed in {name}: {_last_line(proc.stderr)}",
                                   stderr=proc.stderr)
            self.call(cmd.config_set(self.at(name), {f"{cmd.KEY}.uid": done[1], f"{cmd.KEY}.gid": done[2],
                                            f"{cmd.KEY}.home": done[3]}))
        words = proc.stdout.split()
        if words and words[-1] in READY_STATES:
            return words[-1]
        return super().wait_ready(name, timeout)
