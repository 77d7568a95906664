"""Every ``incus`` command the Incus engine runs, as argv lists (what Incus answers: :mod:`.instances`).

Pure functions: no I/O and no validation (the backend checks inputs once). A machine is an
unprivileged LXC system container with systemd as PID 1, made from an Incus image; what this
package records about it (that it made it, its default user, its image, its resources, the
session's labels) lives in its ``user.*`` config keys (:data:`KEY`), which ``incus copy``
carries over to copies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import AnyStr

from pytest_orbstack.backends.incus.instances import KEY, parse_instance
from pytest_orbstack.model.inputs import image_codename
from pytest_orbstack.model.types import NO_RESOURCES, EngineMachine, MachineInfo, Resources, ready_command

INCUS = "incus"
SNAPSHOT = "pytest-orbstack-frozen"  # the one snapshot of a golden machine its clones copy
SETUP_DONE = "pytest-orbstack-setup-done"
SUDOERS = "/etc/sudoers.d/90-pytest-orbstack"
USER_DATA = "cloud-init.user-data"  # the key the cloud variant's template seeds cloud-init from
CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"
# what logs() shows of a running machine: its boot journal, and cloud-init's output when there is some
BOOT_LOGS = (f"journalctl -b --no-pager -n 300 2>&1; if [ -s {CLOUD_INIT_LOG} ]; then "
             f"echo '--- {CLOUD_INIT_LOG} ---'; cat {CLOUD_INIT_LOG}; fi")


def at(remote: str, name: str) -> str:
    """``name`` (an instance, an image alias, an API path) on Incus remote ``remote``:
    ``REMOTE:NAME``, or ``name`` itself for the client's default remote (``remote`` "")."""
    return f"{remote}:{name}" if remote else name


def key(label: str) -> str:
    """The config key of a label: ``pytest-orbstack.session`` -> ``user.pytest-orbstack.session``."""
    return f"user.{label}"


def label(config_key: str) -> str:
    """The label of a ``user.*`` config key (inverse of :func:`key`)."""
    return config_key.removeprefix("user.")


def labels(config: Mapping[str, str]) -> dict[str, str]:
    """An instance's ``user.*`` config keys as labels (``pytest-orbstack.session``, ...)."""
    return {label(k): v for k, v in config.items() if k.startswith("user.")}


def image_alias(image: str, cloud: bool = False) -> str:
    """The local alias of the image machines of ``image`` are made from: ``debian:12`` ->
    ``pytest-orbstack/debian/bookworm``, with cloud-init ``.../bookworm/cloud`` (the
    ``images:`` server's naming under the project's prefix; built offline by :mod:`.images`)."""
    distro, codename = image_codename(image)
    return f"pytest-orbstack/{distro}/{codename}" + ("/cloud" if cloud else "")


def remote_image(image: str, cloud: bool = False) -> str:
    """The same image on Incus' default image server: ``images:debian/bookworm[/cloud]``."""
    distro, codename = image_codename(image)
    return f"images:{distro}/{codename}" + ("/cloud" if cloud else "")


def image_import(meta: str, rootfs: str, alias: str) -> list[str]:
    """Import the split image ``meta`` (metadata.yaml, templates) + ``rootfs`` tars as ``alias``."""
    return [INCUS, "image", "import", meta, rootfs, "--alias", alias]


def limits(resources: Resources) -> dict[str, str]:
    """Instance config for ``resources``: whole CPUs as ``limits.cpu``, a fraction as a CFS
    quota (``limits.cpu.allowance``, over a core count rounded up), memory as ``limits.memory``.
    (The disk size is a root device option: :func:`root_device`.)"""
    config: dict[str, str] = {}
    if resources.cpus:
        config["limits.cpu"] = str(math.ceil(resources.cpus))
        if resources.cpus != int(resources.cpus):
            config["limits.cpu.allowance"] = f"{round(resources.cpus * 100)}ms/100ms"
    if resources.memory_mib:
        config["limits.memory"] = f"{resources.memory_mib}MiB"
    return config


def root_device(resources: Resources) -> list[str]:
    """``-d root,size=NMiB`` (the profile's root disk, resized) when a disk size is asked."""
    return ["-d", f"root,size={resources.disk_mib}MiB"] if resources.disk_mib else []


