"""PyInfra facts about machines, gathered on the host that runs the engine (``@local``: the Mac
with OrbStack, or a Docker host). ``engine`` is ``orbstack`` (default) or ``docker``; the
commands come from the engines' builders, so they are the ones the engines run themselves."""

from __future__ import annotations

import json
import shlex
from typing import Any

from pyinfra.api import FactBase

from pytest_orbstack import settings
from pytest_orbstack.backends.docker import commands as docker_commands
from pytest_orbstack.backends.docker.commands import parse_inspect
from pytest_orbstack.backends.incus import commands as incus_commands
from pytest_orbstack.backends.orbstack import commands as orbstack_commands
from pytest_orbstack.backends.orbstack.client import parse_config, parse_config_value, parse_info, parse_machine
from pytest_orbstack.backends.podman import commands as podman_commands
from pytest_orbstack.model.names import validate_machine_name

ENGINES = ("orbstack", "docker", "incus", "podman")
DOCKERS = {"docker": docker_commands, "podman": podman_commands}  # the same output: one parser


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use orbstack, docker, incus or podman")
    return engine


def _machine_dict(info: Any) -> dict[str, Any]:
    m = info.machine
    return {"id": m.id, "name": m.name, "state": m.state, "distro": m.image.distro,
            "version": m.image.version, "arch": m.image.arch, "default_username": m.default_username,
            "ip4": info.ip4, "ip6": info.ip6, "domain": info.domain}


class OrbStackMachines(FactBase):
    """Machines the engine has (on Docker: those pytest-orbstack made):
    ``[{"name", "state", "distro", "version", "arch", "default_username", ...}]``."""

    @staticmethod
    def default() -> list[Any]:
        return []

    def command(self, engine: str = "orbstack") -> str:
        if _engine(engine) in DOCKERS:
            return "echo docker; " + shlex.join(DOCKERS[engine].list_machines())
        if engine == "incus":
            return "echo incus; " + shlex.join(incus_commands.list_machines(settings.incus_remote()))
        return "echo orbstack; " + shlex.join(orbstack_commands.list_machines())

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        engine, rest = output[0], output[1:]
        if engine == "docker":
            rows = [line.split("\t") for line in rest if line.count("\t") == 4]
            return [{"id": cid, "name": name, "state": "running" if state == "running" else "stopped",
                     "image": image, "default_username": user or None}
                    for cid, name, state, user, image in rows]
        if engine == "incus":
            infos = (incus_commands.parse_instance(item) for item in json.loads("\n".join(rest) or "[]"))
            return [{k: v for k, v in _machine_dict(i).items() if k not in ("ip4", "ip6", "domain")}
                    for i in infos if i is not None]
        machines = [parse_machine(item) for item in json.loads("\n".join(rest) or "[]") or []]
        return [{"id": m.id, "name": m.name, "state": m.state, "distro": m.image.distro,
                 "version": m.image.version, "arch": m.image.arch,
                 "default_username": m.default_username} for m in machines if not m.builtin]


class OrbStackMachine(FactBase):
    """One machine with its addresses, or None if the engine has no such machine.

    ``{"name", "state", "distro", "version", "arch", "default_username", "ip4", "ip6",
    "domain"}`` (addresses are None while stopped)."""

    def command(self, machine: str, engine: str = "orbstack") -> str:
        name = validate_machine_name(machine)
        if _engine(engine) in DOCKERS:
            inspect = shlex.join(DOCKERS[engine].inspect(name, fmt="{{json .}}"))
            return f"echo docker; {inspect} 2>/dev/null || echo null"
        if engine == "incus":
            info = shlex.join(incus_commands.info(name, settings.incus_remote()))
            return f"echo incus; {info} 2>/dev/null || echo null"
        listing = shlex.join(orbstack_commands.list_names())
        info = shlex.join(orbstack_commands.info(name))
        return f"echo orbstack; if {listing} | grep -qxF {shlex.quote(name)}; then {info}; else echo null; fi"

    def process(self, output: list[str]) -> dict[str, Any] | None:
        # podman's inspect of a missing container prints [] before it fails (and `echo null` runs)
        engine, data = output[0], json.loads("\n".join(line for line in output[1:] if line != "[]") or "null")
        if engine == "docker":
            info = parse_inspect(data) if data else None
        elif engine == "incus":
            info = incus_commands.parse_instance(data) if data else None
        else:
            info = parse_info(data) if data is not None else None
        return _machine_dict(info) if info is not None else None


class OrbStackConfig(FactBase):
    """OrbStack's configuration (``orbctl config show``) as a dict of strings."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return shlex.join(orbstack_commands.config_show())

    def process(self, output: list[str]) -> dict[str, str]:
        return parse_config("\n".join(output))


class OrbStackConfigValue(FactBase):
    """One configuration value (``orbctl config get KEY``); an unknown key fails the fact."""

    def command(self, key: str) -> str:
        return f"echo {shlex.quote(key)}; " + shlex.join(orbstack_commands.config_get(key))

    def process(self, output: list[str]) -> str:
        return parse_config_value(output[0], "\n".join(output[1:]))
