"""What the orbctl emulator knows of real OrbStack, each fact with its public source or the
word ASSUMED. ``#N`` is github.com/orbstack/orbstack/issues/N; G-cli and G-probe are
mainuli/garm-provider-orbstack's internal/orbstack/cli.go and its capabilities probe; B is
billyhargroveofficial/billystar's OrbStack harness; TF is robertdebock/terraform-provider-
orbstack; S is elazar/pyinfra-orbstack; FIRM is InSuperposition/firmament (scripts and a bug
report run on a real 2.2.3); SRC is OrbStack's own source as published in orbstack/swift-nio,
branch cheru/danny/next, commit 82202d2 (2025-08-20, app version 1.11.3: older than 2.x, so a
fact from it holds for 2.x only where nothing newer contradicts it). The observations are in
tests/contracts/orbstack."""

from __future__ import annotations

import os

E = "[-32098] "  # prefix of errors from OrbStack's daemon (B, #1441, #2213)
DEFAULT_VERSION = "2.2.3"  # the newest version the sources show (#2663, G-cli)
FLOORS = {"clone": (2, 0, 0),  # #654: clone arrived in 2.0 (export/import with it, #186)
          "isolated": (2, 1, 0),  # #2396: isolated machines arrived in 2.1.0
          "push_as_root": (2, 2, 3),  # #407: pushing to /root "Fixed in v2.2.3" (how: ASSUMED root)
          "copy_isolated": (2, 2, 0),  # #2469: pull/push through /mnt/mac failed on isolated machines
          "limits": (2, 2, 0)}  # #789: per-machine --cpus/--memory/--disk "Released in v2.2.0"
CLOUD_INIT_SHUTDOWN_FIXED = (2, 2, 2)  # #2555: a power_state reboot canceled create until 2.2.2
DELETE_BY_ID_PANICS = ((2, 2, 1), (2, 2, 3))  # B (2.2.1) and G-cli (2.2.3): delete <ID> panics
# FIRM modules/vm-orb/BUGS.md (2.2.3, exit 2): the panic's head, as printed (addresses there)
DELETE_PANIC = ("panic: runtime error: invalid memory address or nil pointer dereference [recovered, repanicked]\n"
                "[signal SIGSEGV: segmentation violation code=0x2 addr=0x10 pc=0x102573828]\n\n"
                "goroutine 1 [running]:\n"
                "github.com/orbstack/macvirt/vmgr/util/errorx.RecoverCLI(0x1)\n"
                "\tgithub.com/orbstack/macvirt/vmgr@v0.0.0-00010101000000-000000000000/util/errorx/errorx.go:30 +0x7c\n"
                "panic({0x102cb3a60?, 0x102e26d50?})\n\truntime/panic.go:860 +0x100\n"
                "github.com/orbstack/macvirt/scon/cmd/scli/cmd.init.func47("
                "0x102e42780, {0x2469e9039700, 0x1, 0x1026aff03?})\n"
                "\tgithub.com/orbstack/macvirt/scon/cmd/scli/cmd/delete.go:141 +0x868")
NOT_FOUND = E + "machine not found: '{}'"  # B: exact, exit 1, empty stdout
MISSING_IP = "machine didn't start in 30s (missing IP address)"  # #2213, #2663: whatever the wait
IMAGE_NOT_FOUND = E + "create '{name}': make rootfs: image not found: {{{distro} {version} {arch} default}}"  # #1441
PUSH_NO_SOURCE = "cp: cannot stat '/mnt/mac{}': No such file or directory"  # #406: read via /mnt/mac
COPY_ISOLATED = "cp: cannot create regular file '/mnt/mac{}': Permission denied"  # #2469
# cobra 1.9.1's text (SRC root command: every cobra error exits 1, main.go); no transcript shows it
UNKNOWN_COMMAND = 'Error: unknown command "{}" for "orbctl"\nRun \'orbctl --help\' for usage.'
CREATE_USAGE = "Usage:\n  orbctl create [flags] DISTRO[:VERSION] [MACHINE_NAME]"  # cobra prints it after a flag error
# SRC: the name becomes lxc.uts.name (scon/start.go configureLxc, scon/rename.go); LXC refuses
# 65 bytes and more (lxc/lxc src/lxc/confile.c set_config_uts_name); go-lxc's error text
UTS_FAILED = "setting config item for the container failed"
UTS_NAME_FAILED = f"configure LXC: configure LXC: set lxc.uts.name: {UTS_FAILED}"  # start.go wraps twice
CANCELED = "setup: do initial setup: canceled by machine shutdown"  # #2555 (SRC scon/create.go)
INVALID_DISTRO = "Error: invalid distro: {}"  # SRC cmd/create.go: checked by the client, exit 1
# image names and default releases seen in "image not found" texts (#2363, on 2.0.5)
IMAGE_NAMES = {"arch": "archlinux"}
DEFAULT_RELEASES = {"arch": "current", "nixos": "25.05", "debian": "bookworm", "ubuntu": "noble"}
REMOVED = {("ubuntu", "focal")}  # #2075, #2152: Ubuntu 20.04 images were removed upstream
# `config show` keys (S shows cpu, memory_mib, network.subnet4, rosetta, machine.N.username;
# TF reads power.pause_in_sleep, ssh.expose_port, docker.node_name). Defaults: docker.node_name,
# ssh.expose_port, the sleep pause, network_*, rosetta and k8s.* as in SRC vmconfig.go
# BaseDefaults (where the pause key is power.pause_on_sleep: renamed since, or not, is not
# public); cpu and memory_mib depend on the Mac there (all cores; half its memory, at most
# 16 GiB): these values are ASSUMED for one Mac; the other keys' values are ASSUMED.
CONFIG_DEFAULTS = {
    "app.start_at_login": "false", "cpu": "8", "docker.expose_ports_to_lan": "true",
    "docker.node_name": "orbstack", "docker.set_context": "true", "k8s.enable": "false",
    "k8s.expose_services": "false", "machines.expose_ports_to_lan": "true",
    "machines.forward_ports": "true", "memory_mib": "8192", "network.https": "true",
    "network.subnet4": "192.168.138.0/23", "network_bridge": "true", "network_proxy": "auto",
    "power.pause_in_sleep": "true", "rosetta": "true", "setup.use_admin": "true",
    "ssh.expose_port": "false"}
# per-machine keys (G-cli ApplySettings; raycast/extensions#29498), username (S); the whole
# list as 2.2.3 prints it: berlysia/dotfiles home/dot_local/bin/executable_agent-vm
MACHINE_KEYS = ("username", "cpu", "memory_mib", "disk_bytes", "isolated", "isolate_network",
                "forward_ssh_agent", "mounts", "http_port", "https_port")
PORTS = {"http_port": 0, "https_port": 0}  # record.config fields (G-cli); B checks both are exactly 0 (2.2.1)


def version() -> str:
    return os.environ.get("ORBCTL_EMULATOR_VERSION") or DEFAULT_VERSION


def version_tuple() -> tuple[int, int, int]:
    parts = [int(p) for p in version().split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def version_line() -> str:
    """``Version: 2.2.3 (2020300)`` (G-cli; #1441 shows 1.7.2 as 1070200)."""
    major, minor, patch = version_tuple()
    return f"Version: {version()} ({major * 1000000 + minor * 10000 + patch * 100})"


def has(feature: str) -> bool:
    return version_tuple() >= FLOORS[feature]
