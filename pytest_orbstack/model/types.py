"""The data every engine returns: a machine as the engine lists it, and its addresses."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

READY_STATES = ("running", "degraded")  # `systemctl is-system-running` of a usable machine


def ready_command(timeout: int) -> str:
    """Shell that waits until systemd is up, prints its state and exits 0 only when it is one
    of READY_STATES (``degraded``: up, with a failed unit)."""
    return (f"s=$(timeout {int(timeout)} systemctl is-system-running --wait); echo \"$s\"; "
            '[ "$s" = running ] || [ "$s" = degraded ]')


def in_workdir(command: str, workdir: str) -> str:
    """Shell that runs ``command`` in ``workdir``, or fails with 126 (as ``docker exec -w`` does,
    the shell's reason on stderr) when the machine has no such directory: the same on both
    engines (``orbctl run -w`` would run it in ``/`` instead, ``docker exec -w`` prints its
    reason on stdout)."""
    return f"cd {shlex.quote(workdir)} || exit 126; {command}"


@dataclass(frozen=True)
class Resources:
    """What a machine may use and how it is set apart, fixed at creation; clones inherit it.
    ``cpus``, ``memory_mib``, ``disk_mib``: limits (unset: the engine's default). ``isolated``:
    no access to the host's files (OrbStack ``--isolated``; Docker machines never have any).
    ``capabilities``: Linux capabilities granted to root (Docker; OrbStack machines are not
    restricted that way). ``vm``: a virtual machine with its own kernel instead of a system
    container (Incus ``--vm``, where the daemon can run VMs; the other engines refuse it).
    ``target``: the cluster member the machine is put on (Incus ``--target``; its clones too;
    the other engines refuse it)."""
    cpus: float | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    isolated: bool = False
    capabilities: tuple[str, ...] = ()
    vm: bool = False
    target: str | None = None

    @property
    def limits(self) -> bool:
        return any(v is not None for v in (self.cpus, self.memory_mib, self.disk_mib))


NO_RESOURCES = Resources()  # the engine's defaults


@dataclass(frozen=True)
class Image:
    distro: str
    version: str
    arch: str = ""
    variant: str = "default"


@dataclass(frozen=True)
class EngineMachine:
    """A machine as the engine lists it (for OrbStack: one item of ``orbctl list -f json``)."""
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
    """A machine with its addresses (absent while stopped)."""
    machine: EngineMachine
    ip4: str | None = None
    ip6: str | None = None
    disk_size: int | None = None

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def domain(self) -> str:
        return f"{self.machine.name}.orb.local"
