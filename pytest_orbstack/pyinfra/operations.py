"""PyInfra operations for machines and OrbStack's configuration, on any engine.

They run on the host that has the engine (``pyinfra @local deploy.py``: the Mac with OrbStack,
or a Docker host with ``--data orbstack_backend=docker``), compare facts with the desired state
and yield the engine's own commands (its builders, ``Backend.commands``; the steps that make a
machine, ``Backend.create_steps``) only where they differ, so a second run of the same deploy
changes nothing. They ask the engine object and know no engine by name. The engine is chosen by the one rule of
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
from typing import Any

from pyinfra import host
from pyinfra.api import FunctionCommand, OperationError, OperationValueError, StringCommand, operation

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend, Step
from pytest_orbstack.errors import InvalidInput, MachineError
from pytest_orbstack.facts import OrbStackConfig, OrbStackMachine
from pytest_orbstack.model.inputs import check_cloud_init, check_resources, check_user, parse_image
from pytest_orbstack.model.names import validate_machine_name

Commands = Generator[Any, None, None]


def _command(argv: list[str]) -> StringCommand:
    """A builder's argv as one shell command line, every word quoted."""
    return StringCommand(shlex.join(argv))


def _engine() -> Backend:
    """The host's engine: the backend object in host data, else the one its name chooses."""
    engine = host.data.get("_orbstack_engine")
    return engine if isinstance(engine, Backend) else get_backend(host.data.get("orbstack_backend"))


def _valid(check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an input check; its error becomes pyinfra's OperationValueError (one clear line)."""
    try:
        return check(*args, **kwargs)
    except InvalidInput as exc:
        raise OperationValueError(str(exc)) from None


def _steps(plan: Any, *args: Any, **kwargs: Any) -> Commands:
    """The engine's steps (:meth:`Backend.create_steps`, :meth:`~Backend.clone_steps`) as pyinfra
    commands: an argv as a shell command, a call as a FunctionCommand. An input the engine
    refuses is pyinfra's OperationValueError, an engine too old for it OperationError."""
    try:
        steps: list[Step] = _valid(plan, *args, **kwargs)
    except MachineError as exc:
        raise OperationError(str(exc)) from None
    for step in steps:
        yield _command(step) if isinstance(step, list) else FunctionCommand(*step)


def _orbstack_settings(engine: Backend, refusal: str) -> Any:
    """The engine's ``config set`` builder (only OrbStack's builders have one); elsewhere
    OperationValueError with ``refusal`` (``{engine}``: the engine's name)."""
    config_set = getattr(engine.commands, "config_set", None)
    if config_set is None:
        raise OperationValueError(refusal.format(engine=engine.name))
    return config_set


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
    cmds = engine.commands
    _valid(validate_machine_name, machine)
    current = host.get_fact(OrbStackMachine, machine=machine, engine=engine)
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
        yield from _steps(engine.create_steps, machine, image, arch=arch, user=user, cloud_init=cloud_init,
                          labels=labels or {}, resources=resources)
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
    if host.get_fact(OrbStackMachine, machine=machine, engine=engine) is not None:
        host.noop(f"machine {machine} exists")
        return
    # A missing source is left to the engine ("machine not found"): an earlier operation of
    # the same deploy may create it.
    yield from _steps(engine.clone_steps, source, machine, running=running)


@operation()
def rename(old: str, new: str) -> Commands:
    """Ensure machine ``old`` is called ``new``. Nothing to do if ``new`` exists and ``old``
    does not; an error if both exist (the engine reports a missing ``old``)."""
    engine = _engine()
    _valid(validate_machine_name, old)
    _valid(validate_machine_name, new)
    old_info = host.get_fact(OrbStackMachine, machine=old, engine=engine)
    new_info = host.get_fact(OrbStackMachine, machine=new, engine=engine)
    if old_info is not None and new_info is not None:
        raise OperationError(f"cannot rename {old!r} to {new!r}: both machines exist")
    if old_info is None and new_info is not None:
        host.noop(f"machine {new} exists")
        return
    yield _command(engine.commands.rename(engine.at(old), engine.at(new)))


@operation()
def config(key: str, value: str | int | bool) -> Commands:
    """Ensure an OrbStack configuration key has ``value`` (``orbctl config set``). Keys are those
    of ``orbctl config show``; orbctl itself rejects an unknown key ("Unknown configuration key:
    K"). OrbStack only: Docker has no such settings."""
    config_set = _orbstack_settings(_engine(), "config: OrbStack settings exist only on the orbstack engine, "
                                               "not {engine}")
    desired = str(value).lower() if isinstance(value, bool) else str(value)
    if host.get_fact(OrbStackConfig).get(key) == desired:
        host.noop(f"config {key} is {desired}")
        return
    yield _command(config_set(key, desired))


@operation()
def machine_username(machine: str, username: str) -> Commands:
    """Ensure the default username of ``machine`` (OrbStack config key
    ``machine.<name>.username``). OrbStack only: on Docker the user is chosen at creation."""
    config_set = _orbstack_settings(_engine(), "machine_username: use machine(user=...) on the {engine} engine")
    _valid(validate_machine_name, machine)
    current = host.get_fact(OrbStackMachine, machine=machine)
    if current is not None and current["default_username"] == username:
        host.noop(f"machine {machine} username is {username}")
        return
    yield _command(config_set(f"machine.{machine}.username", username))
