"""Every ``orbctl`` command the package runs, as argv lists: the single definition used by the
OrbStack engine (executed directly), the pyinfra operations (yielded) and the facts.

Pure functions: no I/O and no validation (callers check inputs once, with
:mod:`pytest_orbstack.model.inputs` and :func:`pytest_orbstack.model.names.validate_machine_name`).
Flags come before positional arguments: orbctl parses flags non-interspersed
(mainuli/garm-provider-orbstack, internal/orbstack/cli.go).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from pytest_orbstack.model.types import (
    NO_RESOURCES,
    EngineMachine,
    Image,
    MachineInfo,
    Resources,
    in_workdir,
    ready_command,
)

ORBCTL = "orbctl"
HOME_FIRST = "cd ~ 2>/dev/null; "  # prefix of a command run without an explicit workdir


def create(image: str, machine: str, *, user: str | None = None, arch: str | None = None,
           cloud_init: str | None = None, resources: Resources = NO_RESOURCES) -> list[str]:
    """``orbctl create [flags] IMAGE NAME``; the 2.x flags ``--cpus``, ``--memory`` (MiB, a bare
    number), ``--disk`` (whole GiB, ``64G``) and ``--isolated`` (#2396, D, OX) only when asked
    for. The size forms are the ones a 2.2.3 user's script passes and checks in the machine
    (InSuperposition/firmament .mise/lib/orb.sh: ``--memory "$memory_mib"``, ``--disk
    "${disk}G"``; a disk of part of a GiB is refused first by the client: no public source
    shows another unit).
    ``capabilities`` have no flag: OrbStack machines drop none (OrbStack's own source,
    orbstack/swift-nio cheru/danny/next scon/start.go; isolated ones are restricted)."""
    argv = [ORBCTL, "create"]
    argv += ["-a", arch] if arch else []
    argv += ["-u", user] if user else []
    argv += ["-c", cloud_init] if cloud_init else []
    argv += ["--cpus", f"{resources.cpus:g}"] if resources.cpus else []
    argv += ["--memory", str(resources.memory_mib)] if resources.memory_mib else []
    argv += ["--disk", _gibibytes(resources.disk_mib)] if resources.disk_mib else []
    argv += ["--isolated"] if resources.isolated else []
    return [*argv, image, machine]


def _gibibytes(mib: int) -> str:
    return f"{mib // 1024}G"


def clone(source: str, machine: str) -> list[str]:
    return [ORBCTL, "clone", source, machine]


def start(machine: str) -> list[str]:
    return [ORBCTL, "start", machine]


def stop(machine: str) -> list[str]:
    """Stop one machine (a bare ``orbctl stop`` would stop all of OrbStack)."""
    return [ORBCTL, "stop", machine]


def restart(machine: str) -> list[str]:
    """Restart one machine (by name or ID; OrbStack's source, orbstack/swift-nio
    scon/cmd/scli/cmd/restart.go: no name and no ``--all`` is an error there)."""
    return [ORBCTL, "restart", machine]


def delete(machine: str) -> list[str]:
    return [ORBCTL, "delete", "-f", machine]


def rename(old: str, new: str) -> list[str]:
    return [ORBCTL, "rename", old, new]


def list_machines() -> list[str]:
    return [ORBCTL, "list", "-f", "json"]


def list_names() -> list[str]:
    return [ORBCTL, "list", "-q"]


def info(machine: str) -> list[str]:
    return [ORBCTL, "info", machine, "-f", "json"]


def config_show() -> list[str]:
    return [ORBCTL, "config", "show"]


def config_get(key: str) -> list[str]:
    return [ORBCTL, "config", "get", key]


def config_set(key: str, value: str) -> list[str]:
    return [ORBCTL, "config", "set", key, value]


def version() -> list[str]:
    return [ORBCTL, "version"]


def logs(machine: str) -> list[str]:
    return [ORBCTL, "logs", machine]


def exec_(machine: str, command: str, *, user: str | None = None,
          workdir: str | None = None) -> list[str]:
    """Run shell ``command`` in ``machine`` (``orbctl run`` starts no shell of its own), always
    in a Linux directory: ``workdir``, else the user's home (``/`` if it has none).

    Without ``-w``, ``orbctl run`` starts in the caller's current directory on the Mac, reached
    through the file share (maintainer in OrbStack issue #1661; docs example in #38), so relative
    paths would land in the developer's checkout. ``-w`` exists since OrbStack 1.5.0 (#1005).
    A directory the machine lacks becomes ``/`` without a word (OrbStack's source,
    orbstack/swift-nio cheru/danny/next scon/agent/process.go), so ``workdir`` is entered by
    the command itself (:func:`.types.in_workdir`).
    """
    argv = [ORBCTL, "run", "-m", machine]
    argv += ["-u", user] if user else []
    return [*argv, "-w", "/", "sh", "-c", in_workdir(command, workdir) if workdir else HOME_FIRST + command]


def ready(machine: str, timeout: int = 90) -> list[str]:
    """Wait until systemd in ``machine`` is up: prints ``running`` or ``degraded`` when ready."""
    return exec_(machine, ready_command(timeout), user="root")


def push(machine: str, source: str, dest: str) -> list[str]:
    """Copy a Mac file into ``machine`` (reads it through ``/mnt/mac``, OrbStack #406, #2469)."""
    return [ORBCTL, "push", "-m", machine, source, dest]


# -- what orbctl prints, and the pyinfra facts' shell lines (run on the OrbStack host) -----------
def parse_machine(record: dict[str, Any]) -> EngineMachine:
    image = record.get("image") or {}
    config = record.get("config") or {}
    return EngineMachine(
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


def machines_script(at: Callable[[str], str] = str) -> str:
    """Shell that prints every machine as JSON (:func:`machines_of` reads it)."""
    return shlex.join(list_machines())


def machines_of(lines: list[str]) -> list[EngineMachine]:
    """The machines :func:`machines_script` printed, less OrbStack's built-in ones."""
    return [m for m in map(parse_machine, json.loads("\n".join(lines) or "[]") or []) if not m.builtin]


def machine_script(name: str, at: Callable[[str], str] = str) -> str:
    """Shell that prints machine ``name`` as JSON, or ``null`` when there is none (``at``: the
    name itself on OrbStack)."""
    found = f"{shlex.join(list_names())} | grep -qxF {shlex.quote(name)}"
    return f"if {found}; then {shlex.join(info(name))}; else echo null; fi"


def machine_of(lines: list[str]) -> MachineInfo | None:
    data = json.loads("\n".join(lines) or "null")
    return parse_info(data) if data is not None else None
