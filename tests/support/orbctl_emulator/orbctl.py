#!/usr/bin/env python3
"""An ``orbctl``/``orb`` emulator for tests: OrbStack's CLI on Linux, backed by Docker or Incus.

OrbStack runs only on macOS. This file (the commands; machines and state in emu_machines.py,
``run``/``push``/``pull`` in emu_files.py) answers the ``orbctl`` commands the project uses with
OrbStack's output shapes, exit codes and error texts, each taken from a public source recorded
in tests/contracts/orbstack (tags as in emu_facts.py: #N is orbstack/orbstack issue N; G-cli,
G-probe, B, TF, S the projects named there) or marked ASSUMED. Each "machine" is a real container running
systemd as PID 1 on the substrate ``ORBCTL_EMULATOR_SUBSTRATE`` names (emu_substrate.py): a
Docker container (emu_docker.py, the default) or an Incus LXC system container (emu_incus.py:
what an OrbStack machine is, so ``container=lxc``, the hostname, /tmp, the devices and the
capabilities are LXC's own; docs/orbstack.md says what stays emulated there).

Sourced behaviour: create flags before image and name (#2107, TF, G-cli) with ``--cpus
--memory --disk`` (from 2.2.0, #789) ``--isolated --isolate-network`` (from 2.1.0, #2396)
``--forward-ssh-agent --mount --user-data``; "image not found" (#1441, #2363; Ubuntu 20.04
removed, #2075); failed creates leave nothing (#2653, #2213); ``list``/``info -f json`` records
(G-cli, B; limits in record.config on 2.2.3: little-ci); the text list (#323); not-found text
and exit 1 (B); clones stopped, named as their hostname, with an empty /tmp (G-probe),
"provisioning" only before 2.0 with the knob (#1973; SRC 716aab671); ``run`` in the caller's
directory (#1661), ``/`` when the machine lacks it (SRC), its flags (SRC cmd/run.go); stdin and
exit codes passed through (G-probe, B); ``NAME.orb.local`` on a relay network (#2676, #2057);
push through ``/mnt/mac`` (#406), as root from 2.2.3 (#407; root ASSUMED); pull on isolated
machines before 2.2.0 fails (#2469); ``delete <ID>`` panics on 2.2.1-2.2.3 (B, G-cli, FIRM);
clone from 2.0 (#654); config keys (S, TF, G-cli; defaults in emu_facts.py); ``config get``
prints the bare value (little-ci, 2.2.3); ``stop`` without a name stops everything (G-cli).
From OrbStack's own source (SRC, emu_facts.py): the distros; the name rule (no length limit:
65+ characters fail at the first start, LXC's hostname limit) and the error texts of create,
clone and rename; rename changes the hostname, to the same name it does nothing; ``start``,
``stop`` and ``restart`` (emu_lifecycle.py); ``run``/``push``/``pull`` start a stopped machine (scon/ssh.go); ``logs``
prints an error on stdout and exits 0; text ``info``; ``status`` exit codes; cloud-init before
the default user, its failure only logged, a ``power_state`` reboot cancelling create before
2.2.2 (#2555); the default user (emu_guest.py: normalised name, the Mac's uid as uid and gid,
admin groups, ``/etc/sudoers.d/orbstack``, image users removed); what a machine looks like
inside (container=lxc, tmpfs /tmp, writable /proc/sys and /sys, /dev/net/tun, /dev/fuse,
every capability unless isolated); the Debian image is the lxc-ci default build (emu_image.py).

State: containers are labelled ``orbctl-emulator=1`` and ``orbctl-emulator.home=<sha1(home)[:8]>``
(on Incus as ``user.*`` keys, in the project ``orbemu-<homehash>``); Docker's are named
``orbemu-<homehash>-<machine>`` on per-home bridge networks ``orbemu-<homehash>`` (alias
``NAME``) and ``orbemu-<homehash>-relay`` (alias ``NAME.orb.local``). ``<home>/config.json`` holds
the config, the default machine and the OrbStack status; ``<home>/logs/<id>.log`` the console
log (cloud-init output) of each machine.

Environment variables:
  ORBCTL_EMULATOR_HOME             state directory (default ~/.orbctl-emulator)
  ORBCTL_EMULATOR_VERSION          the OrbStack version emulated (default 2.2.3)
  ORBCTL_EMULATOR_AS_ORB=1         ``orb`` semantics (also when argv[0] is named ``orb``)
  ORBCTL_EMULATOR_DEFAULT_USER     default user of ``create`` (else $USER unless root, else dev)
  ORBCTL_EMULATOR_UID              the Mac user's uid (else the caller's if >= 500, else 501)
  ORBCTL_EMULATOR_INFO_SHAPE=flat  ``info -f json`` prints the bare record, as before SRC
                                   65578e194 (2025-02-05)
  ORBCTL_EMULATOR_CONFIG_GET_STYLE=keyvalue  ``config get`` prints ``key: value``
  ORBCTL_EMULATOR_CLONE_STATE=provisioning   started clones report it, before 2.0 (#1973)
  ORBCTL_EMULATOR_STATUS           forces the output of ``status`` (Running/Stopped/Starting)
  ORBCTL_EMULATOR_BOOT_TIMEOUT     seconds to wait for systemd at create/start (default 60)
  ORBCTL_EMULATOR_SUBSTRATE        ``docker`` (default) or ``incus``: what machines are
  ORBCTL_EMULATOR_DOCKER           docker binary (default ``docker``)
  ORBCTL_EMULATOR_INCUS            incus binary (default ``incus``)

Known differences from real OrbStack (see docs/orbstack.md and the known gaps of
test_emulator_contracts.py): only local ``<distro>:<codename>`` images of the host's
architecture (no downloads, no image index); Docker's addresses (no IPv6); ``disk_size`` is the
container's size and ``--disk`` is recorded, not enforced; no SSH, export/import, port
forwarding, ``ORBENV`` or ``/mnt/mac``; cloud-init never fails create (#1446 shows real failures); AppArmor is
"unconfined" only where the host runs AppArmor; ``push``/``pull`` copy single files;
``run -s`` joins its arguments into one login-shell command line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import emu_facts as facts
from emu_config import cmd_config
from emu_create import cmd_create
from emu_facts import E
from emu_files import cmd_pull, cmd_push, cmd_run
from emu_guest import boot_setup
from emu_lifecycle import cmd_lifecycle
from emu_machines import (
    LBL,
    NAME_RE,
    RESERVED,
    STATUS_CODES,
    Fail,
    check_new_name,
    console_log,
    default_machine,
    execute,
    find,
    forget,
    labels,
    load_state,
    locked,
    lookup,
    machines,
    name_of,
    new_id,
    parse,
    record,
    remove_machine,
    running,
    update_state,
)
from emu_substrate import substrate


# -- commands ------------------------------------------------------------------------------------
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
        rows = [("NAME", "STATE", "DISTRO", "VERSION", "ARCH"), ("----", "-----", "------", "-------", "----")] + [
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
        doc = {"record": rec, "disk_size": c["size"]}
    if running(c):
        doc.update({k: c[k] for k in ("ip4", "ip6") if c[k]})
    if a.format == "json":
        print(json.dumps(doc))
        return
    # SRC scon/cmd/scli/cmd/info.go: blocks separated by blank lines, sizes in SI units
    text = (f"ID: {rec['id']}\nName: {rec['name']}\nState: {rec['state']}\n\nDistro: {rec['image']['distro']}\n"
            f"Version: {rec['image']['version']}\nArchitecture: {rec['image']['arch']}\n")
    if isinstance(doc.get("disk_size"), int):
        text += f"\nDisk usage: {si_bytes(doc['disk_size'])}\n"
    if "ip4" in doc:
        text += f"\nIPv4: {doc['ip4']}\n"
    if "ip6" in doc:
        text += f"IPv6: {doc['ip6']}\n"
    print(text)


def si_bytes(n: int) -> str:
    """SRC cliutil.ByteCountSI: ``999 B``, ``1.2 kB``, ``3.4 GB``."""
    if n < 1000:
        return f"{n} B"
    div, exp = 1000, 0
    while n / div >= 1000 and exp < 5:
        div, exp = div * 1000, exp + 1
    return f"{n / div:.1f} {'kMGTPE'[exp]}B"


def cmd_delete(argv):
    a = parse("delete", argv, "-f/--force!", "-a/--all!", "names*")
    if not a.names and not a.all:
        raise Fail("Error: requires at least 1 arg(s), only received 0")
    targets = machines() if a.all else [find_for_delete(n) for n in dict.fromkeys(a.names)]
    with locked():
        for c in targets:
            remove_machine(c)
        substrate.drop_home_if_unused()
    update_state(lambda s: [forget(s, name_of(c)) for c in targets])


def find_for_delete(name: str) -> dict:
    """A machine by name, or by ID, whose deletion panics on 2.2.1-2.2.3 (facts.DELETE_BY_ID_PANICS)."""
    c = lookup(name)
    if c is not None:
        return c
    by_id = [m for m in machines() if labels(m)[LBL + ".id"] == name]
    low, high = facts.DELETE_BY_ID_PANICS
    if by_id and low <= facts.version_tuple() <= high:
        print(facts.DELETE_PANIC, file=sys.stderr)
        sys.exit(2)
    return by_id[0] if by_id else find(name)


def cmd_clone(argv):
    a = parse("clone", argv, "old", "new")
    src = find(a.old)
    check_new_name("clone", a.new)
    lbls = {**labels(src), f"{LBL}.id": new_id(), f"{LBL}.clone": "1",
            **({f"{LBL}.uts": "bad"} if len(a.new) > 64 else {})}  # made; its start fails (SRC)
    with locked():
        substrate.clone(src, a.new, lbls)
    inherited = {k.replace(f"machine.{a.old}.", f"machine.{a.new}.", 1): v  # G-probe: settings inherited
                 for k, v in load_state().get("config", {}).items() if k.startswith(f"machine.{a.old}.")}
    if inherited:
        update_state(lambda s: s["config"].update(inherited))


def cmd_rename(argv):
    """SRC scon/rename.go: the new name checked, the same name a no-op, lxc.uts.name set (65+
    characters fail there), then the hostname: ``hostnamectl`` in a running machine, the
    files (``/etc/hostname``, the ``127.0.1.1`` line of ``/etc/hosts``) in a stopped one."""
    a = parse("rename", argv, "old", "new")
    c = find(a.old)
    if NAME_RE.match(a.new) and a.new not in RESERVED and a.new == name_of(c):
        return
    check_new_name("rename", a.new)
    if len(a.new) > 64:
        raise Fail(E + facts.UTS_FAILED)
    substrate.rename(c, a.new)
    if running(c):
        boot_setup(execute, c["Id"], a.new, bool(labels(c).get(LBL + ".isolated")))
    update_state(lambda s: forget(s, a.old, a.new))


def cmd_logs(argv):
    a = parse("logs", argv, "name", "-a/--all!")
    try:  # SRC cmd/logs.go: an error is printed on stdout (red.Println), the exit status stays 0
        c = find(a.name)
        sys.stdout.write(substrate.logs(c))
        if console_log(c).exists():
            sys.stdout.write(console_log(c).read_text(errors="replace"))
    except Fail as exc:
        print(exc)


def cmd_status(argv):
    status = os.environ.get("ORBCTL_EMULATOR_STATUS") or load_state().get("status", "Running")
    print(status)
    return STATUS_CODES.get(status, 1)


def cmd_version(argv):
    print(facts.version_line())


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
USAGE = (f"Usage: orbctl COMMAND [ARGS]  (orbctl emulator for tests, backed by {substrate.NAME})\n\nCommands:\n  "
         + "\n  ".join(sorted(COMMANDS)) + "\n")


def main(argv: list[str]) -> int:
    as_orb = Path(sys.argv[0]).stem == "orb" or os.environ.get("ORBCTL_EMULATOR_AS_ORB") == "1"
    if as_orb and (not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "help"))):
        argv = ["run", *argv]
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] not in COMMANDS or (argv[0] == "clone" and not facts.has("clone")):
        print(facts.UNKNOWN_COMMAND.format(argv[0]), file=sys.stderr)
        return 1
    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except Fail as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
