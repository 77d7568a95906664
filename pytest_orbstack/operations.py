"""PyInfra operations for OrbStack machines and OrbStack's configuration.

They run on the host that has ``orbctl`` (``pyinfra @local deploy.py`` on the Mac), compare
facts with the desired state and yield ``orbctl`` commands only where they differ, so a second
run of the same deploy changes nothing. Parameters are called ``machine`` (never ``name``, which
is pyinfra's global operation-name argument).

.. code:: python

    from pytest_orbstack import operations as orb

    orb.machine(machine="web", image="ubuntu:24.04", user="deploy")
    orb.config(key="memory_mib", value="8192")
    orb.machine(machine="old", present=False)

Out of scope (ADR-0002): per-machine CPU/memory limits (OrbStack only has global ``cpu`` and
``memory_mib``), cross-machine exec/copy (use a multi-host inventory), health checks and
automated recovery (application-specific). Information about a machine is read with facts
(:mod:`pytest_orbstack.facts`), not operations.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import OperationError, OperationValueError, operation

from .facts import OrbStackConfig, OrbStackMachine
from .inputs import parse_image
from .names import validate_machine_name


def _orbctl(*args: str) -> str:
    return shlex.join(["orbctl", *args])


def _valid(machine: str) -> str:
    try:
        return validate_machine_name(machine)
    except ValueError as exc:
        raise OperationValueError(str(exc)) from None


@operation()
def machine(machine: str, image: str = "debian:bookworm", present: bool = True,
            running: bool = True, user: str | None = None, arch: str | None = None,
            cloud_init: str | None = None) -> Generator[str, None, None]:
    """Ensure an OrbStack machine exists (created from ``image``) and is running or stopped,
    or, with ``present=False``, that it does not exist.

    + machine: machine name (``^[a-zA-Z0-9][a-zA-Z0-9-.]+$``, not reserved)
    + image: ``distro[:version]`` used only when the machine is created
    + present: whether the machine should exist
    + running: whether it should run (ignored when ``present=False``)
    + user: default username, at creation (use ``machine_username`` to change it later)
    + arch: ``amd64`` or ``arm64``, at creation
    + cloud_init: path of a cloud-init user-data file (on the OrbStack host), at creation
    """
    _valid(machine)
    current = host.get_fact(OrbStackMachine, machine=machine)
    if not present:
        if current is not None:
            yield _orbctl("delete", "-f", machine)
        else:
            host.noop(f"machine {machine} does not exist")
        return
    if current is None:
        try:
            parse_image(image)
        except ValueError as exc:
            raise OperationValueError(str(exc)) from None
        if cloud_init is not None and not os.path.isfile(cloud_init):
            raise OperationValueError(f"cloud-init user-data file not found: {cloud_init}")
        args = ["create"]
        args += ["-a", arch] if arch else []
        args += ["-u", user] if user else []
        args += ["-c", cloud_init] if cloud_init else []
        yield _orbctl(*args, image, machine)
        if not running:
            yield _orbctl("stop", machine)
        return
    is_running = current["state"] == "running"
    if running and not is_running:
        yield _orbctl("start", machine)
    elif not running and is_running:
        yield _orbctl("stop", machine)
    else:
        host.noop(f"machine {machine} is {current['state']}")


@operation()
def clone(source: str, machine: str, running: bool = True) -> Generator[str, None, None]:
    """Ensure ``machine`` exists as a clone of ``source`` (copy-on-write; OrbStack leaves a
    clone stopped, so it is started unless ``running=False``). An existing ``machine`` is left
    as it is."""
    _valid(source)
    _valid(machine)
    if host.get_fact(OrbStackMachine, machine=machine) is not None:
        host.noop(f"machine {machine} exists")
        return
    # A missing source is left to orbctl ("machine not found"): an earlier operation of the
    # same deploy may create it.
    yield _orbctl("clone", source, machine)
    if running:
        yield _orbctl("start", machine)


@operation()
def rename(old: str, new: str) -> Generator[str, None, None]:
    """Ensure machine ``old`` is called ``new``. Nothing to do if ``new`` exists and ``old``
    does not; an error if both exist (orbctl reports a missing ``old``)."""
    _valid(old)
    _valid(new)
    old_info = host.get_fact(OrbStackMachine, machine=old)
    new_info = host.get_fact(OrbStackMachine, machine=new)
    if old_info is not None and new_info is not None:
        raise OperationError(f"cannot rename {old!r} to {new!r}: both machines exist")
    if old_info is None and new_info is not None:
        host.noop(f"machine {new} exists")
        return
    yield _orbctl("rename", old, new)


@operation()
def config(key: str, value: str | int | bool) -> Generator[str, None, None]:
    """Ensure an OrbStack configuration key has ``value`` (``orbctl config set``). Keys are those
    of ``orbctl config show`` (global settings such as ``memory_mib``, ``cpu``, ``rosetta``);
    orbctl itself rejects an unknown key ("Unknown configuration key: K")."""
    desired = str(value).lower() if isinstance(value, bool) else str(value)
    if host.get_fact(OrbStackConfig).get(key) == desired:
        host.noop(f"config {key} is {desired}")
        return
    yield _orbctl("config", "set", key, desired)


@operation()
def machine_username(machine: str, username: str) -> Generator[str, None, None]:
    """Ensure the default username of ``machine`` (config key ``machine.<name>.username``, the
    only per-machine OrbStack setting)."""
    _valid(machine)
    current = host.get_fact(OrbStackMachine, machine=machine)
    if current is not None and current["default_username"] == username:
        host.noop(f"machine {machine} username is {username}")
        return
    yield _orbctl("config", "set", f"machine.{machine}.username", username)
