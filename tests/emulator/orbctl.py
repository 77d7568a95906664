#!/usr/bin/env python3
"""An ``orbctl``/``orb`` emulator for tests: OrbStack's CLI on Linux, backed by Docker.

OrbStack runs only on macOS. This single file answers the ``orbctl`` commands the project uses
with OrbStack's output shapes, exit codes and error texts (see shared/orbstack-cli-facts.md),
while each "machine" is a real Docker container running systemd as PID 1:
``docker run -d --cap-add SYS_ADMIN --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
--tmpfs /run --tmpfs /run/lock --security-opt seccomp=unconfined`` (never ``--privileged``),
plus ``--stop-signal SIGRTMIN+3`` so that ``stop`` halts systemd at once instead of in 10 s.

Emulated: create (-a -u -c), list (-r -q -f json), info (-f json), delete (-f -a), start, stop,
restart, clone, rename, run (-m -u -w -s), push, pull, logs, config show|get|set, status,
version, default. ``orb ARGS`` (argv[0] named ``orb`` or ORBCTL_EMULATOR_AS_ORB=1) with a
non-subcommand first argument means ``orbctl run ARGS``.

State: containers are labelled ``orbctl-emulator=1`` and ``orbctl-emulator.home=<sha1(home)[:8]>``
and named ``orbemu-<homehash>-<machine>``; a per-home bridge network ``orbemu-<homehash>`` gives
each machine the DNS aliases ``NAME`` and ``NAME.orb.local``. ``<home>/config.json`` holds the
global config, the default machine and the OrbStack status; ``<home>/logs/<id>.log`` the console
log (cloud-init output) of each machine.

Environment variables:
  ORBCTL_EMULATOR_HOME             state directory (default ~/.orbctl-emulator)
  ORBCTL_EMULATOR_AS_ORB=1         ``orb`` semantics (also when argv[0] is named ``orb``)
  ORBCTL_EMULATOR_DEFAULT_USER     default user of ``create`` (else $USER unless root, else dev)
  ORBCTL_EMULATOR_INFO_SHAPE=flat  ``info -f json`` prints the pre-2025 flat record
  ORBCTL_EMULATOR_CONFIG_GET_STYLE=keyvalue  ``config get`` prints ``key: value``
  ORBCTL_EMULATOR_STATUS           forces the output of ``status`` (Running/Stopped/Starting)
  ORBCTL_EMULATOR_BOOT_TIMEOUT     seconds to wait for systemd at create/start (default 60)
  ORBCTL_EMULATOR_DOCKER           docker binary (default ``docker``)

Known differences from real OrbStack: only images present locally as ``<distro>:<codename>``
can be created (never pulled) and only for the host's architecture; addresses are Docker's
(no 192.168.139.x, no IPv6: ``ip6`` is left out); ``disk_size`` is the container's size;
``host.orb.internal`` is Docker's host gateway; no SSH, export/import, port forwarding or
``/mnt/mac``; cloud-init is emulated from the host (``#!`` scripts and ``#cloud-config``
``write_files``, ``packages``, ``runcmd`` only); ``push``/``pull`` copy single files only; a
renamed machine keeps its old hostname; ``run -s`` joins its arguments with spaces into one
login-shell command line (like ssh); ``stop`` without a name stops this home's machines only;
``run``/``push``/``pull`` start a stopped machine first; ``delete`` never prompts; ``logs`` of an
unknown machine prints the error but exits 0; a machine made with ``-c`` gets a stand-in
``/usr/local/bin/cloud-init`` that answers ``cloud-init status [--wait]`` (done/error).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

E = "[-32098] "
VERSION = "Version: 2.2.3 (2020300)"
DISTROS = ("alma alpine arch centos debian devuan fedora gentoo kali nixos openeuler opensuse "
           "oracle rocky ubuntu void").split()
CODENAMES = {"debian": ({"11": "bullseye", "12": "bookworm", "13": "trixie"}, "bookworm"),
             "ubuntu": ({"20.04": "focal", "22.04": "jammy", "24.04": "noble"}, "noble")}
RESERVED = {"default", "vm", "host", "services", "gateway", "k8s", "docker"}
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
CONFIG_DEFAULTS = {
    "app.start_at_login": "false", "cpu": "8", "docker.expose_ports_to_lan": "true",
    "docker.set_context": "true", "k8s.enable": "false", "k8s.expose_services": "false",
    "machines.expose_ports_to_lan": "true", "machines.forward_ports": "true",
    "memory_mib": "8192", "network.https": "true", "network.subnet4": "192.168.138.0/23",
    "network_bridge": "true", "network_proxy": "auto", "rosetta": "true", "setup.use_admin": "true"}
BOOT_TIMEOUT = "machine didn't start in 30s (missing IP address)"  # OrbStack's text, whatever the wait
STATUS_CODES = {"Running": 0, "Stopped": 1, "Starting": 2}
SYSTEMD_FLAGS = ["--cap-add", "SYS_ADMIN", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                 "--tmpfs", "/run", "--tmpfs", "/run/lock", "--security-opt", "seccomp=unconfined",
                 "--stop-signal", "SIGRTMIN+3"]  # SIGRTMIN+3 makes systemd halt at once
LBL = "orbctl-emulator"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DOCKER = os.environ.get("ORBCTL_EMULATOR_DOCKER") or "docker"
HOME = Path(os.environ.get("ORBCTL_EMULATOR_HOME") or "~/.orbctl-emulator").expanduser().absolute()
HASH = hashlib.sha1(str(HOME).encode()).hexdigest()[:8]
PREFIX, NETWORK = f"orbemu-{HASH}-", f"orbemu-{HASH}"
# Shell snippets get their values as positional parameters, never spliced into the text.
TILDE = 'case $p in "~") p=$HOME;; "~/"*) p=$HOME/${p#"~/"};; esac\n'
PUSH_SH = ('cd ~ 2>/dev/null || cd /; p=$1\n' + TILDE +
           'if [ -d "$p" ]; then p=${p%/}/$2; elif [ "$4" = multi ]; then\n'
           '  echo "cp: target \'$1\' is not a directory" >&2; exit 1; fi\n'
           'if [ -d "$p" ]; then echo "cp: cannot overwrite directory \'$p\' with non-directory" >&2; exit 1; fi\n'
           'new=; [ -e "$p" ] || new=1\n'
           'err=$(touch -- "$p" 2>&1) || { echo "cp: cannot create regular file \'$p\': ${err##*: }" >&2; exit 1; }\n'
           'cat > "$p" || exit 1\n[ -z "$new" ] || chmod "$3" -- "$p"\n')
PULL_SH = ('cd ~ 2>/dev/null || cd /; p=$1\n' + TILDE +
           'err=$(ls -d -- "$p" 2>&1) || { echo "cp: cannot stat \'$1\': ${err##*: }" >&2; exit 1; }\n'
           'if [ -d "$p" ]; then echo "cp: -r not specified; omitting directory \'$1\' '
           '(the orbctl emulator copies files only)" >&2; exit 1; fi\n'
           'if [ ! -r "$p" ]; then echo "cp: cannot open \'$1\' for reading: Permission denied" >&2; exit 1; fi\n'
           'exec cat -- "$p"\n')
USER_SH = ('id -u "$1" >/dev/null 2>&1 || useradd -m -s /bin/bash "$1" || exit 1\n'
           'f=/etc/sudoers.d/orbemu-$(printf %s "$1" | tr . _)\n'
           'printf \'%s ALL=(ALL) NOPASSWD:ALL\\n\' "$1" > "$f" && chmod 0440 "$f"\n')
CLOUD_INIT_SH = ('#!/bin/sh\n# cloud-init stand-in of the orbctl emulator: only "status" is supported\n'
                 'r=/var/lib/cloud/data/result.json\n[ "$1" = status ] || { echo "cloud-init: '
                 'only status is emulated" >&2; exit 1; }\nif [ ! -e $r ]; then echo "status: disabled"\n'
                 'elif grep -q \'"errors": \\[\\]\' $r; then echo "status: done"\n'
                 'else echo "status: error"; exit 1; fi\n')


class Fail(Exception):
    """A command failed: its text goes to stderr and orbctl exits 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Fail(f"Error: {message}")


