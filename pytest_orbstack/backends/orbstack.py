"""Machines on OrbStack, through the ``orbctl`` client."""

from __future__ import annotations

import builtins
import os
import shlex
import tempfile
import uuid

from ..errors import MachineError
from ..orbctl import Orbctl
from .base import Backend
from .types import EngineMachine, MachineInfo


class OrbStackBackend(Backend):
    """OrbStack machines. OrbStack has no labels: ``labels`` are accepted and ignored (the
    session registry records ownership instead)."""

    kind = "orbstack"

    def __init__(self, client: Orbctl | None = None) -> None:
        self.client = client or Orbctl()
        self.env = self.client.env

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None) -> MachineInfo:
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
        return self.client.info(name)

    def list(self) -> builtins.list[EngineMachine]:
        return self.client.list()

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        return self.client.run_argv(name, command, user=user, workdir=workdir)

    def logs(self, name: str) -> str:
        return self.client.logs(name)

    def put(self, name: str, data: bytes, remote_path: str, *, user: str | None = None) -> None:
        """``orbctl push`` copies as the default user: other users get a temp file moved into
        place as that user."""
        fd, local = tempfile.mkstemp(prefix="pytest-orbstack-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if user is None:
                self.client.push(name, local, remote_path)
                return
            temp = f"/tmp/pytest-orbstack-{uuid.uuid4().hex}"
            self.client.push(name, local, temp)
            proc = self.run(name, f"cat {shlex.quote(temp)} > {shlex.quote(remote_path)}; "
                                  f"rc=$?; rm -f {shlex.quote(temp)}; exit $rc", user=user)
            if proc.returncode != 0:
                raise MachineError(f"upload to {name}:{remote_path} failed: {proc.stderr.strip()}",
                                    stderr=proc.stderr, returncode=proc.returncode)
        finally:
            os.unlink(local)
