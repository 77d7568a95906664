"""pytest-orbstack: disposable OrbStack (or Docker) Linux machines for testing PyInfra deploys.

The public API is re-exported here. It is loaded lazily, so that importing the package (which
pytest does for the plugin in every run) costs nothing until a name is used::

    from pytest_orbstack import Machine, DeployError, IdempotenceError, DryRunError
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

# public name -> module that defines it
_EXPORTS = {
    "Machine": "machines.machine",
    "MachineGroup": "machines.machine",
    "IdempotenceError": "model.results",
    "DeployResult": "model.results",
    "OperationResult": "model.results",
    "DeployError": "model.results",
    "DryRunError": "model.dry_run",
    "StaleServicesError": "model.results",
    "MachineError": "errors",
    "OrbStackError": "errors",
    "MachineNotFound": "errors",
    "MachineExists": "errors",
    "InvalidName": "errors",
    "InvalidInput": "errors",
    "UnknownImage": "errors",
    "UnknownConfigKey": "errors",
    "EngineUnavailable": "errors",
    "CommandTimeout": "errors",
    "SharedMachineError": "errors",
    "Reachability": "model.checks",
    "Resolution": "model.checks",
    "Record": "model.checks",
}

__all__ = [
    "CommandTimeout", "DeployError", "DeployResult", "DryRunError", "EngineUnavailable", "IdempotenceError",
    "InvalidInput", "InvalidName", "Machine", "MachineError", "MachineExists", "MachineGroup",
    "MachineNotFound", "OperationResult", "OrbStackError", "Reachability", "Record", "Resolution",
    "SharedMachineError", "StaleServicesError", "UnknownConfigKey", "UnknownImage",
    "__version__",
]

if TYPE_CHECKING:
    from pytest_orbstack.errors import (
        CommandTimeout,
        EngineUnavailable,
        InvalidInput,
        InvalidName,
        MachineError,
        MachineExists,
        MachineNotFound,
        OrbStackError,
        SharedMachineError,
        UnknownConfigKey,
        UnknownImage,
    )
    from pytest_orbstack.machines.machine import Machine, MachineGroup
    from pytest_orbstack.model.checks import Reachability, Record, Resolution
    from pytest_orbstack.model.dry_run import DryRunError
    from pytest_orbstack.model.results import (
        DeployError,
        DeployResult,
        IdempotenceError,
        OperationResult,
        StaleServicesError,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_orbstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
