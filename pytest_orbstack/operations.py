"""The public path of pytest-orbstack's PyInfra operations (``from pytest_orbstack import
operations``); they live in :mod:`pytest_orbstack.pyinfra.operations`, and pyinfra names them
``operations.<name>`` from either path."""

from pytest_orbstack.pyinfra.operations import clone, config, machine, machine_username, rename

__all__ = ["clone", "config", "machine", "machine_username", "rename"]
