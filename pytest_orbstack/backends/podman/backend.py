"""Machines on Podman: containers running systemd (``--systemd=always``) that behave like
OrbStack machines, as the Docker engine's do.

Podman's CLI agrees with Docker's for all a machine's life but the run itself, so this backend
is :class:`~.docker.backend.DockerBackend` with a :class:`~.cli.PodmanCLI`: the same prepared
images (built in Podman's own storage from the same debootstrap base, :mod:`.docker.images`),
the same labels, commits for clones, cloud-init and persistent shells; :mod:`.commands` says
where and why the commands differ. Rootful and rootless alike (docs/podman.md).
"""

from __future__ import annotations

import builtins
import shlex
import shutil

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.backends.docker.commands import label_resources
from pytest_orbstack.backends.podman import commands as cmd
from pytest_orbstack.backends.podman.cli import PodmanCLI
from pytest_orbstack.backends.process import answers


class PodmanBackend(DockerBackend):
    """Machines as systemd containers of Podman: its :class:`.PodmanCLI` runs ``podman`` with
    ``env`` (which extends this process's environment)."""

    name = "podman"
    client_program = cmd.PODMAN
    commands = cmd
    create_steps = Backend.create_steps  # one call of create: its run needs the network's gateway

    cli_class = PodmanCLI
    cli: PodmanCLI

    def __init__(self, podman: str = "podman", env: dict[str, str] | None = None) -> None:
        super().__init__(podman, env)

    @classmethod
    def answers(cls) -> bool:
        """Whether ``auto`` takes Podman: on a host without a ``docker`` command (Fedora, RHEL)
        whose ``podman info`` answers; a host with both keeps Docker (docs/design.md)."""
        return not shutil.which("docker") and answers(cmd.architecture(), settings.PROBE_TIMEOUT)

    def login_command(self, name: str) -> str:
        return f"podman exec -it {shlex.quote(name)} bash -l"

    def start_command(self, name: str) -> str:
        return f"podman start {shlex.quote(name)}"

    def _run_argv(self, name: str, image_ref: str, labels: dict[str, str]) -> builtins.list[str]:
        return cmd.run(name, image_ref, labels, label_resources(labels), gateway=self.cli.gateway())

    def _list_argv(self) -> builtins.list[str]:
        return cmd.list_machines()