def machine_config(login: str, image: str, resources: Resources = NO_RESOURCES) -> dict[str, str]:
    """What a machine's config records (and copies keep): made by this package, its default
    user, its image, its resources, and the limits themselves."""
    config = {KEY: "1", f"{KEY}.user": login, f"{KEY}.image": image, **limits(resources)}
    if resources != NO_RESOURCES:
        config[f"{KEY}.resources"] = json.dumps(dataclasses.asdict(resources))
    return config


def _config_flags(config: Mapping[str, str]) -> list[str]:
    return [a for k, v in config.items() for a in ("-c", f"{k}={v}")]


def _target_flag(target: str | None) -> list[str]:
    return ["--target", target] if target else []


def launch(machine: str, image_ref: str, config: Mapping[str, str],
           resources: Resources = NO_RESOURCES, target: str | None = None) -> list[str]:
    """Create and start ``machine`` from image ``image_ref`` with ``config``: a virtual machine
    (``--vm``) when ``resources.vm``, else a system container; on cluster member ``target``, else
    where the cluster's scheduler places it."""
    return [INCUS, "launch", image_ref, machine, *(["--vm"] if resources.vm else []),
            *_config_flags(config), *root_device(resources), *_target_flag(target)]


def copy(source: str, target: str, config: Mapping[str, str], snapshot: str | None = None,
         member: str | None = None) -> list[str]:
    """Copy ``source`` (or its ``snapshot``) to a new, stopped ``target`` (on cluster member
    ``member``); ``config`` overrides the copied keys (an empty value drops a key)."""
    ref = f"{source}/{snapshot}" if snapshot else source
    return [INCUS, "copy", ref, target, *_config_flags(config), *_target_flag(member)]


def snapshot(machine: str, name: str = SNAPSHOT) -> list[str]:
    return [INCUS, "snapshot", "create", machine, name]


def start(machine: str) -> list[str]:
    return [INCUS, "start", machine]


def stop(machine: str) -> list[str]:
    """Stop at once: with ``--force`` incusd kills the instance without a shutdown (a throwaway
    machine needs none, and systemd may hang on a unit); a timeout would be ignored."""
    return [INCUS, "stop", machine, "--force"]


def restart(machine: str, timeout: int = 10, *, force: bool = False) -> list[str]:
    """Shut down cleanly within ``timeout`` seconds (``force``: kill at once; Incus fails a clean
    one that times out) and start again."""
    return [INCUS, "restart", machine, *(["--force"] if force else [f"--timeout={timeout}"])]


def delete(machine: str) -> list[str]:
    """Delete the machine, running or not, with its snapshots and its storage volume."""
    return [INCUS, "delete", "--force", machine]


def rename(old: str, new: str) -> list[str]:
    return [INCUS, "rename", old, new]


def info(machine: str, remote: str = "") -> list[str]:
    """The instance (on ``remote``) with its state, snapshots and cluster member, as JSON."""
    return [INCUS, "query", at(remote, f"/1.0/instances/{machine}?recursion=1")]


def list_machines(remote: str = "", value: str = "1") -> list[str]:
    """Every instance this package made (on ``remote``), with its state, as a JSON list; with
    ``value`` :data:`.instances.ENTRY`, every golden cache entry instead (:mod:`.cache`)."""
    return [INCUS, "list", *([at(remote, "")] if remote else []), "--format", "json", f"{KEY}={value}"]


def config_set(machine: str, config: Mapping[str, str]) -> list[str]:
    return [INCUS, "config", "set", machine, *(f"{k}={v}" for k, v in config.items())]


def cluster(remote: str = "") -> list[str]:
    return [INCUS, "query", at(remote, "/1.0/cluster")]


def storage_driver(pool: str, remote: str = "") -> list[str]:
    return [INCUS, "query", at(remote, f"/1.0/storage-pools/{pool}")]


def image_export(alias: str, target: str) -> list[str]:
    """Write image ``alias`` as ``target`` (metadata) and ``target.root`` (its rootfs)."""
    return [INCUS, "image", "export", alias, target]


def image_info(alias: str) -> list[str]:
    return [INCUS, "image", "info", alias]


def push(machine: str, local: str, remote: str) -> list[str]:
    """Copy host file ``local`` to absolute path ``remote`` in ``machine`` (owned by root)."""
    return [INCUS, "file", "push", local, f"{machine}{remote}"]


def pull(machine: str, remote: str, local: str) -> list[str]:
    return [INCUS, "file", "pull", f"{machine}{remote}", local]


