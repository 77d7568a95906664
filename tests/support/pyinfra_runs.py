"""One deploy on one machine through the package's deploy run, as ``pyinfra -y @orbstack/NAME
deploy.py`` runs it: the tests' shorthand for :func:`pytest_orbstack.pyinfra.deploy.run_deploy`."""

from __future__ import annotations

from typing import Any

from pytest_orbstack.model.inputs import check_deploy
from pytest_orbstack.model.results import DeployResult
from pytest_orbstack.pyinfra.deploy import Target, run_deploy


def apply_deploy(machine: str, deploy: Any, *, backend: Any, **options: Any) -> DeployResult:
    """:func:`run_deploy` on ``machine`` alone (``options``: its ``data=`` and ``config=``), with
    ``deploy`` checked first as a machine's apply checks it."""
    return run_deploy([Target(machine)], check_deploy(deploy), backend=backend, **options)[machine]
