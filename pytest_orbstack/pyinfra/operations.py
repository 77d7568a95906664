"""PyInfra operations for machines and OrbStack's configuration, on either engine.

They run on the host that has the engine (``pyinfra @local deploy.py``: the Mac with OrbStack,
or a Docker host with ``--data orbstack_backend=docker``), compare facts with the desired state
and yield the engines' own commands (:mod:`pytest_orbstack.backends.orbstack.commands`,
:mod:`pytest_orbstack.backends.docker.commands`) only where they differ, so a second run of the
same deploy changes nothing. The engine is chosen by the one rule of
:func:`pytest_orbstack.backends.resolve_name`: host data ``orbstack_backend``, else
``$PYTEST_ORBSTACK_BACKEND``, else OrbStack when ``orbctl`` answers, else Docker, else Incus (or the backend
object itself in host data ``_orbstack_engine``, as the fixtures hand it over). Parameters are
called ``machine`` (never ``name``, which is pyinfra's global operation-name argument).

.. code:: python

    from pytest_orbstack import operations as orb

    orb.machine(machine="web", image="debian:bookworm", user="deploy")
    orb.config(key="memory_mib", value="8192")          # OrbStack only
    orb.machine(machine="old", present=False)

A machine made here is ready (systemd up, default user with passwordless sudo) when the
operation ends, as one made by the pytest fixtures is.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator, Sequence
from types import ModuleType
from typing import Any

from pyinfra import host
from pyinfra.api import FunctionCommand, OperationError, OperationValueError, StringCommand, operation

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.docker import commands as docker_commands
from pytest_orbstack.backends.incus import commands as incus_commands
from pytest_orbstack.backends.orbstack import commands as orbstack_commands
from pytest_orbstack.backends.podman import commands as podman_commands
from pytest_orbstack.errors import InvalidInput, MachineError
from pytest_orbstack.facts import OrbStackConfig, OrbStackMachine
from pytest_orbstack.model.inputs import check_cloud_init, check_resources, check_user, parse_image
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import Resources

Commands = Generator[Any, None, None]


def _command(argv: list[str]) -> StringCommand:
    """A builder's argv as one shell command line, every word quoted."""
    return StringCommand(shlex.join(argv))


def _engine() -> Backend:
    """The host's engine: the backend object in host data, else the one its name chooses."""
    engine = host.data.get("_orbstack_engine")
    return engine if isinstance(engine, Backend) else get_backend(host.data.get("orbstack_backend"))


def _commands(engine: Backend) -> ModuleType:
    return {"docker": docker_commands, "incus": incus_commands,
            "podman": podman_commands}.get(engine.name, orbstack_commands)


