"""Make a machine through the project's own pyinfra operation (:func:`operations.machine`),
run by pyinfra's API on ``@local``, exactly as a user's ``pyinfra @local deploy.py`` would.

The fixtures make golden and session-shared machines this way (once per session, so the
pyinfra run's cost does not matter); per-test machines go through the very same command
builders directly (docs/performance.md has both routes' cost).
"""

from __future__ import annotations

import os
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.process import last_line
from pytest_orbstack.errors import MachineError
from pytest_orbstack.model.types import NO_RESOURCES, Resources


def provision_machine(engine: Backend, name: str, image: str, *, user: str | None = None,
                      cloud_init: str | os.PathLike[str] | None = None,
                      labels: dict[str, str] | None = None, resources: Resources = NO_RESOURCES) -> None:
    """Create ``name`` on ``engine`` with ``operations.machine`` (ready when it returns);
    MachineError naming the failed command's last stderr line otherwise."""
    from pytest_orbstack.pyinfra import operations

    env = dict(getattr(engine, "env_overrides", {}) or {})  # e.g. DOCKER_HOST of this engine
    inventory = Inventory((["@local"], {"orbstack_backend": engine.name, "_orbstack_engine": engine}))
    state = State(inventory, Config())
    results: dict[Any, Any] = {}
    try:
        connect_all(state)
        kwargs: dict[str, Any] = dict(machine=name, image=image, user=user, labels=labels or {},
                                      cloud_init=os.fspath(cloud_init) if cloud_init else None,
                                      cpus=resources.cpus, memory=resources.memory_mib,
                                      disk=resources.disk_mib, isolated=resources.isolated,
                                      capabilities=list(resources.capabilities), vm=resources.vm,
                                      target=resources.target)
        if env:
            kwargs["_env"] = env
        results = add_op(state, operations.machine, **kwargs)
        run_ops(state)
    except Exception as exc:  # pyinfra stops with "No hosts remaining" when the operation failed
        failure = str(exc)
    else:
        failure = ""
    finally:
        disconnect_all(state)
    meta = results.get(inventory.get_host("@local"))
    if failure or meta is None or not meta.did_succeed(_raise_if_not_complete=False):
        stderr = meta.stderr if meta is not None and meta.is_complete() else ""
        last = last_line(stderr, failure or "operation failed")
        raise MachineError(f"{engine.name} machine {name!r} could not be made by operations.machine: {last}",
                           stderr=stderr)
