"""A typed client of OrbStack's command line, ``orbctl``.

Each method runs one ``orbctl`` command (argv list, no shell), parses its output and turns
failures into the typed errors of :mod:`pytest_orbstack.errors` carrying the CLI's stderr.
Machine names are validated before any call. Shapes parsed are the documented ones:
``list -f json`` items, ``info -f json`` in both its 2025+ form ``{"record":..., "ip4":...}``
and the older flat record, ``config`` as ``key: value`` lines or bare values.
"""

from __future__ import annotations

import builtins
import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from .errors import (
    CommandTimeout,
    EngineUnavailable,
    InvalidName,
    MachineExists,
    MachineNotFound,
    OrbStackError,
    UnknownConfigKey,
    UnknownImage,
)
from .inputs import check_cloud_init, check_user, parse_image
from .names import validate_machine_name

DEFAULT_TIMEOUT = 120.0
CREATE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Image:
    distro: str
    version: str
    arch: str = ""
    variant: str = "default"


@dataclass(frozen=True)
class Machine:
    """One item of ``orbctl list -f json``."""
    id: str
    name: str
    image: Image
    state: str
    default_username: str | None = None
    isolated: bool = False
    builtin: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class MachineInfo:
    """``orbctl info NAME -f json``: the record plus addresses (absent while stopped)."""
    machine: Machine
    ip4: str | None = None
    ip6: str | None = None
    disk_size: int | None = None

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def domain(self) -> str:
        return f"{self.machine.name}.orb.local"


def parse_machine(record: dict[str, Any]) -> Machine:
    image = record.get("image") or {}
    config = record.get("config") or {}
    return Machine(
        id=str(record.get("id", "")),
        name=record["name"],
        image=Image(distro=image.get("distro", ""), version=image.get("version", ""),
                    arch=image.get("arch", ""), variant=image.get("variant", "default")),
        state=record.get("state", "stopped"),
        default_username=config.get("default_username"),
        isolated=bool(config.get("isolated", False)),
        builtin=bool(record.get("builtin", False)),
    )


def parse_info(data: dict[str, Any]) -> MachineInfo:
    """Parse both shapes of ``info -f json``: ``{"record": {...}, "ip4": ...}`` and flat."""
    record = data["record"] if isinstance(data.get("record"), dict) else data
    disk = data.get("disk_size")
    return MachineInfo(machine=parse_machine(record), ip4=data.get("ip4") or None,
                       ip6=data.get("ip6") or None,
                       disk_size=int(disk) if isinstance(disk, (int, float)) else None)


