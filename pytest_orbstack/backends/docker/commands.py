"""Every ``docker`` command the package runs, as argv lists: the single definition used by the
Docker engine (executed directly), the pyinfra operations (yielded) and the facts.

Pure functions: no I/O and no validation (callers check inputs once). A machine is a container
with systemd as PID 1 (:data:`SYSTEMD_FLAGS`, never ``--privileged``) on the bridge network
:data:`NETWORK`, where other machines reach it as ``NAME.orb.local``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from pytest_orbstack.errors import InvalidInput, UnknownImage
from pytest_orbstack.model.inputs import image_codename
from pytest_orbstack.model.types import (
    NO_RESOURCES,
    EngineMachine,
    Image,
    MachineInfo,
    Resources,
    in_workdir,
    ready_command,
)

DOCKER = "docker"
LABEL = "pytest-orbstack"
NETWORK = "pytest-orbstack"
SYSTEMD_FLAGS = ("--cap-add", "SYS_ADMIN", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                 "--tmpfs", "/run", "--tmpfs", "/run/lock", "--security-opt", "seccomp=unconfined",
                 "--stop-signal", "SIGRTMIN+3")  # docker 20.10 refuses STOPSIGNAL in commit --change
# /tmp is a tmpfs, so what a golden machine leaves there does not reach its clones (a commit
# skips it), as on OrbStack, whose /tmp "does not survive machine stop/clone" (evidence G-probe)
TMP_FLAGS = ("--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777")
SETUP_DONE = "pytest-orbstack-setup-done"
SUDOERS = "/etc/sudoers.d/90-pytest-orbstack"
LIST_FORMAT = "\t".join(["{{.ID}}", "{{.Names}}", "{{.State}}",
                         *(f'{{{{.Label "{LABEL}.{key}"}}}}' for key in ("user", "image"))])


def run(machine: str, image_ref: str, labels: Mapping[str, str],
        resources: Resources = NO_RESOURCES) -> list[str]:
    """Start ``machine`` from ``image_ref`` with systemd as PID 1, on the machines' network,
    within ``resources``: Docker's own ``--cpus`` and ``--memory`` limits, root granted the
    capabilities (``NET_ADMIN``, ...) besides systemd's. (``disk_mib`` is refused earlier:
    overlay2 has no per-container size here; ``isolated`` needs nothing: no host files.)"""
    limits = limit_flags(resources)
    # --sig-proxy=false: while it starts the machine, the CLI would pass on a Ctrl-C it gets (the
    # terminal's SIGINT reaches the whole process group) to systemd, PID 1, which reboots on it
    argv = [DOCKER, "run", "-d", "--sig-proxy=false", "--name", machine, "--hostname", machine, *SYSTEMD_FLAGS,
            *TMP_FLAGS, *limits, *(a for c in resources.capabilities for a in ("--cap-add", c)),
            "--network", NETWORK, "--network-alias", f"{machine}.orb.local",
            "--add-host", "host.orb.internal:host-gateway"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    return [*argv, image_ref]


def limit_flags(resources: Resources) -> list[str]:
    """``--cpus`` and ``--memory`` for ``resources`` (the CPU and memory limits, if any)."""
    limits = ["--cpus", f"{resources.cpus:g}"] if resources.cpus else []
    return limits + (["--memory", f"{resources.memory_mib}m"] if resources.memory_mib else [])


INHERITED_LABELS = (f"{LABEL}.user", f"{LABEL}.image", f"{LABEL}.resources")  # by clones


def machine_labels(login: str, image: str, resources: Resources = NO_RESOURCES) -> dict[str, str]:
    """What a machine's labels record (and its clones inherit): made by this package, its
    default user, its image and its resources."""
    labels = {LABEL: "1", f"{LABEL}.user": login, f"{LABEL}.image": image}
    if resources != NO_RESOURCES:
        labels[f"{LABEL}.resources"] = json.dumps(dataclasses.asdict(resources))
    return labels


def check_docker_resources(resources: Resources) -> None:
    """InvalidInput for what the Docker engine cannot give a machine: a disk size (overlay2
    limits a container's size only on xfs with project quotas)."""
    if resources.disk_mib is not None:
        raise InvalidInput("disk= is not supported by the Docker engine (overlay2 has no "
                           "per-container size limit); use OrbStack or leave it out")


def label_resources(labels: Mapping[str, str]) -> Resources:
    """The resources :func:`machine_labels` recorded."""
    recorded = json.loads(labels.get(f"{LABEL}.resources") or "{}")
    return Resources(**{**recorded, "capabilities": tuple(recorded.get("capabilities", ()))})


def exec_(machine: str, command: str, *, user: str, workdir: str | None = None,
          stdin: bool = True) -> list[str]:
    """Run shell ``command`` in ``machine`` as ``user`` (stdin passed through with ``stdin``),
    in ``workdir`` (:func:`.types.in_workdir`) if given."""
    argv = [DOCKER, "exec", *(["-i"] if stdin else []), "-u", user]
    return [*argv, machine, "sh", "-c", in_workdir(command, workdir) if workdir else command]


def user_setup(user: str) -> str:
    """Shell that adds ``user`` with passwordless sudo (the OrbStack default user's rights)."""
    q = shlex.quote(user)
    return (f"(id -u {q} >/dev/null 2>&1 || useradd -m -s /bin/bash {q}) && "
            f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q} > {SUDOERS} && chmod 0440 {SUDOERS}")


def ready(machine: str, timeout: int = 90, setup: str | None = None) -> list[str]:
    """Wait until systemd in ``machine`` is up (prints ``running`` or ``degraded`` last),
    running ``setup`` as root first (it prints :data:`SETUP_DONE` when it succeeded)."""
    probe = f"until [ -S /run/systemd/private ]; do sleep 0.05; done; {ready_command(timeout)}"
    if setup is not None:
        probe = f"{{ {setup}; }} >&2 && echo {SETUP_DONE}; {probe}"
    return exec_(machine, probe, user="root", stdin=False)


def inspect(machine: str, fmt: str | None = None) -> list[str]:
    return [DOCKER, "container", "inspect", *(["--format", fmt] if fmt else []), machine]


def list_machines() -> list[str]:
    """Every container this package made, one tab-separated line each (:data:`LIST_FORMAT`)."""
    return [DOCKER, "ps", "-a", "--no-trunc", "--filter", f"label={LABEL}=1", "--format", LIST_FORMAT]


def start(machine: str) -> list[str]:
    return [DOCKER, "start", machine]


def stop(machine: str) -> list[str]:
    return [DOCKER, "stop", "-t", "10", machine]


def restart(machine: str) -> list[str]:
    """Stop as :func:`stop` does (the stop signal the machine was run with: SIGRTMIN+3, systemd's
    clean shutdown; killed after 10 s) and start it again: PID 1 is a new systemd."""
    return [DOCKER, "restart", "-t", "10", machine]


def delete(machine: str) -> list[str]:
    """Remove the container and its anonymous volumes."""
    return [DOCKER, "rm", "-f", "-v", machine]


def rename(old: str, new: str) -> list[str]:
    return [DOCKER, "rename", old, new]


def commit(container: str, image: str, *changes: str) -> list[str]:
    argv = [DOCKER, "commit"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, container, image]


def remove_image(image: str) -> list[str]:
    return [DOCKER, "rmi", image]


def session_images(session_id: str) -> list[str]:
    """The images labelled with a pytest-orbstack session (snapshots and clone images)."""
    return [DOCKER, "images", "--filter", f"label={LABEL}.session={session_id}", "--format",
            "{{.Repository}}:{{.Tag}}"]


def labelled_images() -> list[str]:
    """The ids of every image labelled with a pytest-orbstack session."""
    return [DOCKER, "images", "-q", "--no-trunc", "--filter", f"label={LABEL}.session"]


def image_inspect(*images: str) -> list[str]:
    return [DOCKER, "image", "inspect", *images]


def containers_from(image: str) -> list[str]:
    """The containers (any state) that run from ``image`` or an image built on it."""
    return [DOCKER, "ps", "-a", "-q", "--no-trunc", "--filter", f"ancestor={image}"]


def image_tags(repository: str) -> list[str]:
    return [DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}", repository]


def image_id(image: str) -> list[str]:
    return [DOCKER, "image", "inspect", "-f", "{{.Id}}", image]


def machine_image(image: str) -> str:
    """The stable tag of the prepared image machines of ``image`` run from (pyinfra operations
    refer to it; the engine keeps one tag per base image id and points this one at it)."""
    distro, codename = image_codename(image)
    return f"pytest-orbstack/{distro}:{codename}"


def tag(source: str, target: str) -> list[str]:
    return [DOCKER, "tag", source, target]


def pull(image: str) -> list[str]:
    return [DOCKER, "pull", image]


def import_rootfs(tag: str) -> list[str]:
    """Import a root file system tar from stdin as image ``tag`` that boots systemd."""
    return [DOCKER, "import", "--change", 'CMD ["/sbin/init"]', "-", tag]


def logs(machine: str, tail: int | None = None) -> list[str]:
    return [DOCKER, "logs", *(["--tail", str(tail)] if tail else []), machine]


def architecture() -> list[str]:
    return [DOCKER, "info", "-f", "{{.Architecture}}"]


def root_dir() -> list[str]:
    """The engine's data-root (on the engine's host)."""
    return [DOCKER, "info", "-f", "{{.DockerRootDir}}"]


def context_endpoint() -> list[str]:
    """The current docker context's engine address (``DOCKER_CONTEXT`` or ``docker context use``)."""
    return [DOCKER, "context", "inspect", "-f", "{{.Endpoints.docker.Host}}"]


def network_ids() -> list[str]:
    return [DOCKER, "network", "ls", "-q", "--no-trunc", "--filter", f"name=^{NETWORK}$"]


def network_create() -> list[str]:
    return [DOCKER, "network", "create", "--label", f"{LABEL}=1", NETWORK]


def network_remove(network_id: str) -> list[str]:
    return [DOCKER, "network", "rm", network_id]


def sleeper(container: str, image: str) -> list[str]:
    """A container that only sleeps, to prepare an image in."""
    return [DOCKER, "run", "-d", "--name", container, "--user", "root", "--entrypoint", "sleep",
            image, "infinity"]


# -- what docker prints, and the machine's default user ---------------------------------------
def parse_inspect(data: dict[str, Any], arch: str = "") -> MachineInfo | None:
    """``docker container inspect`` of a container -> its MachineInfo, or None if it is not a
    machine of this package."""
    labels = data["Config"].get("Labels") or {}
    if labels.get(LABEL) != "1":
        return None
    running = bool(data["State"]["Running"])
    net = ((data["NetworkSettings"].get("Networks") or {}).get(NETWORK) or {}) if running else {}
    machine = EngineMachine(id=data["Id"], name=data["Name"].lstrip("/"),
                            image=_image(labels.get(f"{LABEL}.image", ""), arch),
                            state="running" if running else "stopped",
                            default_username=labels.get(f"{LABEL}.user"))
    return MachineInfo(machine, ip4=net.get("IPAddress") or None, ip6=net.get("GlobalIPv6Address") or None)


def parse_list(out: str, arch: str = "") -> list[EngineMachine]:
    """:func:`list_machines`' lines -> the machines, sorted by name."""
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 4]
    return sorted((EngineMachine(id=cid, name=name, image=_image(image, arch),
                                 state="running" if state == "running" else "stopped", default_username=user or None)
                   for cid, name, state, user, image in rows), key=lambda m: m.name)


def machines_script(at: Callable[[str], str] = str) -> str:
    """The pyinfra fact's shell line (run on the engine's host): every machine, one line each."""
    return shlex.join(list_machines())


def machines_of(lines: list[str]) -> list[EngineMachine]:
    """The machines :func:`machines_script` printed (architecture unknown: empty)."""
    return parse_list("\n".join(lines))


def machine_script(name: str, at: Callable[[str], str] = str) -> str:
    """The pyinfra fact's shell line: machine ``name``'s inspect as JSON, or ``null`` (``at``, the
    engine's addressing, is the name itself here)."""
    return f"{shlex.join(inspect(name, fmt='{{json .}}'))} 2>/dev/null || echo null"


def machine_of(lines: list[str]) -> MachineInfo | None:
    # podman's inspect of a missing container prints [] before it fails (and `echo null` runs)
    data = json.loads("\n".join(line for line in lines if line != "[]") or "null")
    return parse_inspect(data) if data else None


def _image(label: str, arch: str) -> Image:
    """The Image a machine's image label names (distro and release empty for one not known)."""
    try:
        distro, codename = image_codename(label)
    except UnknownImage:
        distro, codename = "", ""
    return Image(distro, codename, arch)