def _valid(check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an input check; its error becomes pyinfra's OperationValueError (one clear line)."""
    try:
        return check(*args, **kwargs)
    except InvalidInput as exc:
        raise OperationValueError(str(exc)) from None


def _orbstack_requires(*features: str) -> None:
    """OperationError naming the OrbStack version ``features`` need, when this one is older."""
    from pytest_orbstack.backends.orbstack.client import Orbctl
    try:
        for feature in features:
            Orbctl().require(feature)
    except MachineError as exc:
        raise OperationError(str(exc)) from None


def _prepare_docker(engine: Any, image: str) -> None:
    """Build the machine image and the network a Docker machine needs (idempotent; run by
    pyinfra as a function command, so ``--dry`` does not build anything)."""
    engine.prepare(image, stable_tag=True)


def _docker_cloud_init(engine: Any, machine: str, cloud_init: str) -> None:
    """Run Debian's cloud-init with ``cloud_init`` in the booted machine (a failure is only
    logged, as on OrbStack)."""
    from pytest_orbstack.backends.docker import cloudinit
    cloudinit.run(engine.cli, machine, cloud_init)


def _create(engine: Backend, image: str, machine: str, user: str | None, arch: str | None,
            cloud_init: str | None, labels: dict[str, str], resources: Resources) -> Commands:
    # the engine's own create: Incus launches, then adds the user and waits in one exec; Podman's
    # run needs its network's gateway, known only once the network exists
    if engine.name in ("incus", "podman"):
        yield FunctionCommand(_engine_create, (engine, machine, image, user, cloud_init, labels, resources), {})
        return
    if engine.name == "orbstack":
        _orbstack_requires(*(["resources"] if resources.limits else []),
                           *(["isolated"] if resources.isolated else []))
        yield _command(orbstack_commands.create(image, machine, user=user, arch=arch,
                                                cloud_init=cloud_init, resources=resources))
        yield _command(orbstack_commands.ready(machine))
        return
    from pytest_orbstack.backends.docker.commands import default_login
    login = default_login(user)
    _valid(docker_commands.check_docker_resources, resources)
    labels = {**labels, **docker_commands.machine_labels(login, image, resources)}
    yield FunctionCommand(_prepare_docker, (engine, image), {})
    yield _command(docker_commands.run(machine, docker_commands.machine_image(image), labels,
                                       resources))
    setup = docker_commands.user_setup(login) if login != "root" else None
    yield _command(docker_commands.ready(machine, setup=setup))
    if cloud_init:
        yield FunctionCommand(_docker_cloud_init, (engine, machine, cloud_init), {})


@operation()
def machine(machine: str, image: str = "debian:bookworm", present: bool = True,
            running: bool = True, user: str | None = None, arch: str | None = None,
            cloud_init: str | None = None, labels: dict[str, str] | None = None,
            cpus: float | None = None, memory: str | int | None = None,
            disk: str | int | None = None, isolated: bool = False,
            capabilities: Sequence[str] = (), vm: bool = False, target: str | None = None) -> Commands:
    """Ensure a machine exists (created from ``image``, ready) and is running or stopped, or,
    with ``present=False``, that it does not exist.

    + machine: machine name (``^[a-zA-Z0-9][a-zA-Z0-9-.]+$``, not reserved)
    + image: ``distro[:version]`` used only when the machine is created
    + present: whether the machine should exist
    + running: whether it should run (ignored when ``present=False``)
    + user: default username (passwordless sudo), at creation
    + arch: ``amd64`` or ``arm64``, at creation (OrbStack only)
    + cloud_init: path of a cloud-init user-data file (on the engine's host), at creation
    + labels: Docker labels, at creation (OrbStack machines have none; ignored there)
    + cpus, memory, disk: the machine's limits, at creation (``memory="4G"``, ``disk="64G"``;
      OrbStack 2.2.0+ flags; Docker's own ``--cpus``/``--memory``, no disk limit there)
    + isolated: no access to the host's files, at creation (OrbStack 2.1+; Docker machines
      never have any)
    + capabilities: Linux capabilities such as ``NET_ADMIN`` for root in the machine, at
      creation (Docker; OrbStack machines are not restricted that way, ASSUMED: ignored there)
    + vm: a virtual machine (Incus ``--vm``), at creation; refused in one line where the engine
      or its host cannot make one
    + target: the Incus cluster member to put the machine on, at creation; refused in one line
      elsewhere
    """
    engine = _engine()
    cmds = _commands(engine)
    _valid(validate_machine_name, machine)
    current = host.get_fact(OrbStackMachine, machine=machine, engine=engine.name)
    if not present:
        if current is not None:
            yield _command(cmds.delete(engine.at(machine)))
        else:
            host.noop(f"machine {machine} does not exist")
        return
    if current is None:
        _valid(parse_image, image)
        _valid(check_user, user)
        cloud_init = _valid(check_cloud_init, cloud_init)
        resources = _valid(check_resources, cpus=cpus, memory=memory, disk=disk, isolated=isolated,
                           capabilities=list(capabilities), vm=vm, target=target)
        _valid(engine.refuse_resources, resources)
        yield from _create(engine, image, machine, user, arch, cloud_init, labels or {}, resources)
        if not running:
            yield _command(cmds.stop(engine.at(machine)))
        return
    is_running = current["state"] == "running"
    if running and not is_running:
        yield _command(cmds.start(engine.at(machine)))
        yield _command(cmds.ready(engine.at(machine)))
    elif not running and is_running:
        yield _command(cmds.stop(engine.at(machine)))
    else:
        host.noop(f"machine {machine} is {current['state']}")


@operation()
def clone(source: str, machine: str, running: bool = True) -> Commands:
    """Ensure ``machine`` exists as a clone of ``source`` (OrbStack: copy-on-write, left stopped
    by OrbStack; Docker: a commit of ``source`` run as a new machine), running and ready unless
    ``running=False``. An existing ``machine`` is left as it is."""
    engine = _engine()
    _valid(validate_machine_name, source)
    _valid(validate_machine_name, machine)
    if host.get_fact(OrbStackMachine, machine=machine, engine=engine.name) is not None:
        host.noop(f"machine {machine} exists")
        return
    # A missing source is left to the engine ("machine not found"): an earlier operation of
    # the same deploy may create it.
    if engine.name == "orbstack":
        _orbstack_requires("clone")
        yield _command(orbstack_commands.clone(source, machine))
        if running:
            yield _command(orbstack_commands.start(machine))
            yield _command(orbstack_commands.ready(machine))
        return
    yield FunctionCommand(_docker_clone, (engine, source, machine), {})
    if not running:
        yield _command(_commands(engine).stop(engine.at(machine)))


def _docker_clone(engine: Backend, source: str, machine: str) -> None:
    engine.clone(source, machine)


def _engine_create(engine: Backend, machine: str, image: str, user: str | None, cloud_init: str | None,
                  labels: dict[str, str], resources: Resources) -> None:
    engine.create(machine, image, user=user, cloud_init=cloud_init, labels=labels, resources=resources)


@operation()
def rename(old: str, new: str) -> Commands:
    """Ensure machine ``old`` is called ``new``. Nothing to do if ``new`` exists and ``old``
    does not; an error if both exist (the engine reports a missing ``old``)."""
    engine = _engine()
    _valid(validate_machine_name, old)
    _valid(validate_machine_name, new)
    old_info = host.get_fact(OrbStackMachine, machine=old, engine=engine.name)
    new_info = host.get_fact(OrbStackMachine, machine=new, engine=engine.name)
    if old_info is not None and new_info is not None:
        raise OperationError(f"cannot rename {old!r} to {new!r}: both machines exist")
    if old_info is None and new_info is not None:
        host.noop(f"machine {new} exists")
        return
    yield _command(_commands(engine).rename(engine.at(old), engine.at(new)))


@operation()
def config(key: str, value: str | int | bool) -> Commands:
    """Ensure an OrbStack configuration key has ``value`` (``orbctl config set``). Keys are those
    of ``orbctl config show``; orbctl itself rejects an unknown key ("Unknown configuration key:
    K"). OrbStack only: Docker has no such settings."""
    if _engine().name != "orbstack":
        raise OperationValueError("config: OrbStack settings exist only on the orbstack engine")
    desired = str(value).lower() if isinstance(value, bool) else str(value)
    if host.get_fact(OrbStackConfig).get(key) == desired:
        host.noop(f"config {key} is {desired}")
        return
    yield _command(orbstack_commands.config_set(key, desired))


@operation()
def machine_username(machine: str, username: str) -> Commands:
    """Ensure the default username of ``machine`` (OrbStack config key
    ``machine.<name>.username``). OrbStack only: on Docker the user is chosen at creation."""
    if _engine().name != "orbstack":
        raise OperationValueError("machine_username: use machine(user=...) on the docker engine")
    _valid(validate_machine_name, machine)
    current = host.get_fact(OrbStackMachine, machine=machine)
    if current is not None and current["default_username"] == username:
        host.noop(f"machine {machine} username is {username}")
        return
    yield _command(orbstack_commands.config_set(f"machine.{machine}.username", username))