def parse_config(text: str) -> dict[str, str]:
    """Parse ``key: value`` lines (``config show``)."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            config[key.strip()] = value.strip()
    return config


def parse_config_value(key: str, text: str) -> str:
    """``config get KEY`` prints either the bare value or ``KEY: value``."""
    text = text.strip()
    prefix = f"{key}:"
    return text[len(prefix):].strip() if text.startswith(prefix) else text


def _error_from(argv: list[str], proc: subprocess.CompletedProcess[str]) -> OrbStackError:
    stderr = (proc.stderr or "").strip()
    last = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
    message = f"orbctl {' '.join(argv[1:3])}: {last}"
    kwargs: dict[str, Any] = dict(stderr=stderr, argv=argv, returncode=proc.returncode)
    if "machine not found" in stderr:
        return MachineNotFound(message, **kwargs)
    if "already exists" in stderr:
        return MachineExists(message, **kwargs)
    if "Unknown configuration key" in stderr:
        return UnknownConfigKey(message, **kwargs)
    if "invalid name" in stderr or "invalid machine name" in stderr:
        return InvalidName(message, **kwargs)
    if "unsupported distro" in stderr or "image not found" in stderr:
        return UnknownImage(message, **kwargs)
    return OrbStackError(message, **kwargs)


class Orbctl:
    """Client of one ``orbctl`` binary. ``binary`` may be a path; ``env`` extends os.environ."""

    def __init__(self, binary: str = "orbctl", *, timeout: float = DEFAULT_TIMEOUT,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.timeout = timeout
        self.env = {**os.environ, **env} if env else None

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float | None = None, check: bool = True,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, input=input,
                                  timeout=timeout or self.timeout, env=self.env)
        except FileNotFoundError:
            raise self._missing(argv) from None
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"orbctl {shlex.join(args)[:120]} did not finish in "
                                 f"{exc.timeout:.0f}s", argv=argv) from None
        if check and proc.returncode != 0:
            raise _error_from(argv, proc)
        return proc

    def _missing(self, argv: list[str]) -> EngineUnavailable:
        return EngineUnavailable(
            f"{self.binary!r} not found on PATH: install OrbStack (https://orbstack.dev) "
            "or use the docker backend (pytest --orbstack-backend=docker; pyinfra --data "
            "orbstack_backend=docker)", argv=argv)

    # -- machines ---------------------------------------------------------------------------
    def list(self, *, running_only: bool = False) -> list[Machine]:
        args = ["list", "-f", "json"] + (["-r"] if running_only else [])
        return [parse_machine(item) for item in json.loads(self._run(*args).stdout or "[]") or []]

    def info(self, name: str) -> MachineInfo:
        return parse_info(json.loads(self._run("info", validate_machine_name(name), "-f", "json").stdout))

    def exists(self, name: str) -> bool:
        validate_machine_name(name)
        return any(m.name == name for m in self.list())

    def create(self, image: str, name: str, *, arch: str | None = None, user: str | None = None,
               user_data: str | os.PathLike[str] | None = None,
               timeout: float = CREATE_TIMEOUT) -> MachineInfo:
        """Create and start a machine from ``image`` (``distro[:version]``).

        OrbStack's create occasionally hangs after succeeding, or fails transiently with
        "missing IP address"; both are handled once: a hung create whose machine is running is
        taken as done, a transient failure that left nothing behind is retried once.
        """
        validate_machine_name(name)
        parse_image(image)
        check_user(user)
        cloud_init = check_cloud_init(user_data)  # absolute: orbctl may run elsewhere
        args = ["create"]
        if arch:
            args += ["-a", arch]
        if user:
            args += ["-u", user]
        if cloud_init is not None:
            args += ["-c", cloud_init]
        args += [image, name]
        for attempt in (1, 2):
            try:
                self._run(*args, timeout=timeout)
                break
            except CommandTimeout:
                info = self._info_or_none(name)
                if info is None or not info.machine.running:
                    raise
                break
            except OrbStackError as exc:
                transient = "missing IP address" in exc.stderr
                if attempt == 1 and transient and self._info_or_none(name) is None:
                    time.sleep(1)
                    continue
                raise
        return self.info(name)

    def _info_or_none(self, name: str) -> MachineInfo | None:
        try:
            return self.info(name)
        except (MachineNotFound, CommandTimeout):
            return None

    def delete(self, *names: str) -> None:
        """Delete machines by name (``-f``: no prompt). Deleting by ID is never done."""
        if not names:
            raise ValueError("delete needs at least one machine name")
        self._run("delete", "-f", *map(validate_machine_name, names))

    def clone(self, source: str, new: str) -> MachineInfo:
        """Copy-on-write clone; OrbStack leaves the clone stopped."""
        self._run("clone", validate_machine_name(source), validate_machine_name(new),
                  timeout=CREATE_TIMEOUT)
        return self.info(new)

    def start(self, *names: str) -> None:
        self._lifecycle("start", names)

    def stop(self, *names: str) -> None:
        """Stop the named machines. Without a name orbctl stops all of OrbStack: refused here."""
        self._lifecycle("stop", names)

    def restart(self, *names: str) -> None:
        self._lifecycle("restart", names)

    def _lifecycle(self, verb: str, names: tuple[str, ...]) -> None:
        if not names:
            raise ValueError(f"{verb} needs at least one machine name")
        self._run(verb, *map(validate_machine_name, names))

    def rename(self, old: str, new: str) -> None:
        self._run("rename", validate_machine_name(old), validate_machine_name(new))

    def logs(self, name: str, *, all_boots: bool = False) -> str:
        return self._run("logs", validate_machine_name(name), *(["-a"] if all_boots else [])).stdout

    # -- OrbStack itself ----------------------------------------------------------------------
    def config_show(self) -> dict[str, str]:
        return parse_config(self._run("config", "show").stdout)

    def config_get(self, key: str) -> str:
        return parse_config_value(key, self._run("config", "get", key).stdout)

    def config_set(self, key: str, value: str) -> None:
        self._run("config", "set", key, str(value))

    def status(self) -> str:
        """``Running``, ``Stopped`` or ``Starting`` (orbctl exits 0, 1 or 2)."""
        proc = self._run("status", check=False)
        text = proc.stdout.strip()
        if text not in ("Running", "Stopped", "Starting"):
            raise _error_from([self.binary, "status"], proc)
        return text

    def version(self) -> str:
        """The version string, e.g. ``2.2.3`` from ``Version: 2.2.3 (2020300)``."""
        text = self._run("version").stdout
        for line in text.splitlines():
            if line.startswith("Version:"):
                return line.split()[1]
        return text.strip()

    # -- commands and files in a machine ---------------------------------------------------
    def run_argv(self, name: str, command: str, *, user: str | None = None,
                 workdir: str | None = None) -> builtins.list[str]:
        """argv running shell ``command`` in machine ``name`` (orbctl run starts no shell itself)."""
        argv = [self.binary, "run", "-m", validate_machine_name(name)]
        if user:
            argv += ["-u", user]
        if workdir:
            argv += ["-w", workdir]
        return argv + ["sh", "-c", command]

    def run(self, name: str, command: str, *, user: str | None = None, workdir: str | None = None,
            input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run shell ``command``; returns the process (exit code is the command's, not checked)."""
        argv = self.run_argv(name, command, user=user, workdir=workdir)
        return self._run(*argv[1:], timeout=timeout, check=False, input=input)

    def push(self, name: str, source: str, dest: str) -> None:
        """Copy a local file into the machine, as its default user (``cp`` semantics)."""
        self._run("push", "-m", validate_machine_name(name), source, dest)

    def pull(self, name: str, source: str, dest: str) -> None:
        """Copy a file out of the machine, read as its default user."""
        self._run("pull", "-m", validate_machine_name(name), source, dest)
