"""The orbctl emulator's Docker substrate (emu_substrate.py): a machine is a Docker container
running systemd as PID 1 (``--cap-add SYS_ADMIN --cgroupns=host``, the cgroup mount, tmpfs
/run, /run/lock and /tmp, ``seccomp=unconfined``, never ``--privileged``; stop signal
SIGRTMIN+3 so that ``stop`` halts systemd at once), named ``orbemu-<homehash>-<machine>`` and
labelled with its record, on the per-home bridge networks ``orbemu-<homehash>`` (alias
``NAME``) and ``orbemu-<homehash>-relay`` (alias ``NAME.orb.local``). What OrbStack's LXC gives
a machine is emulated here: ``container=lxc`` in PID 1's environment, the capabilities, the
devices, a writable ``/proc/sys`` (:func:`container_args`)."""

from __future__ import annotations

import json
import os
import subprocess

from emu_cloudinit import cloud_image
from emu_facts import E
from emu_guest import grantable_caps
from emu_home import HASH, LBL, Fail
from emu_image import machine_image as lxc_image

NAME = "docker"
NOT_RUNNING = "is not running"
DOCKER = os.environ.get("ORBCTL_EMULATOR_DOCKER") or "docker"
PREFIX, NETWORK, RELAY = f"orbemu-{HASH}-", f"orbemu-{HASH}", f"orbemu-{HASH}-relay"
SYSTEMD_FLAGS = ["--cap-add", "SYS_ADMIN", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                 "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:mode=1777",
                 "--security-opt", "seccomp=unconfined",
                 "--stop-signal", "SIGRTMIN+3"]  # SIGRTMIN+3 makes systemd halt at once
# /tmp is a tmpfs: empty after a stop and in a clone (G-probe: "/tmp does not survive machine
# stop/clone"); a commit does not copy it.


def docker(*args: str, check: bool = True, input=None, binary: bool = False):
    try:
        proc = subprocess.run([DOCKER, *args], input=input, capture_output=True, text=not binary)
    except FileNotFoundError:
        raise Fail(f"Docker is unavailable: {DOCKER!r} not found (the orbctl emulator needs Docker)")
    err = proc.stderr.decode(errors="replace") if binary else proc.stderr
    if proc.returncode and ("Cannot connect to the Docker daemon" in err or "error during connect" in err):
        raise Fail(f"Docker is unavailable: {err.strip().splitlines()[-1]}")
    if check and proc.returncode:
        reason = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise Fail(f"{E}docker {args[0]}: {reason}")
    return proc


def execute(handle: str, argv: list[str], user: str | None = None, input=None, binary: bool = False,
            check: bool = False):
    flags = ["-i"] if input is not None else []
    return docker("exec", *flags, *(["-u", user] if user else []), handle, *argv, input=input, binary=binary,
                  check=check)


def exec_argv(handle: str, user: str, tty: bool) -> list[str]:
    return [DOCKER, "exec", "-i", *(["-t"] if tty else []), "-u", user, handle]


def replace_process(argv: list[str]) -> None:
    os.execvp(argv[0], argv)


def machine(c: dict) -> dict:
    """A machine from ``docker inspect``'s record."""
    nets = c["NetworkSettings"]["Networks"] or {}
    net = nets.get(NETWORK) or next(iter(nets.values()), {})
    return {"Id": c["Id"], "name": c["Name"].lstrip("/")[len(PREFIX):], "labels": c["Config"]["Labels"] or {},
            "running": c["State"]["Status"] == "running", "ip4": net.get("IPAddress") or None,
            "ip6": net.get("GlobalIPv6Address") or None, "size": c.get("SizeRootFs")}


def machines() -> list[dict]:
    ids = docker("ps", "-aq", "--filter", f"label={LBL}.home={HASH}").stdout.split()
    found = json.loads(docker("inspect", "--type", "container", *ids).stdout) if ids else []
    return [machine(c) for c in found]


def lookup(name: str, size: bool = False) -> dict | None:
    proc = docker("inspect", "--type", "container", *(["--size"] if size else []), PREFIX + name, check=False)
    found = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return machine(found[0]) if found and (found[0]["Config"]["Labels"] or {}).get(LBL + ".home") == HASH else None


