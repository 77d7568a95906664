"""Machines on OrbStack, through the ``orbctl`` client."""

from __future__ import annotations

import builtins
import dataclasses
import os
from collections.abc import Sequence

from ..errors import UnknownImage
from ..orbctl import Orbctl
from .base import Backend
from .types import EngineMachine, MachineInfo

# OrbStack runs these with OpenRC or runit, not systemd (docs.orbstack.dev/architecture: "Init
# systems including systemd, OpenRC, and runit are fully functional"); readiness here means
# systemd is up, so they are refused before anything is created.
NON_SYSTEMD = frozenset({"alpine", "devuan", "gentoo", "void"})
# States OrbStack reports while a machine comes up; a started clone can stay "provisioning"
# while it already runs commands (OrbStack 1.11.1, orbstack/orbstack#1973).
COMING_UP = ("provisioning", "creating", "starting")


class OrbStackBackend(Backend):
    """OrbStack machines. OrbStack has no labels: ``labels`` are accepted and ignored (the
    session registry records ownership instead). Uploads use the inherited stdin route
    (:meth:`Backend.put`, ``cat > path`` through ``orbctl run``), proven on real OrbStack:
    exact bytes and exit codes on 2.2.3 (mainuli/garm-provider-orbstack), tar over stdin on
    2.2.1 (billyhargroveofficial/billystar); ``orbctl push`` changed its permissions in 2.2.3."""

    kind = "orbstack"

    def __init__(self, client: Orbctl | None = None) -> None:
        self.client = client or Orbctl()
        self.env = self.client.env

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               capabilities: Sequence[str] = ()) -> MachineInfo:
        """Create ``name`` and wait for systemd; distros without systemd are refused first.
        ``capabilities``: OrbStack machines are not restricted that way (ASSUMED), nothing to
        grant."""
        distro = image.partition(":")[0]
        if distro in NON_SYSTEMD:
            raise UnknownImage(
                f"image {image!r}: {distro} machines run OpenRC or runit, not systemd, and "
                f"pytest-orbstack waits for systemd to call a machine ready: use a systemd distro "
                f"(debian, ubuntu, fedora, arch, alma, rocky, ...)")
        self.client.create(image, name, user=user, user_data=cloud_init)
        try:
            self.wait_ready(name)
        except BaseException:
            self.delete_if_exists(name)
            raise
        return self.client.info(name)

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        self.client.clone(source, name)  # copy-on-write already; left stopped by OrbStack
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
        self.client.stop(name)

    def delete(self, name: str) -> None:
        self.client.delete(name)

    def remove_session_images(self, session_id: str) -> None:
        """Nothing to remove: OrbStack clones are copy-on-write machines, not images."""

    def info(self, name: str) -> MachineInfo:
        """The machine as OrbStack reports it, except that one still coming up (COMING_UP)
        that already runs a command is reported ``running``."""
        info = self.client.info(name)
        if info.machine.state not in COMING_UP:
            return info
        if self.run(name, "true", user="root", timeout=30).returncode != 0:
            return info
        return dataclasses.replace(info, machine=dataclasses.replace(info.machine, state="running"))

    def list(self) -> builtins.list[EngineMachine]:
        return self.client.list()

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        return self.client.run_argv(name, command, user=user, workdir=workdir)

    def logs(self, name: str) -> str:
        return self.client.logs(name)
