"""The paths and names users rely on, whatever moves inside the package: the entry points pytest
and pyinfra load, the import paths the README shows, and the names pyinfra prints for our
operations and facts (users' ``allow_changes=`` patterns and ``pyinfra -v`` output match them).
Each expected value is the one the code before the layered package gave (commit cbbc6c6)."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from testenv import needs_docker

OPERATIONS = ["clone", "config", "machine", "machine_username", "rename"]
FACTS = {  # the name pyinfra gives each fact: its class's full module path
    "OrbStackMachines": "pytest_orbstack.facts.engine.OrbStackMachines",
    "OrbStackMachine": "pytest_orbstack.facts.engine.OrbStackMachine",
    "OrbStackConfig": "pytest_orbstack.facts.engine.OrbStackConfig",
    "OrbStackConfigValue": "pytest_orbstack.facts.engine.OrbStackConfigValue",
    "MachineNetwork": "pytest_orbstack.facts.machine.MachineNetwork",
    "Connectivity": "pytest_orbstack.facts.machine.Connectivity",
    "DnsLookup": "pytest_orbstack.facts.machine.DnsLookup",
    "MachineStatus": "pytest_orbstack.facts.machine.MachineStatus",
    "SystemLogs": "pytest_orbstack.facts.machine.SystemLogs",
    "StaleServices": "pytest_orbstack.facts.services.StaleServices",
    "BootDrift": "pytest_orbstack.facts.boot.BootDrift",
}
TOP_LEVEL = ["CommandTimeout", "DeployError", "DeployResult", "DryRunError", "EngineUnavailable", "IdempotenceError",
             "InvalidInput", "InvalidName", "Machine", "MachineError", "MachineExists", "MachineGroup",
             "MachineNotFound", "OperationResult", "OrbStackError", "Reachability", "Record", "Resolution",
             "SharedMachineError", "StaleServicesError", "UnknownConfigKey", "UnknownImage"]


def test_pytest_loads_the_plugin_by_its_entry_point():
    (plugin,) = entry_points(group="pytest11", name="orbstack")
    assert plugin.value == "pytest_orbstack.plugin"
    module = plugin.load()
    assert module.__name__ == "pytest_orbstack.plugin"
    assert callable(module.pytest_addoption) and callable(module.orbstack_machine)  # hooks and fixtures


def test_pytest_runs_the_plugin_from_its_entry_point(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--trace-config", "--co", "-q")
    result.stdout.fnmatch_lines(["*pytest_orbstack.plugin*"])
    assert "--orbstack-prune" in pytester.runpytest_subprocess("--help").stdout.str()


def test_pyinfra_finds_the_orbstack_connector():
    from pyinfra.api.connectors import get_all_connectors

    (connector,) = entry_points(group="pyinfra.connectors", name="orbstack")
    cls = connector.load()
    assert cls.__name__ == "OrbStackConnector"
    assert get_all_connectors()["orbstack"] is cls
    from pytest_orbstack.connector import OrbStackConnector
    assert OrbStackConnector is cls


def test_the_public_import_paths():
    import pytest_orbstack
    from pytest_orbstack import facts, operations
    from pytest_orbstack.orbctl import Orbctl

    assert [name for name in OPERATIONS if callable(getattr(operations, name))] == OPERATIONS
    assert sorted(facts.__all__) == sorted(FACTS)
    assert inspect.isclass(Orbctl) and callable(Orbctl.version)
    for name in TOP_LEVEL:
        value = getattr(pytest_orbstack, name)
        assert inspect.isclass(value), name
    for name in ["CommandTimeout", "EngineUnavailable", "InvalidInput", "InvalidName", "MachineExists",
                 "MachineNotFound", "SharedMachineError", "UnknownConfigKey", "UnknownImage"]:
        assert issubclass(getattr(pytest_orbstack, name), pytest_orbstack.MachineError), name
    assert pytest_orbstack.OrbStackError is pytest_orbstack.MachineError


@pytest.mark.parametrize("name", OPERATIONS)
def test_pyinfra_names_each_operation_as_before(name):
    from pyinfra.api.operation import get_operation_name_from_func

    function = getattr(importlib.import_module("pytest_orbstack.operations"), name)
    assert get_operation_name_from_func(function._inner) == f"operations.{name}"


@needs_docker("the pyinfra CLI run of operations.machine")
def test_the_pyinfra_cli_prints_the_operation_by_that_name(tmp_path):
    """``pyinfra @local pytest_orbstack.operations.machine ...`` on the Docker engine, for a
    machine that does not exist and should not (nothing to do): its lines name the operation."""
    argv = [sys.executable, "-m", "pyinfra", "-y", "@local", "pytest_orbstack.operations.machine",
            "machine=pto-no-such-machine", "present=False", "--data", "orbstack_backend=docker"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Starting operation: operations.machine (machine=pto-no-such-machine, present=False)" in out


@pytest.mark.parametrize("name", sorted(FACTS))
def test_pyinfra_names_each_fact_as_before(name):
    from pytest_orbstack import facts

    assert getattr(facts, name).name == FACTS[name]
