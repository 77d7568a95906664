"""What an Incus instance's JSON (``incus query``, ``incus list``) says about a machine: the
``user.*`` config keys (:data:`KEY`) this package records in it, read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_orbstack.errors import UnknownImage
from pytest_orbstack.model.inputs import image_codename
from pytest_orbstack.model.types import EngineMachine, Image, MachineInfo, Resources

KEY = "user.pytest-orbstack"  # "1" on every machine this package made; KEY.<what> for the rest
ENTRY = "cache"  # KEY's value on a golden cache entry (:mod:`.cache`): not a machine
# the keys clones keep from their source; the session's own keys are the clone's caller's
INHERITED = ("user", "uid", "gid", "home", "image", "resources")
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def parse_instance(data: Mapping[str, Any]) -> MachineInfo | None:
    """An instance as ``incus query``/``incus list`` gives it -> MachineInfo, or None if this
    package did not make it."""
    config = data.get("config") or {}
    if config.get(KEY) != "1":
        return None
    try:
        distro, codename = image_codename(config.get(f"{KEY}.image", ""))
    except UnknownImage:
        distro, codename = "", ""
    running = data.get("status") == "Running"
    arch = ARCHES.get(data.get("architecture", ""), data.get("architecture", ""))
    machine = EngineMachine(id=config.get("volatile.uuid", data["name"]), name=data["name"],
                            image=Image(distro, codename, arch), state="running" if running else "stopped",
                            default_username=config.get(f"{KEY}.user"))
    addresses = ((((data.get("state") or {}).get("network") or {}).get("eth0") or {}).get("addresses")
                 or []) if running else []
    ip4 = next((a["address"] for a in addresses if a["family"] == "inet"), None)
    ip6 = next((a["address"] for a in addresses if a["family"] == "inet6" and a["scope"] == "global"), None)
    return MachineInfo(machine, ip4=ip4, ip6=ip6)


def recorded_user(config: dict[str, str]) -> tuple[str, int, int, str]:
    """The default user's name, uid, gid and home an instance's config records (root's without)."""
    login = config.get(f"{KEY}.user") or "root"
    return (login, int(config.get(f"{KEY}.uid") or 0), int(config.get(f"{KEY}.gid") or 0),
            config.get(f"{KEY}.home") or "/root")


def recorded_resources(config: Mapping[str, str]) -> Resources:
    recorded = json.loads(config.get(f"{KEY}.resources") or "{}")
    return Resources(**{**recorded, "capabilities": tuple(recorded.get("capabilities", ()))})


def session_keys(config: Mapping[str, str]) -> set[str]:
    """The keys of ``config`` a copy does not keep: the session's labels (and a cache entry's
    keys), every ``KEY.*`` but the :data:`INHERITED` ones."""
    kept = {f"{KEY}.{what}" for what in INHERITED}
    return {k for k in config if k.startswith(f"{KEY}.") and k not in kept}