def parse(verb: str, argv: list[str], *specs: str) -> argparse.Namespace:
    """Specs: ``-x/--long`` takes a value, ``-x/--long!`` is a switch, ``pos`` ``pos?`` ``pos*`` ``pos+``."""
    parser = Parser(prog=f"orbctl {verb}")
    for spec in specs:
        name, mark = spec.rstrip("!?*+"), spec[len(spec.rstrip("!?*+")):]
        if name.startswith("-"):
            parser.add_argument(*name.split("/"), action="store_true" if mark == "!" else "store")
        else:
            parser.add_argument(name, nargs=mark or None)
    return parser.parse_args(argv)


# -- docker and local state ------------------------------------------------------------------
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


@contextlib.contextmanager
def locked():
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def load_state() -> dict:
    try:
        return json.loads((HOME / "config.json").read_text())
    except FileNotFoundError:
        return {}


def update_state(change) -> None:
    with locked():
        state = load_state()
        state.setdefault("config", {})
        change(state)
        tmp = HOME / f".config.json.{os.getpid()}"
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(HOME / "config.json")


def set_status(status: str) -> None:
    if load_state().get("status", "Running") != status:
        update_state(lambda s: s.update(status=status))


def console_log(c: dict) -> Path:
    return HOME / "logs" / f"{labels(c)[LBL + '.id']}.log"