def console_log(machine: str) -> list[str]:
    return [INCUS, "console", machine, "--show-log"]


def exit_note(returncode: int) -> str:
    """The line ``incus exec`` itself prints on stderr after a command exits 126 or 127 (Incus
    6.0: it reads them as "not executable"/"not found" even when ``sh -c`` is what ran)."""
    return {126: "Error: Command not executable\n", 127: "Error: Command not found\n"}.get(returncode, "")


def without_exit_note(proc: subprocess.CompletedProcess[AnyStr]) -> subprocess.CompletedProcess[AnyStr]:
    """``proc`` with :func:`exit_note`'s line taken off the end of its stderr."""
    note = exit_note(proc.returncode)
    text = note if isinstance(proc.stderr, str) else note.encode()
    if note and proc.stderr.endswith(text):
        proc.stderr = proc.stderr[:-len(text)]
    return proc


def exec_(machine: str, command: str, *, uid: int = 0, gid: int = 0,
          env: Mapping[str, str] | None = None) -> list[str]:
    """Run shell ``command`` in ``machine`` as ``uid``:``gid`` with ``env`` added, stdin, stdout
    and stderr passed through as separate pipes (``-T``: never a terminal)."""
    argv = [INCUS, "exec", "-T", machine]
    if uid or gid:
        argv += ["--user", str(uid), "--group", str(gid)]
    for name, value in (env or {}).items():
        argv += ["--env", f"{name}={value}"]
    return [*argv, "--", "sh", "-c", command]


def as_user(user: str, command: str) -> str:
    """Shell (run as root) that runs ``command`` as ``user`` with that user's HOME and USER."""
    return f"exec su {shlex.quote(user)} -s /bin/sh -c {shlex.quote(command)}"


def user_setup(user: str) -> str:
    """Shell that adds ``user`` with passwordless sudo (the OrbStack default user's rights) and
    prints :data:`SETUP_DONE` with its uid, gid and home."""
    q = shlex.quote(user)
    return (f"(id -u {q} >/dev/null 2>&1 || useradd -m -s /bin/bash {q}) && "
            f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q} > {SUDOERS} && chmod 0440 {SUDOERS} && "
            f"echo {SETUP_DONE} $(id -u {q}) $(id -g {q}) $(getent passwd {q} | cut -d: -f6)")


def cloud_init_wait(timeout: int) -> str:
    """Shell that waits for cloud-init to finish whatever its outcome (``cloud-init status
    --long`` and :data:`CLOUD_INIT_LOG` in the machine say how it went); still running after
    ``timeout`` seconds is written to that log and create goes on."""
    return (f"timeout {timeout} cloud-init status --wait >/dev/null 2>&1; [ $? -ne 124 ] || echo "
            f"'pytest-orbstack: cloud-init still running after {timeout}s; create went on' >> {CLOUD_INIT_LOG}")


def ready_script(timeout: int = 90, setup: str | None = None) -> str:
    """Shell that waits until systemd is up (its state printed last), running ``setup`` first.
    systemd's bus socket may not exist right after the start: waited for first."""
    probe = f"until [ -S /run/systemd/private ]; do sleep 0.05; done; {ready_command(timeout)}"
    return f"{setup}; {probe}" if setup is not None else probe


def ready(machine: str, timeout: int = 90, setup: str | None = None) -> list[str]:
    """:func:`ready_script` run as root in ``machine``."""
    return exec_(machine, ready_script(timeout, setup))


# -- the pyinfra facts' shell lines (run on the engine's host) and their output ---------------
def machines_script(at: Callable[[str], str] = str) -> str:
    """Every machine this package made, on the remote ``at`` addresses, as a JSON list."""
    return shlex.join(list_machines(at("").removesuffix(":")))


def machines_of(lines: list[str]) -> list[EngineMachine]:
    return [i.machine for i in map(parse_instance, json.loads("\n".join(lines) or "[]")) if i is not None]


def machine_script(name: str, at: Callable[[str], str] = str) -> str:
    """Machine ``name`` (on the remote ``at`` addresses) as JSON, or ``null``."""
    return f"{shlex.join(info(name, at('').removesuffix(':')))} 2>/dev/null || echo null"


def machine_of(lines: list[str]) -> MachineInfo | None:
    data = json.loads("\n".join(lines) or "null")
    return parse_instance(data) if data else None
