"""One Podman engine as a command line: :class:`~.docker.cli.DockerCLI` (the one subprocess
policy, the network, the images of :mod:`.docker.images`) with the ``podman`` binary, and what
Podman says differently: its error messages, its inspect output and its info.

Podman has no daemon: there is no "not answering" engine, only a missing binary or a container
runtime that refuses (its last line is the error). It runs rootful here (root runs it) or
rootless (docs/podman.md says what a rootless host needs).
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
from pathlib import Path
from typing import Any

from pytest_orbstack.backends.docker import commands as docker_cmd
from pytest_orbstack.backends.docker.cli import _ARCHITECTURES, ARCHES, DockerCLI
from pytest_orbstack.backends.podman import commands as cmd
from pytest_orbstack.backends.process import ErrorPatterns
from pytest_orbstack.errors import MachineExists, MachineNotFound
from pytest_orbstack.model.names import validate_machine_name

ERRORS = (("no such container", MachineNotFound), ("is already in use", MachineExists))
# Docker's words the shared code accepts (``ok=``) -> what Podman says in those cases
SYNONYMS = {"No such container": "no such container", "No such image": "image not known",
            "No such": "no such", "conflict": "image is in use", "being used": "image is in use",
            "not found": "network not found", "active endpoints": "network is being used"}
CAP_SYS_RESOURCE = 24


def may_raise_limits() -> bool:
    """Whether this process has CAP_SYS_RESOURCE (then Podman may raise a container's limits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return True


def own_limits() -> tuple[int | None, int | None]:
    """The open files and processes limits a machine keeps when Podman may not raise them:
    this process's own (processes at most 32768: runc failed above that here, measured)."""
    if may_raise_limits():
        return None, None
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    return nofile, min(nproc if nproc > 0 else 32768, 32768)


class PodmanCLI(DockerCLI):
    """The ``podman`` binary run with ``env`` (which extends this process's environment)."""

    install = "install Podman (apt-get install podman, or bash scripts/dev.sh podman)"
    engine = "podman"
    errors: ErrorPatterns = ERRORS
    unreachable: tuple[str, ...] = ()  # no daemon to be away
    # `podman exec` in a stopped machine (one line; the exit code is 125)
    not_running = re.compile(r"Error: can only create exec sessions on running containers: "
                             r"container state improper\s*")
    stopped_words = ("container state improper", "no such container")
    detached = True  # the client is the engine: a SIGKILL mid-change leaves it half-made (process.run)

    def __init__(self, podman: str = "podman", env: dict[str, str] | None = None) -> None:
        super().__init__(podman, env)
        self._gateway: str | None = None
        self.limits = own_limits()


    def argv(self, builder_argv: list[str]) -> list[str]:
        """A docker or podman builder's argv with this binary and :data:`.commands.GLOBAL`; a
        ``run`` (a machine, or the container an image is prepared in) keeps :attr:`limits`."""
        rest = builder_argv[1:]
        if rest[:len(cmd.GLOBAL)] == list(cmd.GLOBAL):
            rest = rest[len(cmd.GLOBAL):]
        if rest[:1] == ["run"]:
            rest = ["run", *cmd.ulimits(*self.limits), *rest[1:]]
        return [self.docker, *cmd.GLOBAL, *rest]

    def host(self) -> str | None:
        return None

    def host_flags(self) -> list[str]:
        """:data:`.commands.GLOBAL`, for the argv :meth:`DockerBackend.exec_argv` builds."""
        return list(cmd.GLOBAL)

    def call(self, argv: list[str], *, timeout: float | None = None, check: bool = True,
             ok: tuple[str, ...] = (), input: str | None = None) -> subprocess.CompletedProcess[str]:
        """As :meth:`DockerCLI.call`; each Docker word in ``ok`` also accepts Podman's (:data:`SYNONYMS`)."""
        return super().call(argv, timeout=timeout, check=check, input=input,
                            ok=(*ok, *(SYNONYMS[s] for s in ok if s in SYNONYMS)))

    def find(self, name: str) -> dict[str, Any] | None:
        """``podman container inspect`` of the container named exactly ``name``, or None."""
        proc = self.call(docker_cmd.inspect(validate_machine_name(name)), ok=("No such",))
        data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        return data[0] if data and data[0]["Name"].lstrip("/") == name else None

    def ensure_network(self) -> None:
        """The machines' network (as on Docker; Podman gives it DNS), and its gateway."""
        super().ensure_network()
        if self._gateway is None:
            self._gateway = (self.call(cmd.network_gateway()).stdout.split() or [""])[0]

    def gateway(self) -> str | None:
        """The machines' network's gateway address (the host, seen from a machine)."""
        self.ensure_network()
        return self._gateway or None

    def architecture(self) -> str:
        """The engine's architecture (``podman info``; amd64, arm64)."""
        key = (self.docker, "podman")
        if key not in _ARCHITECTURES:
            arch = self.call(cmd.architecture()).stdout.strip()
            _ARCHITECTURES[key] = ARCHES.get(arch, arch)
        return _ARCHITECTURES[key]
