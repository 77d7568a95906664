"""Every ``podman`` command the package runs, as argv lists (the podman engine, the pyinfra
operations and the facts use them, as :mod:`pytest_orbstack.backends.docker.commands` for Docker).

Podman's CLI agrees with Docker's for nearly everything a machine needs (exec, inspect, start,
stop, rm, rename, commit, images, networks): those builders are Docker's, with ``podman`` as the
binary (:func:`flavour`). What differs, and why:

* systemd: ``--systemd=always`` instead of Docker's flags (:data:`~.docker.commands.SYSTEMD_FLAGS`:
  SYS_ADMIN, the host's cgroup tree mounted rw, tmpfs on /run): Podman itself mounts /run,
  /run/lock, /tmp, /var/log/journal and the cgroup tree the way systemd needs and sets the stop
  signal, without extra privileges;
* ``--log-level=error`` first: Podman prints its warnings (on a host whose cgroup tree it cannot
  write, one per command) to the same stderr as the machine's command;
* capabilities: Podman's defaults lack three of Docker's (AUDIT_WRITE, MKNOD, NET_RAW: ``ping``,
  ``su``'s audit messages): added, so a deploy sees the same machine on both engines;
* ``--add-host host.orb.internal:IP`` with the network's gateway: Podman 4.3 has no
  ``host-gateway`` word (it came in Podman 5.3);
* ``--ulimit``: rootful Podman raises a container's open files and processes limits above the
  caller's, which fails where the caller lacks CAP_SYS_RESOURCE (:func:`ulimits`);
* listing: ``podman ps`` has no ``.Label`` method (``index .Labels`` reads the same labels) and its
  ``.State`` is prose ("Up 7 seconds ago"): ``.ListContainer.State`` is the word (``running``);
* a name in ``podman container inspect`` has no leading ``/``.

``--sig-proxy=false``, ``--network-alias NAME.orb.local`` (the machines' network has DNS, from
aardvark-dns, as a Docker user network has) and the labels are the same words as on Docker.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping

from pytest_orbstack.backends.docker import commands as docker
from pytest_orbstack.backends.docker.commands import LABEL, NETWORK, TMP_FLAGS
from pytest_orbstack.model.types import NO_RESOURCES, Resources

PODMAN = "podman"
GLOBAL = ("--log-level=error",)
SYSTEMD_FLAGS = ("--systemd=always",)
DOCKER_DEFAULT_CAPS = ("AUDIT_WRITE", "MKNOD", "NET_RAW")  # Docker grants them, Podman not
LIST_FORMAT = "\t".join(["{{.ID}}", "{{.Names}}", "{{.ListContainer.State}}",
                         *(f'{{{{index .Labels "{LABEL}.{key}"}}}}' for key in ("user", "image"))])


def flavour(argv: list[str]) -> list[str]:
    """A Docker builder's argv as the same podman command."""
    return [PODMAN, *GLOBAL, *argv[1:]]


def ulimits(nofile: int | None, nproc: int | None) -> list[str]:
    """``--ulimit`` flags that keep a machine within the given limits (None: Podman's default).
    Rootful Podman asks for 1048576 open files and 4194304 processes; runc then fails ("error
    setting rlimit type 7: operation not permitted") where the caller may not raise its own."""
    flags = [f"nofile={nofile}:{nofile}"] if nofile else []
    flags += [f"nproc={nproc}:{nproc}"] if nproc else []
    return [a for flag in flags for a in ("--ulimit", flag)]


def run(machine: str, image_ref: str, labels: Mapping[str, str], resources: Resources = NO_RESOURCES,
        *, gateway: str | None = None) -> list[str]:
    """Start ``machine`` from ``image_ref`` with systemd as PID 1 (``--systemd=always``), on the
    machines' network with the alias ``NAME.orb.local``, within ``resources`` (as on Docker),
    ``host.orb.internal`` naming ``gateway``. (:class:`~.cli.PodmanCLI` adds :func:`ulimits`.)"""
    argv = [PODMAN, *GLOBAL, "run", "-d", "--sig-proxy=false", "--name", machine, "--hostname", machine,
            *SYSTEMD_FLAGS, *TMP_FLAGS, *docker.limit_flags(resources),
            *(a for c in (*DOCKER_DEFAULT_CAPS, *resources.capabilities) for a in ("--cap-add", c)),
            "--network", NETWORK, "--network-alias", f"{machine}.orb.local",
            *(["--add-host", f"host.orb.internal:{gateway}"] if gateway else [])]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    return [*argv, image_ref]


def list_machines() -> list[str]:
    """Every container this package made, one tab-separated line each (:data:`LIST_FORMAT`)."""
    return [PODMAN, *GLOBAL, "ps", "-a", "--no-trunc", "--filter", f"label={LABEL}=1", "--format", LIST_FORMAT]


def network_gateway() -> list[str]:
    return [PODMAN, *GLOBAL, "network", "inspect", "--format", "{{range .Subnets}}{{.Gateway}} {{end}}", NETWORK]


def architecture() -> list[str]:
    return [PODMAN, *GLOBAL, "info", "--format", "{{.Host.Arch}}"]


def inspect(machine: str, fmt: str | None = None) -> list[str]:
    return flavour(docker.inspect(machine, fmt))


def start(machine: str) -> list[str]:
    return flavour(docker.start(machine))


def stop(machine: str) -> list[str]:
    return flavour(docker.stop(machine))


def delete(machine: str) -> list[str]:
    return flavour(docker.delete(machine))


def rename(old: str, new: str) -> list[str]:
    return flavour(docker.rename(old, new))


def ready(machine: str, timeout: int = 90, setup: str | None = None) -> list[str]:
    return flavour(docker.ready(machine, timeout, setup))


def exec_(machine: str, command: str, *, user: str, workdir: str | None = None, stdin: bool = True) -> list[str]:
    return flavour(docker.exec_(machine, command, user=user, workdir=workdir, stdin=stdin))


# the pyinfra facts: podman's commands, Docker's output (the same inspect, the same list lines)
machines_of, machine_of = docker.machines_of, docker.machine_of


def machines_script(at: Callable[[str], str] = str) -> str:
    return shlex.join(list_machines())


def machine_script(name: str, at: Callable[[str], str] = str) -> str:
    return f"{shlex.join(inspect(name, fmt='{{json .}}'))} 2>/dev/null || echo null"