# -- machines ----------------------------------------------------------------------------------
def labels(c: dict) -> dict:
    return c["Config"]["Labels"] or {}


def name_of(c: dict) -> str:
    return c["Name"].lstrip("/")[len(PREFIX):]


def cname(name: str) -> str:
    return PREFIX + name


def running(c: dict) -> bool:
    return c["State"]["Status"] == "running"


def machines() -> list[dict]:
    ids = docker("ps", "-aq", "--filter", f"label={LBL}.home={HASH}").stdout.split()
    found = json.loads(docker("inspect", "--type", "container", *ids).stdout) if ids else []
    return sorted(found, key=name_of)


def lookup(name: str, size: bool = False) -> dict | None:
    proc = docker("inspect", "--type", "container", *(["--size"] if size else []), cname(name), check=False)
    found = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return found[0] if found and labels(found[0]).get(LBL + ".home") == HASH else None


def find(name: str, size: bool = False) -> dict:
    c = lookup(name, size)
    if c is None:
        raise Fail(f"{E}machine not found: '{name}'")
    return c


def username(c: dict, state: dict | None = None) -> str:
    config = (state if state is not None else load_state()).get("config", {})
    return config.get(f"machine.{name_of(c)}.username") or labels(c)[LBL + ".username"]


def record(c: dict, state: dict) -> dict:
    lb = labels(c)
    return {"id": lb[LBL + ".id"], "name": name_of(c),
            "image": {"distro": lb[LBL + ".distro"], "version": lb[LBL + ".version"],
                      "arch": lb[LBL + ".arch"], "variant": "default"},
            "config": {"isolated": False, "default_username": username(c, state)},
            "builtin": False, "state": "running" if running(c) else "stopped"}


def default_machine() -> str:
    names = [name_of(c) for c in machines()]
    wanted = load_state().get("default")
    if wanted in names:
        return wanted
    if not names:
        raise Fail(f"{E}no machines: create one first with 'orbctl create DISTRO NAME'")
    return names[0]


def new_id() -> str:
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def check_new_name(verb: str, name: str) -> None:
    if name.lower() in RESERVED:
        raise Fail(f"{E}{verb} '{name}': invalid name: '{name}' is reserved")
    if not NAME_RE.match(name) or len(name) > 63:
        raise Fail(f"{E}{verb} '{name}': invalid name: must match {NAME_RE.pattern} (at most 63 characters)")
    if lookup(name) is not None:
        raise Fail(f"{E}{verb} '{name}': machine already exists: '{name}'")


def container_args(name: str, lbls: dict, image: str) -> list[str]:
    args = ["--name", cname(name), "--hostname", name, "--network", NETWORK, "--network-alias", name,
            "--network-alias", f"{name}.orb.local", "--add-host", "host.orb.internal:host-gateway",
            *SYSTEMD_FLAGS]
    for key, value in lbls.items():
        args += ["--label", f"{key}={value}"]
    return [*args, image]


