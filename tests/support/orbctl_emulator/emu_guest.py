"""What OrbStack sets up inside a machine, as the orbctl emulator repeats it in a container:
the default user (once, at create) and the machine's identity at every boot (hostname files,
``/sys`` writable). Sources: OrbStack's own source (SRC, emu_facts.py) scon/agent/setup.go
InitialSetupStage1, scon/agent/hostname.go, scon/start.go."""

from __future__ import annotations

import os
import re
from pathlib import Path

ADMIN_GROUPS = ("adm", "wheel", "staff", "admin", "sudo", "video")  # SRC setup.go adminGroups
IMAGE_USERS = ("ubuntu", "archlinux", "opensuse", "alarm")  # SRC: "delete default lxd image users"
SOCKET_GROUP = ("orbstack", "67278")  # SRC scon/types/names.go OrbSocketGroupName, OrbSocketGid
FIRST_MAC_UID = 501  # the first account macOS makes (#1446, B: uid=501)

# $1 raw name, $2 user, $3 group, $4 uid; every step as InitialSetupStage1 takes it
USER_SH = (
    'set -u; raw=$1 user=$2 group=$3 uid=$4\n'
    'for old in ' + " ".join(IMAGE_USERS) + '; do\n'
    '  [ "$old" != "$user" ] && getent passwd "$old" >/dev/null && { userdel -r "$old" 2>/dev/null || exit 1; }\n'
    'done\n'
    'mkdir -p /etc/sudoers.d && printf \'%s ALL=(ALL) NOPASSWD:ALL\' "$raw" > /etc/sudoers.d/orbstack\n'
    'chmod 0440 /etc/sudoers.d/orbstack\n'
    'shell=$(grep -m1 "/bash$" /etc/shells || grep -m1 "/sh$" /etc/shells)\n'
    'if ! getent passwd "$user" >/dev/null; then\n'
    '  getent group "$group" >/dev/null || groupadd --gid "$uid" "$group" || exit 1\n'
    '  set -- --uid "$uid" --gid "$uid" --no-user-group --create-home --shell "$shell"\n'
    '  useradd "$@" --badname "$user" 2>/dev/null || useradd "$@" "$user" || exit 1\n'
    'fi\n'
    'for g in ' + " ".join(ADMIN_GROUPS) + '; do getent group "$g" >/dev/null && usermod -aG "$g" "$user"; done\n'
    f'getent group {SOCKET_GROUP[0]} >/dev/null || groupadd --gid {SOCKET_GROUP[1]} {SOCKET_GROUP[0]}\n'
    f'usermod -aG {SOCKET_GROUP[0]} "$user"\n')

# $1 the machine's name, $2 "rw" to make /sys writable. lxc.uts.name and the image's
# hostname/hosts templates give 127.0.1.1 NAME (lxc-ci debian.yaml; SRC hostname.go keeps that
# line on rename); host.orb.internal stays (Docker adds it to the same file).
BOOT_SH = (
    'n=$1; [ "$(hostname)" = "$n" ] || hostname "$n"\n'
    'printf "%s\\n" "$n" > /etc/hostname\n'
    'extra=$(grep "host.orb.internal" /etc/hosts)\n'
    'printf "127.0.1.1\\t%s\\n127.0.0.1\\tlocalhost\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n'
    'ff02::1\\t\\tip6-allnodes\\nff02::2\\t\\tip6-allrouters\\n%s\\n" "$n" "$extra" > /etc/hosts\n'
    'rm -f /.dockerenv\n'
    '[ "$2" != rw ] || mount -o remount,rw /sys\n')


def normalized(name: str) -> tuple[str, str]:
    """The user and group OrbStack makes for ``name`` (SRC setup.go normalizeUserAndGroupNames:
    lower case, ``[^a-z0-9_-]`` -> ``_``, ``_`` before a first character that is not a letter or
    ``_``, at most 32 characters; the group at most 16)."""
    if not name:
        return "", ""
    user = re.sub(r"[^a-z0-9_-]", "_", name.lower())
    if name.endswith("$"):
        user = user[:-1] + "$"
    if user[0] not in "abcdefghijklmnopqrstuvwxyz_":
        user = "_" + user
    return user[:32], user[:16]


def mac_uid() -> int:
    """The uid of the default user: the Mac user's (SRC create.go: ``Uid: hostUser.Uid``);
    here ORBCTL_EMULATOR_UID, else the caller's when it is a person's, else macOS's first."""
    wanted = os.environ.get("ORBCTL_EMULATOR_UID")
    if wanted:
        return int(wanted)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return uid if uid >= 500 else FIRST_MAC_UID


def ensure_user(execute, container: str, raw: str) -> str | None:
    """Make OrbStack's default user ``raw`` (normalised) in a running machine; what went
    wrong, if anything. ``root`` is left alone."""
    user, group = normalized(raw)
    if user == "root":
        return None
    proc = execute(container, ["sh", "-c", USER_SH, "sh", raw, user, group, str(mac_uid())])
    return f"user '{raw}': {proc.stderr.strip() or proc.stdout.strip()}" if proc.returncode else None


def boot_setup(execute, container: str, name: str, isolated: bool) -> None:
    """What every start of a machine gives it: its name as hostname (also after a rename) and,
    unless isolated, a writable ``/sys`` (SRC start.go ``sys:rw``; isolated: ``sys:mixed``)."""
    execute(container, ["sh", "-c", BOOT_SH, "sh", name, "" if isolated else "rw"])


CAPS = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
        "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
        "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
        "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ").split()  # Linux's capabilities 0-37, in number order


def grantable_caps() -> list[str]:
    """Every capability this host can grant (``--cap-add ALL`` fails where the host itself
    lacks one, as in a container): those in this process's bounding set (Docker is local)."""
    try:
        status = Path("/proc/self/status").read_text()
        bounding = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")), 16)
    except (OSError, StopIteration):
        return ["NET_ADMIN"]
    return [cap for bit, cap in enumerate(CAPS) if bounding >> bit & 1]
