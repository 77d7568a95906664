"""``@orbstack`` in a pyinfra inventory: the host data the connector reads, and the machines a
bare ``@orbstack`` names (the connector's ``make_names_data``): the engine's running machines,
less other pytest sessions'. Neither is on a command's path."""

from __future__ import annotations

import inspect

from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.base import DataMeta

from pytest_orbstack.backends import get_backend
from pytest_orbstack.errors import MachineError
from pytest_orbstack.model.names import PREFIX

connector_data_meta: dict[str, DataMeta] = {
    "orbstack_machine": DataMeta("Machine name (``@orbstack/NAME``)"),
    "orbstack_backend": DataMeta("Engine: ``orbstack``, ``docker``, ``incus`` or ``auto`` (unset: "
                                 "``$PYTEST_ORBSTACK_BACKEND``, else auto: OrbStack when ``orbctl`` "
                                 "answers, else Docker, else Incus when its daemon answers)", default=None),
    "orbstack_user": DataMeta("Login user (unset: the machine's default user, which has "
                              "passwordless sudo)", default=None),
    "_orbstack_engine": DataMeta("The engine object itself (API use: pytest-orbstack's Machine "
                                 "hands over its own engine)", default=None),
}


def _cli_data_engine() -> str | None:
    """``--data orbstack_backend=...`` of the pyinfra command line, for ``@orbstack`` without
    a name: pyinfra expands connector names before host data exists, so the inventory being
    built is asked for its override data (the only place ``--data`` is then)."""
    frame = inspect.currentframe()
    while frame is not None:
        inventory = frame.f_locals.get("self")
        override = getattr(inventory, "override_data", None)
        if isinstance(override, dict) and "orbstack_backend" in override:
            return str(override["orbstack_backend"])
        frame = frame.f_back
    return None


def machine_names() -> list[str]:
    """Running machines, less those of other pytest sessions (``pto-*``: not ours to touch)."""
    try:
        machines = get_backend(_cli_data_engine()).list()
    except MachineError as exc:
        raise ConnectError(str(exc)) from None
    return [m.name for m in machines if m.running and not m.name.startswith(PREFIX)]