def ensure_network() -> None:
    if docker("network", "inspect", NETWORK, check=False).returncode:
        docker("network", "create", "--label", f"{LBL}.home={HASH}", NETWORK)


def drop_network_if_unused() -> None:
    if not machines():
        docker("network", "rm", NETWORK, check=False)


def wait_booted(container: str) -> bool:
    deadline = time.monotonic() + float(os.environ.get("ORBCTL_EMULATOR_BOOT_TIMEOUT") or 60)
    while True:
        proc = docker("exec", container, "systemctl", "is-system-running", check=False)
        if proc.stdout.strip() in ("running", "degraded"):
            return True
        if time.monotonic() >= deadline or "is not running" in proc.stderr:
            return False
        time.sleep(0.2)


def ensure_user(container: str, user: str) -> str | None:
    """Make ``user`` (passwordless sudo) if missing; returns what went wrong, if anything."""
    if user == "root":
        return None
    proc = docker("exec", container, "sh", "-c", USER_SH, "sh", user, check=False)
    return f"user '{user}': {proc.stderr.strip() or proc.stdout.strip()}" if proc.returncode else None


def start_machine(c: dict) -> None:
    set_status("Running")
    if running(c):
        return
    docker("start", c["Id"])
    override = load_state().get("config", {}).get(f"machine.{name_of(c)}.username")
    problem = BOOT_TIMEOUT if not wait_booted(c["Id"]) else override and ensure_user(c["Id"], override)
    if problem:
        raise Fail(f"{E}start '{name_of(c)}': setup: {problem}")


def remove_machine(c: dict) -> None:
    docker("rm", "-f", c["Id"])
    docker("rmi", f"orbemu-clone-{HASH}:{labels(c)[LBL + '.id'].lower()}", check=False)
    console_log(c).unlink(missing_ok=True)


def forget(state: dict, name: str, new: str | None = None) -> None:
    """Drop (or move to ``new``) the settings of machine ``name``."""
    for key in [k for k in state["config"] if k.startswith(f"machine.{name}.")]:
        value = state["config"].pop(key)
        if new:
            state["config"][f"machine.{new}." + key[len(f"machine.{name}."):]] = value
    if state.get("default") == name:
        state["default"] = new


# -- cloud-init ----------------------------------------------------------------------------------
def cloud_init_steps(data: bytes) -> list[tuple[str, list[str], bytes | None]]:
    text = data.decode(errors="replace")
    if text.startswith("#!"):
        script = "/var/lib/cloud/instance/scripts/part-001"
        return [("scripts_user", ["sh", "-c", 'cat > "$1" && chmod 700 "$1" && exec "$1"', "sh", script], data)]
    if not text.startswith("#cloud-config"):
        raise ValueError("unsupported user-data format (expected '#!' or '#cloud-config')")
    import yaml  # PyYAML: only needed for #cloud-config
    cfg = yaml.safe_load(text) or {}
    steps = []
    for f in cfg.get("write_files") or []:
        content = f.get("content", "")
        content = content.encode() if isinstance(content, str) else bytes(content)
        if str(f.get("encoding", "")).lower() in ("b64", "base64"):
            content = base64.b64decode(content)
        perms = f.get("permissions", "0644")
        perms = format(perms, "o") if isinstance(perms, int) else str(perms)
        redirect = ">>" if f.get("append") else ">"
        script = f'mkdir -p "$(dirname "$1")" && cat {redirect} "$1" && chmod "$2" "$1" && chown "$3" "$1"'
        steps.append(("write_files", ["sh", "-c", script, "sh", f["path"], perms,
                                      str(f.get("owner", "root:root"))], content))
    packages = ["=".join(map(str, p)) if isinstance(p, list) else str(p) for p in cfg.get("packages") or []]
    if packages:
        steps.append(("package_update_upgrade_install", ["sh", "-c", "apt-get update -q && DEBIAN_FRONTEND="
                      "noninteractive apt-get install -y -q " + " ".join(map(shlex.quote, packages))], None))
    lines = [shlex.join(map(str, c)) if isinstance(c, list) else str(c) for c in cfg.get("runcmd") or []]
    if lines:
        steps.append(("runcmd", ["sh", "-c", "\n".join(lines)], None))
    return steps


