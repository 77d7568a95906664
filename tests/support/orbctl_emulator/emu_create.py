"""The orbctl emulator's ``create`` (tests/support/orbctl_emulator/orbctl.py names the sources)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import emu_facts as facts
from emu_cloudinit import run_cloud_init
from emu_facts import E
from emu_guest import boot_setup, ensure_user
from emu_machines import (
    BOOT_TIMEOUT,
    CODENAMES,
    DISTROS,
    HASH,
    LBL,
    Fail,
    check_new_name,
    console_log,
    execute,
    find,
    host_arch,
    locked,
    new_id,
    parse,
    remove_machine,
    set_status,
    update_state,
    wait_booted,
)
from emu_substrate import substrate


def cmd_create(argv):
    """Flags (TF, D, G-cli, #2555): -a -u -c/--user-data --cpus --memory --disk --isolated
    --isolate-network --forward-ssh-agent --mount; image before name (#2107, #1441)."""
    a = parse("create", argv, "-a/--arch", "-u/--user", "-c/--user-data", "--cpus", "--memory", "--disk",
              "--isolated!", "--isolate-network!", "--forward-ssh-agent!", "--mount", "image", "name?")
    floors = {"--isolated": a.isolated and "isolated", "--cpus": a.cpus and "limits",
              "--memory": a.memory and "limits", "--disk": a.disk and "limits"}
    for flag, feature in floors.items():  # #2396, #789; cobra's text, then usage (SRC)
        if feature and not facts.has(feature):
            raise Fail(f"Error: unknown flag: {flag}\n{facts.CREATE_USAGE}")
    distro, _, version = a.image.partition(":")
    name = a.name or distro
    if distro not in DISTROS:  # checked by the client, before the daemon sees the name (SRC)
        raise Fail(f"{facts.INVALID_DISTRO.format(distro)}\n{facts.CREATE_USAGE}")
    check_new_name("create", name)
    version = CODENAMES.get(distro, {}).get(version, version) or facts.DEFAULT_RELEASES.get(distro, "latest")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(a.arch or "", a.arch or host_arch())
    if arch != host_arch():
        raise Fail(f"{E}create '{name}': unsupported architecture: '{a.arch}' "
                   f"(the orbctl emulator runs only the host's: {host_arch()})")
    image = f"{distro}:{version}"
    if (distro, version) in facts.REMOVED or not substrate.has_image(image):
        raise Fail(facts.IMAGE_NOT_FOUND.format(name=name, distro=facts.IMAGE_NAMES.get(distro, distro),
                                                version=version, arch=arch))
    if len(name) > 64:  # after the image, at the first start; nothing is left (SRC create.go)
        raise Fail(f"{E}create '{name}': start: {facts.UTS_NAME_FAILED}")
    try:
        user_data = Path(a.user_data).read_bytes() if a.user_data else None
    except OSError as exc:
        raise Fail(f"{E}create '{name}': read cloud-init user data: {exc}")
    env_user = os.environ.get("USER")
    user = (a.user or os.environ.get("ORBCTL_EMULATOR_DEFAULT_USER")
            or (env_user if env_user and env_user != "root" else "dev"))
    lbls = {LBL: "1", f"{LBL}.home": HASH, f"{LBL}.id": new_id(), f"{LBL}.distro": distro,
            f"{LBL}.version": version, f"{LBL}.arch": arch, f"{LBL}.username": user,
            **({f"{LBL}.isolated": "1"} if a.isolated else {})}
    settings = {"cpu": a.cpus and str(int(float(a.cpus))), "memory_mib": a.memory and str(mebibytes(a.memory)),
                "disk_bytes": a.disk and str(mebibytes(a.disk) << 20), "isolated": a.isolated and "true",
                "isolate_network": a.isolate_network and "true",
                "forward_ssh_agent": a.forward_ssh_agent and "true", "mounts": a.mount}
    image = substrate.machine_image(image, user_data is not None)
    set_status("Running")
    with locked():
        problem = substrate.create(name, lbls, image, a.cpus, a.memory and mebibytes(a.memory), bool(a.isolated))
    if problem:
        raise Fail(f"{E}create '{name}': {problem}")
    setup_new(find(name), name, user, user_data, a.isolated)
    update_state(lambda s: s["config"].update({f"machine.{name}.{k}": v for k, v in settings.items() if v}))


def setup_new(c: dict, name: str, user: str, user_data: bytes | None, isolated: bool) -> None:
    """Boot a new machine, run its cloud-init, make its default user (SRC create.go order);
    on failure remove it, like OrbStack's failed creates (#2653)."""
    booted = wait_booted(c["Id"])
    if booted:
        boot_setup(execute, c["Id"], name, isolated)
    # a power_state reboot canceled the setup until 2.2.2 (#2555): not run, its outcome given
    shutdown = user_data is not None and powers_off(user_data) and \
        facts.version_tuple() < facts.CLOUD_INIT_SHUTDOWN_FIXED
    if booted and user_data is not None and not shutdown:  # cloud-init, then the default user (#1446)
        run_cloud_init(c["Id"], name, user_data, execute, console_log(c))
    problem = BOOT_TIMEOUT if not booted else "CANCELED" if shutdown else ensure_user(execute, c["Id"], user)
    if problem:
        with locked():
            remove_machine(c)
            substrate.drop_home_if_unused()
        raise Fail(f"{E}create '{name}': " + (facts.CANCELED if problem == "CANCELED" else f"setup: {problem}"))


def powers_off(user_data: bytes) -> bool:
    """Whether cloud-config ``user_data`` ends cloud-init with a reboot or power-off."""
    return bool(re.search(rb"(?m)^power_state:", user_data)) and user_data.startswith(b"#cloud-config")


def mebibytes(size: str) -> int:
    """``2G``, ``512M``, ``2048`` (MiB) -> MiB. ASSUMED: the units OrbStack accepts (#2555 shows 2G, 20G)."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    text = size.strip().upper().rstrip("IB")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)
    except ValueError:
        raise Fail(f"Error: invalid size: '{size}'") from None
