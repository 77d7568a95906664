"""Machines on OrbStack, through the ``orbctl`` client."""

from __future__ import annotations

import builtins
import dataclasses
import os
import shlex
import shutil
import subprocess

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend, Step
from pytest_orbstack.backends.orbstack import commands as cmd
from pytest_orbstack.backends.orbstack.cache import OrbStackCacheStore
from pytest_orbstack.backends.orbstack.client import Orbctl
from pytest_orbstack.model.types import NO_RESOURCES, EngineMachine, MachineInfo, Resources

# States OrbStack reports while a machine comes up; a started clone can stay "provisioning"
# while it already runs commands (OrbStack 1.11.1, orbstack/orbstack#1973).
COMING_UP = ("provisioning", "creating", "starting")


def orbctl_answers(binary: str = "orbctl") -> bool:
    """True if an ``orbctl`` is on PATH and ``orbctl version`` succeeds."""
    if not shutil.which(binary):
        return False
    try:
        return subprocess.run([binary, "version"], capture_output=True,
                              timeout=settings.PROBE_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class OrbStackBackend(Backend):
    """OrbStack machines. OrbStack has no labels: ``labels`` are accepted and ignored (the
    session registry records ownership instead). Uploads use the inherited stdin route
    (:meth:`Backend.put`, ``cat > path`` through ``orbctl run``), proven on real OrbStack:
    exact bytes and exit codes on 2.2.3 (mainuli/garm-provider-orbstack), tar over stdin on
    2.2.1 (billyhargroveofficial/billystar); ``orbctl push`` changed its permissions in 2.2.3."""

    name = "orbstack"
    client_program = cmd.ORBCTL
    commands = cmd

    def __init__(self, client: Orbctl | None = None) -> None:
        self.client = client or Orbctl()
        self.env = self.client.env
        self._entries: dict[str, str] = {}  # a golden machine -> the cache entry its clones copy

    def cache_store(self) -> OrbStackCacheStore:
        """Golden machines kept between runs as stopped machines (:mod:`.orbstack.cache`)."""
        return OrbStackCacheStore(self)

    def frozen_as(self, source: str, entry: str) -> None:
        """From now on clones of ``source`` are clones of the cache entry ``entry``."""
        self._entries[source] = entry

    @classmethod
    def answers(cls) -> bool:
        """True if an ``orbctl`` is on PATH and ``orbctl version`` succeeds."""
        return orbctl_answers()

    def vm_refusal(self) -> str | None:
        return ("vm=True: OrbStack has no VM per machine (its machines are containers sharing one "
                "VM's kernel); use --orbstack-backend=incus on a Linux host with KVM and vhost_vsock")

    def login_command(self, name: str) -> str:
        return f"orb -m {shlex.quote(name)}"

    def start_command(self, name: str) -> str:
        return f"orbctl start {shlex.quote(name)}"

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               resources: Resources = NO_RESOURCES) -> MachineInfo:
        """Create ``name`` (the client refuses distros without systemd and flags this OrbStack
        is too old for) and wait for systemd."""
        self.refuse_resources(resources)
        created = self.client.create(image, name, user=user, user_data=cloud_init, resources=resources)
        try:
            self.wait_ready(name)
        except BaseException:
            self.delete_if_exists(name)
            raise
        # what create reported, unless it was still coming up then (no second info per create)
        return created if created.ip4 and created.machine.running else self.client.info(name)

    def create_steps(self, name: str, image: str, *, arch: str | None = None, user: str | None = None,
                     cloud_init: str | None = None, labels: dict[str, str] | None = None,
                     resources: Resources = NO_RESOURCES) -> builtins.list[Step]:
        """``orbctl create`` and the readiness probe, commands the OrbStack host runs; labels are
        ignored; EngineUnavailable when this OrbStack is too old for ``resources``."""
        for feature in (["resources"] if resources.limits else []) + (["isolated"] if resources.isolated else []):
            self.client.require(feature)
        return [cmd.create(image, name, user=user, arch=arch, cloud_init=cloud_init, resources=resources),
                cmd.ready(name)]

    def clone_steps(self, source: str, name: str, *, running: bool = True) -> builtins.list[Step]:
        """``orbctl clone`` (which leaves the clone stopped), then its start when ``running``."""
        self.client.require("clone")
        return [cmd.clone(source, name), *([cmd.start(name), cmd.ready(name)] if running else [])]

    def can_clone(self) -> bool:
        return self.client.supports("clone")

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        self.client.clone(self._entries.get(source, source), name)  # copy-on-write; left stopped
        try:
            self.start(name)
        except BaseException:
            self.delete_if_exists(name)
            raise
        return self.client.info(name)

    def start(self, name: str) -> None:
        self.client.start(name)
        self.wait_ready(name)

    def stop(self, name: str) -> None:
        self.close_shells(name)
        self.client.stop(name)

    def restart(self, name: str) -> None:
        self.client.restart(name)

    def delete(self, name: str) -> None:
        self.close_shells(name)
        self.client.delete(name)

    def remove_session_images(self, session_id: str) -> None:
        """Nothing to remove: OrbStack clones are copy-on-write machines, not images."""

    def info(self, name: str) -> MachineInfo:
        """The machine as OrbStack reports it, except that one still coming up (COMING_UP)
        that already runs a command is reported ``running``."""
        info = self.client.info(name)
        if info.machine.state not in COMING_UP:
            return info
        if self.run(name, "true", user="root", timeout=settings.POLL_TIMEOUT).returncode != 0:
            return info
        return dataclasses.replace(info, machine=dataclasses.replace(info.machine, state="running"))

    def list(self) -> builtins.list[EngineMachine]:
        return self.client.list()

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        return self.client.run_argv(name, command, user=user, workdir=workdir)

    def logs(self, name: str) -> str:
        return self.client.logs(name)