def run_cloud_init(c: dict, data: bytes) -> None:
    """Run user-data as root in the machine; failures go to the console log, never raised."""
    cid, log, errors = c["Id"], [], []
    docker("exec", "-i", cid, "sh", "-c", "mkdir -p /var/lib/cloud/seed/nocloud /var/lib/cloud/data "
           "/var/lib/cloud/instance/scripts /run/cloud-init && cat > /var/lib/cloud/seed/nocloud/user-data",
           input=data, binary=True, check=False)
    try:
        steps = cloud_init_steps(data)
    except Exception as exc:  # YAML errors, bad formats: cloud-init reports and goes on
        steps, errors = [], [f"user-data: {exc}"]
    for module, argv, stdin in steps:
        proc = docker("exec", "-i", cid, *argv, input=stdin or b"", binary=True, check=False)
        log.append((proc.stdout + proc.stderr).decode(errors="replace"))
        if proc.returncode:
            errors.append(f"{module}: exit status {proc.returncode}")
    result = json.dumps({"v1": {"datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]",
                                "errors": errors}}, indent=1)
    summary = f"Cloud-init finished: {'FAILED: ' + '; '.join(errors) if errors else 'done'}\n"
    output = "".join(log) + summary
    docker("exec", "-i", cid, "sh", "-c", 'cat > /var/log/cloud-init-output.log; printf %s "$1" | '
           'tee /run/cloud-init/result.json /var/lib/cloud/data/result.json >/dev/null; '
           '[ -e /usr/bin/cloud-init ] || { printf %s "$2" > /usr/local/bin/cloud-init; '
           'chmod 755 /usr/local/bin/cloud-init; }', "sh", result, CLOUD_INIT_SH,
           input=output.encode(), binary=True, check=False)
    path = console_log(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(output)


# -- commands ------------------------------------------------------------------------------------
def cmd_create(argv):
    a = parse("create", argv, "-a/--arch", "-u/--user", "-c/--user-data", "image", "name?")
    distro, _, version = a.image.partition(":")
    name = a.name or distro
    check_new_name("create", name)
    if distro not in DISTROS:
        raise Fail(f"{E}create '{name}': unsupported distro: '{distro}'")
    table, default = CODENAMES.get(distro, ({}, "latest"))
    version = table.get(version, version) or default
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(a.arch or "", a.arch or host_arch())
    if arch != host_arch():
        raise Fail(f"{E}create '{name}': unsupported architecture: '{a.arch}' "
                   f"(the orbctl emulator runs only the host's: {host_arch()})")
    image = f"{distro}:{version}"
    if docker("image", "inspect", image, check=False).returncode:
        raise Fail(f"{E}create '{name}': image not found: '{image}'")
    try:
        user_data = Path(a.user_data).read_bytes() if a.user_data else None
    except OSError as exc:
        raise Fail(f"{E}create '{name}': read cloud-init user data: {exc}")
    env_user = os.environ.get("USER")
    user = (a.user or os.environ.get("ORBCTL_EMULATOR_DEFAULT_USER")
            or (env_user if env_user and env_user != "root" else "dev"))
    lbls = {LBL: "1", f"{LBL}.home": HASH, f"{LBL}.id": new_id(), f"{LBL}.distro": distro,
            f"{LBL}.version": version, f"{LBL}.arch": arch, f"{LBL}.username": user}
    set_status("Running")
    with locked():
        ensure_network()
        proc = docker("run", "-d", *container_args(name, lbls, image), check=False)
    if proc.returncode:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise Fail(f"{E}create '{name}': " + (f"machine already exists: '{name}'" if "already in use" in reason
                                              else f"setup: docker run: {reason}"))
    c = find(name)
    problem = BOOT_TIMEOUT if not wait_booted(c["Id"]) else ensure_user(c["Id"], user)
    if problem:  # like OrbStack's failed creates, leave nothing behind
        with locked():
            remove_machine(c)
            drop_network_if_unused()
        raise Fail(f"{E}create '{name}': setup: {problem}")
    if user_data is not None:
        run_cloud_init(c, user_data)


def cmd_list(argv):
    a = parse("list", argv, "-r/--running!", "-q/--quiet!", "-f/--format")
    state = load_state()
    items = [record(c, state) for c in machines() if running(c) or not a.running]
    if a.quiet:
        for item in items:
            print(item["name"])
    elif a.format == "json":
        print(json.dumps(items))
    else:
        rows = [("NAME", "STATE", "DISTRO", "VERSION", "ARCH")] + [
            (i["name"], i["state"], i["image"]["distro"], i["image"]["version"], i["image"]["arch"]) for i in items]
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cmd_info(argv):
    a = parse("info", argv, "name", "-f/--format")
    c = find(a.name, size=True)
    rec = record(c, load_state())
    if os.environ.get("ORBCTL_EMULATOR_INFO_SHAPE") == "flat":
        doc = dict(rec)
    else:
        doc = {"record": rec, "disk_size": c.get("SizeRootFs")}
    if running(c):
        nets = c["NetworkSettings"]["Networks"] or {}
        net = nets.get(NETWORK) or next(iter(nets.values()), {})
        if net.get("IPAddress"):
            doc["ip4"] = net["IPAddress"]
        if net.get("GlobalIPv6Address"):
            doc["ip6"] = net["GlobalIPv6Address"]
    if a.format == "json":
        print(json.dumps(doc))
        return
    print(f"Name: {rec['name']}\nID: {rec['id']}\nState: {rec['state']}\nDistro: {rec['image']['distro']}\n"
          f"Version: {rec['image']['version']}\nArchitecture: {rec['image']['arch']}\n"
          f"Username: {rec['config']['default_username']}\nIP: {doc.get('ip4', '')}\n"
          f"Domain: {rec['name']}.orb.local")


def cmd_delete(argv):
    a = parse("delete", argv, "-f/--force!", "-a/--all!", "names*")
    if not a.names and not a.all:
        raise Fail("Error: requires at least 1 arg(s), only received 0")
    targets = machines() if a.all else [find(n) for n in dict.fromkeys(a.names)]
    with locked():
        for c in targets:
            remove_machine(c)
        drop_network_if_unused()
    update_state(lambda s: [forget(s, name_of(c)) for c in targets])


def cmd_lifecycle(verb):
    def run(names):
        for flag in (n for n in names if n.startswith("-")):
            raise Fail(f"Error: unknown flag: {flag}")
        if not names:  # real OrbStack starts/stops itself (stop: ALL machines). Clients never do this.
            if verb == "stop":
                for c in filter(running, machines()):
                    docker("stop", c["Id"])
            set_status("Running" if verb != "stop" else "Stopped")
            return
        targets = [find(n) for n in dict.fromkeys(names)]
        for c in targets:
            if verb in ("stop", "restart") and running(c):
                docker("stop", c["Id"])
            if verb in ("start", "restart"):
                start_machine(find(name_of(c)))
    return run


def cmd_clone(argv):
    a = parse("clone", argv, "old", "new")
    src = find(a.old)
    check_new_name("clone", a.new)
    lbls = {**labels(src), f"{LBL}.id": new_id()}
    image = f"orbemu-clone-{HASH}:{lbls[LBL + '.id'].lower()}"
    docker("commit", src["Id"], image)
    try:
        with locked():
            ensure_network()
            docker("create", *container_args(a.new, lbls, image))
    except Fail:
        docker("rmi", image, check=False)
        raise
    user = load_state().get("config", {}).get(f"machine.{a.old}.username")
    if user:
        update_state(lambda s: s["config"].update({f"machine.{a.new}.username": user}))


def cmd_rename(argv):
    a = parse("rename", argv, "old", "new")
    c = find(a.old)
    check_new_name("rename", a.new)
    docker("rename", c["Id"], cname(a.new))
    docker("network", "disconnect", NETWORK, c["Id"], check=False)
    docker("network", "connect", "--alias", a.new, "--alias", f"{a.new}.orb.local", NETWORK, c["Id"])
    update_state(lambda s: forget(s, a.old, a.new))


def parse_run_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """``run`` flags come only before the first non-flag argument (like OrbStack's)."""
    opts, i, names = {}, 0, {"-m": "machine", "--machine": "machine", "-u": "user", "--user": "user",
                             "-w": "workdir", "--workdir": "workdir"}
    while i < len(argv) and argv[i].startswith("-"):
        arg, i = argv[i], i + 1
        key, eq, value = arg.partition("=")
        if arg == "--":
            break
        if arg in ("-s", "--shell"):
            opts["shell"] = True
        elif key in names:
            if not eq:
                if i >= len(argv):
                    raise Fail(f"Error: flag needs an argument: {arg}")
                value, i = argv[i], i + 1
            opts[names[key]] = value
        elif arg[:2] in names and not arg.startswith("--"):
            opts[names[arg[:2]]] = arg[2:]
        else:
            raise Fail(f"Error: unknown flag: {arg}" if arg.startswith("--")
                       else f"Error: unknown shorthand flag: '{arg[1:2]}' in {arg}")
    return opts, argv[i:]


def cmd_run(argv):
    opts, command = parse_run_flags(argv)
    c = find(opts.get("machine") or default_machine())
    start_machine(c)
    user = opts.get("user") or username(c)
    args = [DOCKER, "exec", "-i", *(["-t"] if os.isatty(0) and os.isatty(1) else []), "-u", user]
    if opts.get("workdir"):
        args += ["-w", opts["workdir"]]
        cd = ""
    else:
        cd = "cd ~ 2>/dev/null || cd /; "
    if opts.get("shell") or not command:
        login = cd + 's=$(getent passwd "$(id -un)" | cut -d: -f7); exec "${s:-/bin/sh}" -l'
        command = ["sh", "-c", login + (' -c "$1"' if command else ""), "sh", " ".join(command)]
    elif cd:
        command = ["sh", "-c", cd + 'exec "$@"', "sh", *command]
    sys.stdout.flush()
    try:
        os.execvp(DOCKER, [*args, c["Id"], *command])
    except FileNotFoundError:
        raise Fail(f"Docker is unavailable: {DOCKER!r} not found (the orbctl emulator needs Docker)")


def copy_args(verb: str, argv: list[str]):
    a = parse(verb, argv, "-m/--machine", "paths+")
    c = find(a.machine or default_machine())
    start_machine(c)
    srcs, dest = (a.paths[:-1], a.paths[-1]) if len(a.paths) > 1 else (a.paths, None)
    return find(name_of(c)), srcs, dest


def cmd_push(argv):
    c, srcs, dest = copy_args("push", argv)
    status = 0
    for src in srcs:
        path = Path(src)
        if not path.exists() or path.is_dir():
            print(f"cp: cannot stat '{src}': No such file or directory" if not path.exists() else
                  f"cp: -r not specified; omitting directory '{src}' (the orbctl emulator copies files only)",
                  file=sys.stderr)
            status = 1
            continue
        mode = format(path.stat().st_mode & 0o777, "o")
        proc = docker("exec", "-i", "-u", username(c), c["Id"], "sh", "-c", PUSH_SH, "sh", dest or ".",
                      path.name, mode, "multi" if len(srcs) > 1 else "one", input=path.read_bytes(),
                      binary=True, check=False)
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        status = status or (1 if proc.returncode else 0)
    return status


def cmd_pull(argv):
    c, srcs, dest = copy_args("pull", argv)
    status, dest = 0, dest or "."
    if len(srcs) > 1 and not os.path.isdir(dest):
        raise Fail(f"cp: target '{dest}' is not a directory")
    for src in srcs:
        proc = docker("exec", "-u", username(c), c["Id"], "sh", "-c", PULL_SH, "sh", src,
                      binary=True, check=False)
        if proc.returncode:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
            status = 1
            continue
        target = os.path.join(dest, os.path.basename(src.rstrip("/"))) if os.path.isdir(dest) else dest
        try:
            Path(target).write_bytes(proc.stdout)
        except OSError as exc:
            print(f"cp: cannot create regular file '{target}': {exc.strerror}", file=sys.stderr)
            status = 1
    return status


def cmd_logs(argv):
    a = parse("logs", argv, "name", "-a/--all!")
    try:  # like OrbStack: errors are printed, the exit status stays 0
        c = find(a.name)
        proc = docker("logs", c["Id"], check=False)
        sys.stdout.write(proc.stdout + proc.stderr)
        if console_log(c).exists():
            sys.stdout.write(console_log(c).read_text(errors="replace"))
    except Fail as exc:
        print(exc, file=sys.stderr)


def config_keys(state: dict, ms: list[dict]) -> dict:
    values = {**CONFIG_DEFAULTS, **{k: v for k, v in state.get("config", {}).items() if k in CONFIG_DEFAULTS}}
    values.update({f"machine.{name_of(c)}.username": username(c, state) for c in ms})
    return dict(sorted(values.items()))


def machine_key(key: str) -> dict | None:
    m = re.fullmatch(r"machine\.(.+)\.username", key)
    return lookup(m.group(1)) if m else None


def cmd_config(argv):
    if not argv or argv[0] not in ("show", "get", "set"):
        raise Fail("Error: usage: orbctl config show|get KEY|set KEY VALUE")
    verb, args, state = argv[0], argv[1:], load_state()
    wanted = {"show": 0, "get": 1, "set": 2}[verb]
    if len(args) != wanted:
        raise Fail(f"Error: accepts {wanted} arg(s), received {len(args)}")
    if verb == "show":
        for key, value in config_keys(state, machines()).items():
            print(f"{key}: {value}")
        return
    key, c = args[0], None
    if key not in CONFIG_DEFAULTS:
        c = machine_key(key)
        if c is None:
            raise Fail(f"Unknown configuration key: {key}")
    if verb == "get":
        value = username(c, state) if c else config_keys(state, [])[key]
        print(f"{key}: {value}" if os.environ.get("ORBCTL_EMULATOR_CONFIG_GET_STYLE") == "keyvalue" else value)
        return
    value = args[1]
    if CONFIG_DEFAULTS.get(key) in ("true", "false"):
        value = value.lower()
        if value not in ("true", "false"):
            raise Fail(f"Invalid value for {key}: '{args[1]}' (expected true or false)")
    elif key in ("cpu", "memory_mib") and not value.isdigit():
        raise Fail(f"Invalid value for {key}: '{value}' (expected an integer)")
    problem = ensure_user(c["Id"], value) if c is not None and running(c) else None
    if problem:
        raise Fail(f"{E}config set '{key}': {problem}")
    update_state(lambda s: s["config"].update({key: value}))


def cmd_status(argv):
    status = os.environ.get("ORBCTL_EMULATOR_STATUS") or load_state().get("status", "Running")
    print(status)
    return STATUS_CODES.get(status, 1)


def cmd_version(argv):
    print(VERSION)


def cmd_default(argv):
    if len(argv) > 1:
        raise Fail(f"Error: accepts at most 1 arg(s), received {len(argv)}")
    if argv:
        find(argv[0])
        update_state(lambda s: s.update(default=argv[0]))
    elif machines():
        print(default_machine())


COMMANDS = {"create": cmd_create, "list": cmd_list, "ls": cmd_list, "info": cmd_info,
            "delete": cmd_delete, "rm": cmd_delete, "start": cmd_lifecycle("start"),
            "stop": cmd_lifecycle("stop"), "restart": cmd_lifecycle("restart"), "clone": cmd_clone,
            "rename": cmd_rename, "run": cmd_run, "push": cmd_push, "pull": cmd_pull, "logs": cmd_logs,
            "config": cmd_config, "status": cmd_status, "version": cmd_version, "default": cmd_default}
USAGE = ("Usage: orbctl COMMAND [ARGS]  (orbctl emulator for tests, backed by Docker)\n\nCommands:\n  "
         + "\n  ".join(sorted(COMMANDS)) + "\n")


def main(argv: list[str]) -> int:
    as_orb = Path(sys.argv[0]).stem == "orb" or os.environ.get("ORBCTL_EMULATOR_AS_ORB") == "1"
    if as_orb and (not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "help"))):
        argv = ["run", *argv]
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] not in COMMANDS:
        print(f'Error: unknown command "{argv[0]}" for "orbctl"\nRun \'orbctl --help\' for usage.',
              file=sys.stderr)
        return 1
    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except Fail as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
