"""What ``orbctl`` prints, parsed: ``version``, ``list -f json`` items, ``info -f json`` in both its
2025+ form ``{"record":..., "ip4":...}`` and the older flat record, ``config`` as ``key: value``
lines or bare values (the shapes and their sources: :mod:`.client`)."""

from __future__ import annotations

import re
from typing import Any

from pytest_orbstack.model.types import EngineMachine, Image, MachineInfo


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``Version: 2.2.3 (2020300)`` (or a bare ``2.2.3``) -> ``(2, 2, 3)``; None if absent."""
    match = re.search(r"(?:^|Version:\s*)(\d+)\.(\d+)(?:\.(\d+))?", text.strip(), re.MULTILINE)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def parse_machine(record: dict[str, Any]) -> EngineMachine:
    image = record.get("image") or {}
    config = record.get("config") or {}
    return EngineMachine(
        id=str(record.get("id", "")),
        name=record["name"],
        image=Image(distro=image.get("distro", ""), version=image.get("version", ""),
                    arch=image.get("arch", ""), variant=image.get("variant", "default")),
        state=record.get("state", "stopped"),
        default_username=config.get("default_username"),
        isolated=bool(config.get("isolated", False)),
        builtin=bool(record.get("builtin", False)),
    )


def parse_info(data: dict[str, Any]) -> MachineInfo:
    """Parse both shapes of ``info -f json``: ``{"record": {...}, "ip4": ...}`` and flat."""
    record = data["record"] if isinstance(data.get("record"), dict) else data
    disk = data.get("disk_size")
    return MachineInfo(machine=parse_machine(record), ip4=data.get("ip4") or None,
                       ip6=data.get("ip6") or None,
                       disk_size=int(disk) if isinstance(disk, (int, float)) else None)


def parse_config(text: str) -> dict[str, str]:
    """Parse ``key: value`` lines (``config show``)."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            config[key.strip()] = value.strip()
    return config


def parse_config_value(key: str, text: str) -> str:
    """``config get KEY`` prints either the bare value or ``KEY: value``."""
    text = text.strip()
    prefix = f"{key}:"
    return text[len(prefix):].strip() if text.startswith(prefix) else text
