"""The orbctl emulator's Incus substrate (emu_substrate.py): a machine is an Incus LXC system
container, as an OrbStack machine is an LXC container (docs/orbstack.md), in the per-home Incus
project ``orbemu-<homehash>`` (images, profiles, networks and storage those of ``default``).

Real here, by LXC itself: ``container=lxc`` in PID 1's environment, the machine's own UTS
namespace and hostname (the instance is named as the machine where Incus allows the name, else
``m-<id>``; the emulator sets the hostname of a renamed or oddly named one, as OrbStack's
``hostnamectl``), each machine's machine-id made at its first boot (a clone copies it),
``/sys`` and ``/proc/sys``, the devices and ``NAME.orb.local`` from the DNS of the home's own
Incus bridge ``orbemu<homehash>``.
As OrbStack (SRC scon/start.go): a machine is privileged (no user namespace) with no
``lxc.cap.drop`` (every capability the host has, ``/dev/net/tun`` and ``/dev/fuse`` usable),
``proc:rw sys:rw`` (Incus's own: ``mixed``), nesting allowed; an isolated one is unprivileged
(a user namespace restricts its capabilities);
``/tmp`` is a tmpfs LXC mounts (``lxc.mount.entry``), so empty after a stop and in a clone.
Emulated or different: ``host.orb.internal`` is the bridge's gateway, written to /etc/hosts;
``NAME.orb.local`` is the machine's own address (no OrbStack relay); the DNS server is the
bridge's dnsmasq (OrbStack's own is not there); a running machine renamed keeps its Incus
instance name (Incus renames only stopped instances) until it is renamed stopped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from emu_facts import E
from emu_home import HASH, LBL, Fail
from emu_incus_image import incus_image

NAME = "incus"
NOT_RUNNING = "Instance is not running"
INCUS = os.environ.get("ORBCTL_EMULATOR_INCUS") or "incus"
PROJECT = f"orbemu-{HASH}"
NETWORK = f"orbemu{HASH}"  # a bridge per home (15 characters at most): names are DNS names on it
# bridged traffic passes the host's FORWARD chain, whose policy Docker sets to DROP
FORWARD = (["-i", "orbemu+", "-j", "ACCEPT"],
           ["-o", "orbemu+", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])
INSTANCE_RE = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
TMPFS = "lxc.mount.entry = tmpfs tmp tmpfs rw,nosuid,nodev,mode=1777,create=dir 0 0"
KEY = f"user.{LBL}"


def incus(*args: str, check: bool = True, input=None, binary: bool = False, project: bool = True):
    """Run ``incus`` (in this home's project unless ``project`` is false); a failure raises :class:`Fail`."""
    argv = [INCUS, *(["--project", PROJECT] if project else []), *args]
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=not binary,
                              **({} if input is not None else {"stdin": subprocess.DEVNULL}))
    except FileNotFoundError:
        raise Fail(f"Incus is unavailable: {INCUS!r} not found (ORBCTL_EMULATOR_SUBSTRATE=incus needs it)")
    err = proc.stderr.decode(errors="replace") if binary else proc.stderr
    if check and proc.returncode:
        reason = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise Fail(f"{E}incus {args[0]}: {reason}")
    return proc


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # as a Docker image's
AS_USER = ('u=$1; shift; exec setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups --reset-env -- '
           f'env PATH={PATH} "$@"')


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` with that user's groups, HOME and SHELL (as ``docker exec -u``)."""
    return argv if user in (None, "root", "0") else ["sh", "-c", AS_USER, "sh", str(user), *argv]


# Without a terminal, ``incus exec`` starts the command in incusd's own process group (pgid 0 in
# the machine): in a privileged machine ``kill 0`` would end incusd. ``setsid`` (no fork: the
# command is not a group leader) gives it its own session, as a terminal session has.
SETSID = ["setsid", "-w"]


def execute(handle: str, argv: list[str], user: str | None = None, input=None, binary: bool = False,
            check: bool = False):
    return incus("exec", "-T", handle, "--", *SETSID, *as_user(user, argv), input=input, binary=binary,
                 check=check)


def exec_argv(handle: str, user: str, tty: bool) -> list[str]:
    return [INCUS, "--project", PROJECT, "exec", "-t" if tty else "-T", handle, "--",
            *([] if tty else SETSID), *as_user(user, [])]


NOT_FOUND_LINE = b"Error: Command not found\n"  # incus exec's own, after a command's exit status 127


def replace_process(argv: list[str]) -> None:
    """Become ``argv`` (``incus exec``), its stderr passed through a forked filter that drops
    the client's own last line :data:`NOT_FOUND_LINE` (OrbStack prints no such line)."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.close(write_end)
        filter_stderr(read_end)
        os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    os.execvp(argv[0], argv)


def filter_stderr(fd: int) -> None:
    """Copy ``fd`` to stderr as it comes, holding back only a line that is (so far) the
    client's :data:`NOT_FOUND_LINE`: written when more follows, dropped at the end."""
    held = b""
    while chunk := os.read(fd, 65536):
        held += chunk
        start = held.rfind(b"\n", 0, len(held) - 1) + 1 if held.endswith(b"\n") else held.rfind(b"\n") + 1
        tail = held[start:]
        keep = tail if NOT_FOUND_LINE.startswith(tail) else b""
        out = held[:len(held) - len(keep)]
        if out:
            os.write(2, out)
        held = keep
    if held != NOT_FOUND_LINE:
        os.write(2, held)


def machine(data: dict) -> dict:
    """A machine from ``incus list``'s record of an instance (its labels are ``user.*`` keys)."""
    lbls = {k[len("user."):]: v for k, v in data["config"].items() if k.startswith(KEY)}
    state = data.get("state") or {}
    addrs = [a for a in ((state.get("network") or {}).get("eth0") or {}).get("addresses", [])
             if a["scope"] == "global"]
    usage = ((state.get("disk") or {}).get("root") or {}).get("usage")
    return {"Id": data["name"], "name": lbls.get(f"{LBL}.name", data["name"]), "labels": lbls,
            "running": data["status"] == "Running", "size": usage,
            "ip4": next((a["address"] for a in addrs if a["family"] == "inet"), None),
            "ip6": next((a["address"] for a in addrs if a["family"] == "inet6"), None)}


def machines() -> list[dict]:
    proc = incus("list", "--format", "json", check=False)
    if proc.returncode:
        if "not found" in proc.stderr.lower():  # no project yet: no machines
            return []
        raise Fail(f"Incus is unavailable: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return [machine(d) for d in json.loads(proc.stdout) if d["config"].get(f"{KEY}.home") == HASH]


def lookup(name: str, size: bool = False) -> dict | None:
    c = next((c for c in machines() if c["name"] == name), None)
    if c is not None and size and c["size"] is None:
        c["size"] = disk_usage(c["Id"])
    return c


def disk_usage(handle: str) -> int | None:
    """The bytes of the machine's root filesystem, where Incus does not count them (a ``dir``
    pool; a btrfs pool at times: seen on a bare machine's first run, cause not found): ``du`` of
    its volume where Incus mounts every pool, ``$INCUS_DIR/storage-pools/POOL`` (a loop-backed
    pool's ``source`` is its image file), None where that is not readable."""
    pool = incus("profile", "device", "get", "default", "root", "pool", check=False, project=False).stdout.strip()
    mounted = Path(os.environ.get("INCUS_DIR", "/var/lib/incus"), "storage-pools", pool or "default")
    proc = subprocess.run(["du", "-sbx", str(mounted / "containers" / f"{PROJECT}_{handle}")],
                          capture_output=True, text=True)
    return int(proc.stdout.split()[0]) if proc.returncode == 0 and proc.stdout else None


def has_image(image: str) -> bool:
    distro, _, version = image.partition(":")
    return incus("image", "info", f"pytest-orbstack/{distro}/{version}", check=False, project=False).returncode == 0


def machine_image(image: str, cloud: bool) -> str:
    distro, _, version = image.partition(":")
    return incus_image(f"pytest-orbstack/{distro}/{version}", cloud, incus, gateway())


def gateway(network: str = "incusbr0") -> str:
    """A bridge's own address: its machines' DNS server and ``host.orb.internal``."""
    return incus("network", "get", network, "ipv4.address", project=False).stdout.strip().split("/")[0]


def ensure_home() -> None:
    """This home's project and bridge (``dns.domain orb.local``, as one Mac's OrbStack: Incus
    refuses a DNS name used twice on a network), and the host's FORWARD rules for them."""
    if incus("project", "show", PROJECT, check=False, project=False).returncode:
        incus("project", "create", PROJECT, "-c", "features.images=false", "-c", "features.profiles=false",
              "-c", "features.storage.volumes=false", "-c", "features.networks=false", project=False)
    if incus("network", "show", NETWORK, check=False, project=False).returncode:
        create_bridge()
    chain = "DOCKER-USER" if subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True).returncode == 0 \
        else "FORWARD"
    for rule in FORWARD:
        if subprocess.run(["iptables", "-C", chain, *rule], capture_output=True).returncode:
            subprocess.run(["iptables", "-I", chain, *rule], capture_output=True)


def create_bridge() -> None:
    """This home's bridge, on a /24 of 10.200.0.0/13 chosen by the home's hash (the next free
    one when taken; Incus's ``auto`` finds none on hosts with many networks)."""
    start = int(HASH, 16) % 2048
    for n in (start + i for i in range(16)):
        subnet = f"10.{200 + (n >> 8) % 8}.{n % 256}.1/24"
        proc = incus("network", "create", NETWORK, f"ipv4.address={subnet}", "ipv4.nat=true", "ipv6.address=none",
                     "dns.domain=orb.local", check=False, project=False)
        if proc.returncode == 0:
            return
    raise Fail(f"{E}incus network create: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")


def drop_home_if_unused() -> None:
    """Delete this home's project and bridge once it has no machine. Incus refuses a bridge's
    deletion now and then right after its last instance went (seen once under load in CI, the
    reason not kept): it is tried for up to 10 s, then the refusal is printed."""
    if machines():
        return
    incus("project", "delete", PROJECT, check=False, project=False)
    for _ in range(20):
        proc = incus("network", "delete", NETWORK, check=False, project=False)
        if proc.returncode == 0 or incus("network", "show", NETWORK, check=False, project=False).returncode:
            return
        time.sleep(0.5)
    print(f"{E}incus network delete {NETWORK}: {proc.stderr.strip()}", file=sys.stderr)


def instance_name(name: str, machine_id: str) -> str:
    """The machine's own name where Incus takes it and no instance has it, else ``m-<id>``."""
    if INSTANCE_RE.match(name) and incus("query", f"/1.0/instances/{name}", check=False).returncode:
        return name
    return f"m-{machine_id.lower()}"


def config_flags(config: dict) -> list[str]:
    return [a for k, v in config.items() for a in ("-c", f"{k}={v}")]


def create(name: str, lbls: dict, image: str, cpus: str | None, memory_mib: int | None,
           isolated: bool) -> str | None:
    """Launch the machine (the caller holds the home's lock); why it failed, or None."""
    ensure_home()
    config = {f"user.{k}": v for k, v in {**lbls, f"{LBL}.name": name}.items()}
    config.update({"limits.cpu": str(max(1, round(float(cpus))))} if cpus else {})
    config.update({"limits.memory": f"{memory_mib}MiB"} if memory_mib else {})
    if isolated:
        config["raw.lxc"] = TMPFS
    else:
        config.update({"security.privileged": "true", "security.nesting": "true",
                       "raw.lxc": f"lxc.cap.drop =\nlxc.mount.auto = proc:rw sys:rw\n{TMPFS}"})
    handle = instance_name(name, lbls[f"{LBL}.id"])
    proc = incus("launch", image, handle, "--network", NETWORK, *config_flags(config), check=False)
    if proc.returncode:
        incus("delete", "--force", handle, check=False)
        return f"setup: incus launch: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    add_host_gateway(handle)
    return None


def add_host_gateway(handle: str) -> None:
    """The bridge as ``host.orb.internal`` and as the DNS server (resolved is masked)."""
    script = ('grep -q " host.orb.internal$" /etc/hosts || printf "%s host.orb.internal\\n" "$1" >> /etc/hosts; '
              'if [ -L /etc/resolv.conf ] || grep -q "^nameserver" /etc/resolv.conf; then '
              'rm -f /etc/resolv.conf; printf "nameserver %s\\nsearch orb.local\\n" "$1" > /etc/resolv.conf; fi')
    execute(handle, ["sh", "-c", script, "sh", gateway(NETWORK)])


def clone(src: dict, new: str, lbls: dict) -> None:
    """A stopped copy of ``src`` (``incus copy``: its disk; the tmpfs /tmp is not on it)."""
    config = {f"user.{k}": v for k, v in {**lbls, f"{LBL}.name": new}.items()}
    incus("copy", src["Id"], instance_name(new, lbls[f"{LBL}.id"]), *config_flags(config))


def rename(c: dict, new: str) -> None:
    """The record renamed; a stopped instance too, when Incus takes the name."""
    incus("config", "set", c["Id"], f"{KEY}.name={new}")
    if not c["running"] and INSTANCE_RE.match(new) and new != c["Id"]:
        incus("rename", c["Id"], new, check=False)


def start(c: dict) -> None:
    """Start it, its instance renamed first to a name given while it ran (where Incus takes it)."""
    if c["name"] != c["Id"] and INSTANCE_RE.match(c["name"]) and \
            incus("rename", c["Id"], c["name"], check=False).returncode == 0:
        c["Id"] = c["name"]
    incus("start", c["Id"])


def stop(c: dict) -> None:
    if incus("stop", c["Id"], "--timeout=10", check=False).returncode:
        incus("stop", c["Id"], "--force")


def remove(c: dict) -> None:
    incus("delete", "--force", c["Id"])


def logs(c: dict) -> str:
    proc = incus("console", c["Id"], "--show-log", check=False)
    return proc.stdout
