"""PyInfra facts about machines, gathered on the host that runs the engine (``@local``: the Mac
with OrbStack, or a Docker host). ``engine`` is an engine's name (``orbstack``, the default,
``podman``, ``docker``, ``incus``) or the engine object itself (pytest-orbstack's operations
pass theirs); the shell lines and their parsing are the engine's own (``Backend.commands``), so
the facts run the commands the engines run themselves and know no engine by name."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase

from pytest_orbstack.backends import ENGINES, backend_class, get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import EngineMachine, MachineInfo


def _engine(engine: str | Backend) -> Backend:
    if isinstance(engine, Backend):
        return engine
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use {', '.join(ENGINES)}")
    return get_backend(engine)


def _machine_dict(m: EngineMachine) -> dict[str, Any]:
    return {"id": m.id, "name": m.name, "state": m.state, "distro": m.image.distro, "version": m.image.version,
            "arch": m.image.arch, "default_username": m.default_username}


def _info_dict(info: MachineInfo) -> dict[str, Any]:
    return {**_machine_dict(info.machine), "ip4": info.ip4, "ip6": info.ip6, "domain": info.domain}


class OrbStackMachines(FactBase):
    """Machines the engine has (on Docker, Podman, Incus: those pytest-orbstack made):
    ``[{"id", "name", "state", "distro", "version", "arch", "default_username"}]`` (``arch`` is
    empty on Docker and Podman)."""

    engine: Backend

    @staticmethod
    def default() -> list[Any]:
        return []

    def command(self, engine: str | Backend = "orbstack") -> str:
        self.engine = _engine(engine)
        return str(self.engine.commands.machines_script(self.engine.at))

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        return [_machine_dict(m) for m in self.engine.commands.machines_of(output)]


class OrbStackMachine(FactBase):
    """One machine with its addresses, or None if the engine has no such machine.

    ``{"name", "state", "distro", "version", "arch", "default_username", "ip4", "ip6",
    "domain"}`` (addresses are None while stopped)."""

    engine: Backend

    def command(self, machine: str, engine: str | Backend = "orbstack") -> str:
        name = validate_machine_name(machine)
        self.engine = _engine(engine)
        return str(self.engine.commands.machine_script(name, self.engine.at))

    def process(self, output: list[str]) -> dict[str, Any] | None:
        info = self.engine.commands.machine_of(output)
        return _info_dict(info) if info is not None else None


def _orbstack() -> Any:
    """OrbStack's builders and parsers (its configuration exists on that engine only)."""
    return backend_class("orbstack").commands


class OrbStackConfig(FactBase):
    """OrbStack's configuration (``orbctl config show``) as a dict of strings."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return shlex.join(_orbstack().config_show())

    def process(self, output: list[str]) -> dict[str, str]:
        return _orbstack().parse_config("\n".join(output))


class OrbStackConfigValue(FactBase):
    """One configuration value (``orbctl config get KEY``); an unknown key fails the fact."""

    def command(self, key: str) -> str:
        return f"echo {shlex.quote(key)}; " + shlex.join(_orbstack().config_get(key))

    def process(self, output: list[str]) -> str:
        return _orbstack().parse_config_value(output[0], "\n".join(output[1:]))
