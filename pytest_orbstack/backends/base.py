"""The one small interface every machine engine implements.

A backend creates, clones, starts, stops and deletes Linux machines that run systemd, runs shell
commands in them and moves bytes in and out. Machines are named by the caller (checked by
:func:`pytest_orbstack.model.names.validate_machine_name`). ``user=None`` always means the
machine's default (login) user, with passwordless sudo; ``user="root"`` runs as root. Failures
raise the typed errors of :mod:`pytest_orbstack.errors`."""

from __future__ import annotations

import builtins
import functools
import os
import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, AnyStr

from pytest_orbstack import settings
from pytest_orbstack.backends.cache_store import CacheStore
from pytest_orbstack.backends.process import run
from pytest_orbstack.backends.shell import Shells
from pytest_orbstack.errors import CommandTimeout, InvalidInput, MachineError, MachineNotFound
from pytest_orbstack.model.types import (
    NO_RESOURCES,
    READY_STATES,
    EngineMachine,
    MachineInfo,
    Resources,
    in_workdir,
    ready_command,
)

Step = list[str] | tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]  # an argv, or a call


class Backend(ABC):
    """Our adapter for one engine that runs machines; ``name`` is the engine's name
    (``orbstack``, ``docker``), the key of :data:`pytest_orbstack.backends.ENGINES`."""

    name: str = ""
    client_program: str = ""  # the engine's client program: its processes are engine calls (the watcher waits for them)
    commands: Any = None  # the engine's argv builders and parsers (its module), for operations and facts
    env: dict[str, str] | None = None  # environment for engine commands (None: this process's)
    # told a line before and after work long once (an image built on first use): Notices.notice
    notice: Callable[[str], None] = staticmethod(lambda line: None)
    engine_files: tuple[str, ...] = ()  # the engine's own files in each machine, which clones do not carry
    engine_files_why = ""  # why clones do not carry them, for the golden's error

    @property
    def kind(self) -> str:
        """The engine's name, as :attr:`name` (users' code reads ``orbstack_backend.kind``)."""
        return self.name

    def __str__(self) -> str:
        return self.name  # as pyinfra prints a fact's arguments: engine=docker

    def __copy__(self) -> Backend:
        """An engine is a handle: a copy (pyinfra copies host data) is the same engine, caches and all."""
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Backend:
        return self

    @classmethod
    def answers(cls) -> bool:
        """Whether ``auto`` may choose this engine (asked once, in the registry's order); one not
        probed answers yes and fails later with one clear line."""
        return True

    def at(self, name: str) -> str:
        """Machine ``name`` as this engine's own commands address it (``REMOTE:NAME`` on an Incus remote)."""
        return name

    def vm_refusal(self) -> str | None:
        """Why ``vm=True`` machines cannot be made on this engine (one line), None when they can."""
        return (f"vm=True: the {self.name} engine makes containers only (no virtual machines); "
                "use --orbstack-backend=incus on a host with KVM and vhost_vsock")

    def target_refusal(self, target: str) -> str | None:
        """Why a machine cannot be put on cluster member ``target`` here (one line), None when
        it can."""
        return (f"target={target!r}: the {self.name} engine has no cluster members to put a machine on; "
                "target= is for --orbstack-backend=incus on an Incus cluster (docs/scale.md)")

    def refuse_resources(self, resources: Resources) -> None:
        """InvalidInput with :meth:`vm_refusal`'s or :meth:`target_refusal`'s line when
        ``resources`` asks for a VM or a cluster member this engine cannot give."""
        why = self.vm_refusal() if resources.vm else None
        why = why or (self.target_refusal(resources.target) if resources.target else None)
        if why:
            raise InvalidInput(why)

    def create_steps(self, name: str, image: str, *, arch: str | None = None, user: str | None = None,
                     cloud_init: str | None = None, labels: dict[str, str] | None = None,
                     resources: Resources = NO_RESOURCES) -> builtins.list[Step]:
        """What ``operations.machine`` runs to make ``name``: argv lists (run on the engine's host) and
        calls ``(function, args, kwargs)``; by default one call of :meth:`create` (``arch`` unused)."""
        how = {"user": user, "cloud_init": cloud_init, "labels": labels, "resources": resources}
        return [(self.create, (name, image), how)]

    def clone_steps(self, source: str, name: str, *, running: bool = True) -> builtins.list[Step]:
        """What ``operations.clone`` runs to make ``name`` from ``source``, running or stopped."""
        return [(self.clone, (source, name), {}), *([] if running else [self.commands.stop(self.at(name))])]

    @abstractmethod
    def login_command(self, name: str) -> str:
        """How a person logs in to machine ``name`` (a shell command line)."""

    @abstractmethod
    def start_command(self, name: str) -> str:
        """How a person starts stopped machine ``name`` (a shell command line)."""

    @abstractmethod
    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               resources: Resources = NO_RESOURCES) -> MachineInfo:
        """Create and start machine ``name`` from ``image`` (OrbStack form, ``debian:bookworm``)
        within ``resources`` (which clones inherit); returns once systemd is up."""

    @abstractmethod
    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        """Create ``name`` as a copy of ``source`` and start it. ``frozen_source`` promises the
        source no longer changes (a golden machine), so an engine may reuse one snapshot."""

    def cache_store(self) -> CacheStore | None:
        """Where golden machines are kept between runs (:mod:`.cache_store`); None: not here."""
        return None

    def can_clone(self) -> bool:
        """Whether :meth:`clone` works on this engine (an older OrbStack has no clone)."""
        return True

    @abstractmethod
    def start(self, name: str) -> None: ...

    @abstractmethod
    def stop(self, name: str) -> None: ...

    @abstractmethod
    def restart(self, name: str) -> None:
        """Restart running machine ``name`` with the engine's own command: its init is shut down
        cleanly (forced after a grace time) and started again, without waiting for systemd
        (:meth:`reboot` does); MachineNotFound if there is none."""

    def reboot(self, name: str, timeout: float = settings.BOOT_TIMEOUT) -> MachineInfo:
        """Reboot ``name``: its persistent shells closed (the next command opens new ones),
        :meth:`restart`, then :meth:`wait_ready` within ``timeout``; returns the machine as the
        engine sees it then (Docker and Podman give it a new address). A container keeps the
        host's kernel: PID 1's start time (``/proc/1/stat``) marks the new boot, not ``boot_id``."""
        self.close_shells(name)
        self.restart(name)
        self.wait_ready(name, timeout)
        return self.info(name)

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete ``name``; MachineNotFound if there is no such machine."""

    @abstractmethod
    def info(self, name: str) -> MachineInfo:
        """State and addresses of ``name``; MachineNotFound if there is none."""

    @abstractmethod
    def list(self) -> builtins.list[EngineMachine]:
        """All machines of this engine (for docker: those this package made)."""

    @abstractmethod
    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        """Local argv that runs shell ``command`` in ``name`` with stdin, stdout, stderr and the
        exit code passed through."""

    @abstractmethod
    def logs(self, name: str) -> str:
        """The machine's console/boot log."""

    @abstractmethod
    def remove_session_images(self, session_id: str) -> None:
        """Remove the images this package made for the session that no machine uses any more."""

    def remove_unused_images(self, removable: Callable[[Mapping[str, str]], bool]) -> builtins.list[str]:
        """Remove every image this package made that nothing needs and whose labels ``removable``
        accepts: no machine runs from it and the machine it was taken from is gone (the engine is
        asked, not the session records). Returns what was removed (OrbStack: nothing, no images)."""
        return []

    # -- shared behaviour, in terms of the methods above ---------------------------------
    def exists(self, name: str) -> bool:
        try:
            self.info(name)
            return True
        except MachineNotFound:
            return False

    def delete_if_exists(self, name: str) -> bool:
        """Delete ``name`` if present; True if something was deleted."""
        try:
            self.delete(name)
            return True
        except MachineNotFound:
            return False

    def state(self, name: str) -> tuple[str, str]:
        """``name``'s state and default user (root if none): what a connection asks; MachineNotFound."""
        machine = self.info(name).machine
        return machine.state, machine.default_username or "root"

    def default_user(self, name: str) -> str:
        return self.state(name)[1]

    @functools.cached_property
    def shells(self) -> Shells:
        """This engine's persistent shells (made on first use, closed per machine on delete)."""
        return Shells(lambda name, user, command: self.exec_argv(name, command, user=user), self.env)

    def execute(self, name: str, command: str, *, user: str | None = None, input: bytes | None = None,
                timeout: float | None = settings.COMMAND_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        """Run shell ``command`` in ``name`` as ``user`` (stdin ``input``, else /dev/null; no
        timeout when None): the machine's bytes and the command's own exit code, exactly as one
        :meth:`exec_argv` process gives them. Through the machine's persistent shell
        (:mod:`.shell`) unless ``PYTEST_ORBSTACK_SHELL=off``; CommandTimeout after ``timeout``,
        the engine's :meth:`refusal` when it would not run the command."""
        if settings.shell_enabled():
            proc = self.shells.run(name, command, user=user, input=input, timeout=timeout)
        else:
            proc = self.own_result(run(self.exec_argv(name, command, user=user), timeout=timeout,
                                       input=input, env=self.env))
        refusal = self.refusal(name, proc) if proc.returncode != 0 else None
        if refusal is not None:
            raise refusal
        return proc

    def own_result(self, proc: subprocess.CompletedProcess[AnyStr]) -> subprocess.CompletedProcess[AnyStr]:
        """``proc`` of one :meth:`exec_argv` process without what the engine's client added to
        the command's own output (nothing, unless an engine says otherwise)."""
        return proc

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes]) -> MachineError | None:
        """The error to raise when a failed :meth:`execute` is the engine refusing to run the command
        (the machine stopped under the test, say), not the command failing; None: its own result."""
        return None

    def close_shells(self, name: str) -> None:
        """Close ``name``'s persistent shells (before it is stopped or deleted)."""
        if "shells" in self.__dict__:
            self.shells.close(name)

    def run(self, name: str, command: str, *, user: str | None = None, workdir: str | None = None,
            input: bytes | str | None = None,
            timeout: float = settings.COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run shell ``command`` (in ``workdir``, exit 126 if the machine has none:
        :func:`.types.in_workdir`) as :meth:`execute` does; the returned process holds the
        command's own exit code, its output as text (undecodable bytes replaced)."""
        if workdir is not None:
            command = in_workdir(command, workdir)
        data = input.encode() if isinstance(input, str) else input
        proc = self.execute(name, command, user=user, input=data, timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))

    def put(self, name: str, data: bytes, remote_path: str, *, user: str | None = None) -> None:
        """Write ``data`` to ``remote_path`` as ``user`` (default user: its permissions apply)."""
        proc = self.run(name, f"cat > {shlex.quote(remote_path)}", user=user, input=data)
        if proc.returncode != 0:
            raise MachineError(f"upload to {name}:{remote_path} failed: {proc.stderr.strip()}",
                               stderr=proc.stderr, returncode=proc.returncode)

    def get(self, name: str, remote_path: str, *, user: str | None = None,
            timeout: float = settings.DOWNLOAD_TIMEOUT) -> bytes:
        """Read ``remote_path`` as ``user``."""
        proc = self.execute(name, f"cat {shlex.quote(remote_path)}", user=user, timeout=timeout)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip()
            raise MachineError(f"download of {name}:{remote_path} failed: {stderr}",
                               stderr=stderr, returncode=proc.returncode)
        return proc.stdout

    def wait_ready(self, name: str, timeout: float = settings.BOOT_TIMEOUT) -> str:
        """Wait until systemd in ``name`` reports running (or degraded); returns that state.
        One blocking ``systemctl is-system-running --wait``, then polling if that did not end
        ready (a machine still coming up may refuse the first command)."""
        proc = self.run(name, ready_command(int(timeout)), user="root", timeout=timeout + 30)
        words = proc.stdout.split()
        if words and words[-1] in READY_STATES:
            return words[-1]
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = self.run(name, "systemctl is-system-running 2>/dev/null || true", user="root",
                            timeout=settings.POLL_TIMEOUT)
            state = proc.stdout.strip()
            if state in READY_STATES:
                return state
            time.sleep(0.2)
        raise CommandTimeout(f"machine {name} did not finish booting in {timeout:.0f}s "
                             f"(systemd state: {state or 'unknown'})")