def has_image(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def machine_image(image: str, cloud: bool) -> str:
    image = lxc_image(image, docker)
    return cloud_image(image, docker) if cloud else image


def container_args(name: str, lbls: dict, image: str) -> list[str]:
    """A machine's ``docker run``/``create`` arguments. Root in a machine has every capability
    (SRC scon/start.go: no lxc.cap.drop, AppArmor unconfined; containerlab#2304: iptables
    works); an isolated machine's are restricted (SRC: a user namespace "to get capability
    restrictions"): here Docker's default set with systemd's SYS_ADMIN. Every machine's PID 1
    has ``container=lxc`` (LXC sets it; systemd-detect-virt says ``lxc``); non-isolated ones get
    ``/proc/sys`` writable (``proc:rw``), ``/dev/net/tun`` and ``/dev/fuse`` when the host has
    them (SRC addDevOptional) and AppArmor unconfined where the host runs AppArmor."""
    isolated = bool(lbls.get(f"{LBL}.isolated"))
    caps = [] if isolated else [a for cap in grantable_caps() for a in ("--cap-add", cap)]
    devices = [] if isolated else [a for dev in ("/dev/net/tun", "/dev/fuse") if os.path.exists(dev)
                                   for a in ("--device", dev)]
    unconfined = [] if isolated else ["--security-opt", "systempaths=unconfined"]
    args = ["--name", PREFIX + name, "--hostname", name[:64], "--network", NETWORK, "--network-alias", name,
            "--add-host", "host.orb.internal:host-gateway", "--env", "container=lxc", *SYSTEMD_FLAGS,
            "--security-opt", "apparmor=unconfined", *unconfined, *caps, *devices]
    for key, value in lbls.items():
        args += ["--label", f"{key}={value}"]
    return [*args, image]


def ensure_network() -> None:
    for net in (NETWORK, RELAY):
        if docker("network", "inspect", net, check=False).returncode:
            docker("network", "create", "--label", f"{LBL}.home={HASH}", net)


def drop_home_if_unused() -> None:
    if not machines():
        docker("network", "rm", NETWORK, RELAY, check=False)


def join_relay(container: str, name: str) -> None:
    """``NAME.orb.local`` is a per-machine relay address, not the machine's own IP (#2676;
    #2057: "not guaranteed to have the same IP"): here, the machine's address on a second
    network."""
    docker("network", "connect", "--alias", f"{name}.orb.local", RELAY, container)


def create(name: str, lbls: dict, image: str, cpus: str | None, memory_mib: int | None,
           isolated: bool) -> str | None:
    """Make and start the machine (the caller holds the home's lock); why it failed, or None.
    (No signal of the caller reaches a real OrbStack machine: orbctl asks a daemon.)"""
    limits = (["--cpus", cpus] if cpus else []) + (["--memory", f"{memory_mib}m"] if memory_mib else [])
    ensure_network()
    proc = docker("run", "-d", "--sig-proxy=false", *limits, *container_args(name, lbls, image), check=False)
    if not proc.returncode:
        join_relay(proc.stdout.strip(), name)
        return None
    reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
    return f"machine already exists: '{name}'" if "already in use" in reason else f"setup: docker run: {reason}"


def clone(src: dict, new: str, lbls: dict) -> None:
    """A stopped copy of ``src`` (its disk committed to an image; tmpfs /tmp is not on it)."""
    image = f"orbemu-clone-{HASH}:{lbls[LBL + '.id'].lower()}"
    docker("commit", src["Id"], image)
    try:
        ensure_network()
        join_relay(docker("create", *container_args(new, lbls, image)).stdout.strip(), new)
    except Fail:
        docker("rmi", image, check=False)
        raise


def rename(c: dict, new: str) -> None:
    docker("rename", c["Id"], PREFIX + new)
    for net in (NETWORK, RELAY):
        docker("network", "disconnect", net, c["Id"], check=False)
    docker("network", "connect", "--alias", new, NETWORK, c["Id"])
    join_relay(c["Id"], new)


def start(c: dict) -> None:
    docker("start", c["Id"])


def stop(c: dict) -> None:
    docker("stop", c["Id"])


def remove(c: dict) -> None:
    docker("rm", "-f", c["Id"])
    docker("rmi", f"orbemu-clone-{HASH}:{c['labels'][LBL + '.id'].lower()}", check=False)


def logs(c: dict) -> str:
    proc = docker("logs", c["Id"], check=False)
    return proc.stdout + proc.stderr
