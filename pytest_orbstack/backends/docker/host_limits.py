"""Limits of a local Linux Docker host that systemd machines run into, named in errors.

Each systemd machine holds about 7 inotify instances of the host's root user; Debian's default
``fs.inotify.max_user_instances`` of 128 lets about 20 machines boot, and the next one exits
at once (status 255, an empty log). Measured here: 22 of 45 machines booted at 128, all 45 at
1024. ``scripts/dev.sh`` raises the limit to 1024.
"""

from __future__ import annotations

import os
from pathlib import Path

PER_MACHINE = 7
LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_in_use() -> int:
    """inotify instances open on this host now (all users: machines' systemd runs as root)."""
    count = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                count += os.readlink(fd) == "anon_inode:inotify"
            except OSError:  # closed meanwhile
                continue
    return count


def boot_failure_hint(docker_host: str | None) -> str:
    """Why a machine may have died while booting, when this host's inotify limit is the likely
    cause (a local engine whose limit is nearly used up); else ``""``."""
    if docker_host and not docker_host.startswith("unix://"):
        return ""
    try:
        limit = int(LIMIT.read_text())
    except (OSError, ValueError):
        return ""
    used = inotify_in_use()
    if used + PER_MACHINE <= limit:
        return ""
    return (f"; likely cause: the host's inotify instances are used up (fs.inotify.max_user_instances"
            f" = {limit}, {used} in use, each systemd machine holds about {PER_MACHINE}): raise it with "
            "`sudo sysctl -w fs.inotify.max_user_instances=1024` (scripts/dev.sh does)")
