"""The orbctl emulator's machines and state, shared by its commands (tests/support/orbctl_emulator/orbctl.py,
whose docstring names the public source of each behaviour). A machine is a container of the
substrate (emu_substrate.py: Docker or Incus) whose labels carry OrbStack's record; settings
(``orbctl config``, the default machine) live in ``$ORBCTL_EMULATOR_HOME/config.json``; errors
are :class:`Fail` (text to stderr, exit 1)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import secrets
import time
from pathlib import Path

import emu_facts as facts
from emu_facts import E
from emu_guest import boot_setup, normalized
from emu_home import HASH, HOME, LBL, Fail
from emu_substrate import substrate

# SRC scon/images/images.go DistroToImage
DISTROS = ("alma alpine arch centos debian devuan fedora gentoo kali nixos openeuler opensuse "
           "oracle rocky ubuntu void").split()
CODENAMES = {"debian": {"11": "bullseye", "12": "bookworm", "13": "trixie"},
             "ubuntu": {"20.04": "focal", "22.04": "jammy", "24.04": "noble"}}
RESERVED = {"default", "vm", "host", "services", "gateway", "k8s", "docker"}
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
CONFIG_DEFAULTS = facts.CONFIG_DEFAULTS
BOOT_TIMEOUT = facts.MISSING_IP
STATUS_CODES = {"Running": 0, "Stopped": 1, "Starting": 2}
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
__all__ = ["HASH", "LBL", "Fail"]


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


# -- local state -------------------------------------------------------------------------------
def execute(handle: str, argv: list[str], user: str | None = None, input=None, binary: bool = False,
            check: bool = False):
    """``argv`` in the machine ``handle`` (as ``user``): the substrate's CompletedProcess."""
    return substrate.execute(handle, argv, user=user, input=input, binary=binary, check=check)


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
    return c["labels"]


def name_of(c: dict) -> str:
    return c["name"]


def running(c: dict) -> bool:
    return c["running"]


def machines() -> list[dict]:
    return sorted(substrate.machines(), key=name_of)


def lookup(name: str, size: bool = False) -> dict | None:
    return substrate.lookup(name, size)


def find(name: str, size: bool = False) -> dict:
    c = lookup(name, size)
    if c is None:
        raise Fail(f"{E}machine not found: '{name}'")
    return c


def username(c: dict, state: dict | None = None) -> str:
    """The machine's default username as recorded (``config set machine.N.username`` changes
    only the record: SRC cmd/config_set.go)."""
    config = (state if state is not None else load_state()).get("config", {})
    return config.get(f"machine.{name_of(c)}.username") or labels(c)[LBL + ".username"]


def login(c: dict) -> str:
    """The Linux user the default username logs in as: the one setup made (normalised)."""
    return normalized(username(c))[0]


def record(c: dict, state: dict) -> dict:
    lb = labels(c)
    return {"id": lb[LBL + ".id"], "name": name_of(c),
            "image": {"distro": lb[LBL + ".distro"], "version": lb[LBL + ".version"],
                      "arch": lb[LBL + ".arch"], "variant": "default"},
            "config": {"isolated": setting(c, state, "isolated") == "true",
                       "forward_ssh_agent": setting(c, state, "forward_ssh_agent") == "true",
                       "isolate_network": setting(c, state, "isolate_network") == "true",
                       "default_username": username(c, state), **facts.PORTS, **limits(c, state)},
            "builtin": False, "state": state_of(c)}


def limits(c: dict, state: dict) -> dict:
    """record.config's limits from 2.2.0 (#789): ``cpu_limit``, ``memory_limit_mib``,
    ``disk_limit_bytes`` as numbers (ParkerRex/little-ci lib/orbstack-machine.sh reads all
    three on 2.2.3); one not set is left out (ASSUMED, as 2.2.3 leaves out empty ``mounts``)."""
    if not facts.has("limits"):
        return {}
    config = state.get("config", {})
    keys = {"cpu_limit": "cpu", "memory_limit_mib": "memory_mib", "disk_limit_bytes": "disk_bytes"}
    return {field: int(float(config[f"machine.{name_of(c)}.{key}"])) for field, key in keys.items()
            if config.get(f"machine.{name_of(c)}.{key}")}


def setting(c: dict, state: dict, key: str) -> str:
    return state.get("config", {}).get(f"machine.{name_of(c)}.{key}", "false")


def state_of(c: dict) -> str:
    """running/stopped; a started clone stays "provisioning" with ORBCTL_EMULATOR_CLONE_STATE=
    provisioning before 2.0, as OrbStack 1.11.1 showed while it ran commands (#1973); SRC
    716aab671 (2025-06-05) made only create provisioning, clones and imports never."""
    if not running(c):
        return "stopped"
    clone_state = os.environ.get("ORBCTL_EMULATOR_CLONE_STATE") if facts.version_tuple() < (2, 0, 0) else None
    return clone_state if clone_state and labels(c).get(LBL + ".clone") else "running"


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
    """SRC scon/create.go validateContainerName (scon/types/names.go's rule and list, exact
    names, no length limit) and beginCreate's existing-name check. Only Create's errors get
    "create 'N': " (rpc_server.go); clone's come raw and rename's name clash is its own
    (scon/rename.go, ``fmt.Errorf("machine '%q' already exists")``)."""
    if not NAME_RE.match(name) or name in RESERVED:
        raise Fail(E + (f"create '{name}': " if verb == "create" else "") + f"invalid machine name '{name}'")
    if lookup(name) is not None:
        raise Fail(E + {"create": f"create '{name}': machine already exists: '{name}'",
                        "rename": f"machine '{json.dumps(name)}' already exists"}.get(
                            verb, f"machine already exists: '{name}'"))


def wait_booted(container: str) -> bool:
    deadline = time.monotonic() + float(os.environ.get("ORBCTL_EMULATOR_BOOT_TIMEOUT") or 60)
    while True:
        proc = execute(container, ["systemctl", "is-system-running"])
        if proc.stdout.strip() in ("running", "degraded"):
            return True
        if time.monotonic() >= deadline or substrate.NOT_RUNNING in proc.stderr:
            return False
        time.sleep(0.2)


def start_machine(c: dict) -> None:
    """Start a stopped machine (a running one is left alone: SRC scon/start.go startLocked)."""
    set_status("Running")
    if running(c):
        return
    if labels(c).get(LBL + ".uts") == "bad":  # SRC start.go: lxc.uts.name, set at every start
        raise Fail(f"{E}{facts.UTS_NAME_FAILED}")
    substrate.start(c)
    if not wait_booted(c["Id"]):
        raise Fail(f"{E}start '{name_of(c)}': setup: {BOOT_TIMEOUT}")
    boot_setup(execute, c["Id"], name_of(c), bool(labels(c).get(LBL + ".isolated")))


def remove_machine(c: dict) -> None:
    substrate.remove(c)
    console_log(c).unlink(missing_ok=True)


def forget(state: dict, name: str, new: str | None = None) -> None:
    """Drop (or move to ``new``) the settings of machine ``name``."""
    for key in [k for k in state["config"] if k.startswith(f"machine.{name}.")]:
        value = state["config"].pop(key)
        if new:
            state["config"][f"machine.{new}." + key[len(f"machine.{name}."):]] = value
    if state.get("default") == name:
        state["default"] = new
