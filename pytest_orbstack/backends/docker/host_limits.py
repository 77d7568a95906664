"""Limits of a Docker engine's host that systemd machines run into, named in errors; read on the
engine's host (:mod:`.engine_host`: this one, or the one ``DOCKER_HOST=ssh://...`` reaches).

Each systemd machine holds about 7 inotify instances of the host's root user; Debian's default
``fs.inotify.max_user_instances`` of 128 lets about 20 machines boot, and the next one exits
at once (status 255, an empty log). Measured here: 22 of 45 machines booted at 128, all 45 at
1024. ``scripts/dev.sh`` raises the limit to 1024 (on this host). A full data-root makes every
create fail with "no space left on device": :func:`disk_hint` says how much is free where.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_orbstack.backends.docker.engine_host import EngineHost, engine_host

PER_MACHINE = 7
LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
# the same two numbers as LIMIT and inotify_in_use, read by a shell on a remote engine's host
REMOTE_INOTIFY = ("cat /proc/sys/fs/inotify/max_user_instances; "
                  "find /proc/[0-9]*/fd -lname anon_inode:inotify 2>/dev/null | wc -l")


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


def inotify_counts(host: EngineHost) -> tuple[int, int] | None:
    """(limit, instances in use) on ``host``, or None when they cannot be read there."""
    if host.local:
        try:
            return int(LIMIT.read_text()), inotify_in_use()
        except (OSError, ValueError):
            return None
    out = (host.run(["sh", "-c", REMOTE_INOTIFY]) or "").split()
    return (int(out[0]), int(out[1])) if len(out) == 2 and all(w.isdigit() for w in out) else None


def boot_failure_hint(docker_host: str | None) -> str:
    """Why a machine may have died while booting, when the engine's host's inotify limit is the
    likely cause (nearly used up there); else ``""`` (also when it cannot be read)."""
    host = engine_host(docker_host)
    counts = inotify_counts(host)
    if counts is None or counts[1] + PER_MACHINE <= counts[0]:
        return ""
    limit, used = counts
    return (f"; likely cause: the inotify instances of {host.label()} are used up "
            f"(fs.inotify.max_user_instances = {limit}, {used} in use, each systemd machine holds about "
            f"{PER_MACHINE}): raise it there with `sudo sysctl -w fs.inotify.max_user_instances=1024`"
            + (" (scripts/dev.sh does)" if host.local else ""))


def disk_hint(docker_host: str | None, root_dir: str) -> str:
    """``; <host> has N MiB free of M MiB in ROOT_DIR`` (the engine's data-root, read with ``df``
    on the engine's host), or a note that it could not be read there; ``""`` when the data-root
    is not known."""
    if not root_dir:
        return ""
    host = engine_host(docker_host)
    out = host.run(["df", "-Pk", root_dir])
    fields = out.splitlines()[-1].split() if out and len(out.splitlines()) > 1 else []
    if len(fields) < 4 or not (fields[1].isdigit() and fields[3].isdigit()):
        return f"; the free space of {host.label()} could not be read"
    return f"; {host.label()} has {int(fields[3]) // 1024} MiB free of {int(fields[1]) // 1024} MiB in {root_dir}"
