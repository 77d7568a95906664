"""One deploy on one machine through the package's deploy run, as ``pyinfra -y @orbstack/NAME
deploy.py`` runs it: the tests' shorthand for :func:`pytest_orbstack.pyinfra.deploy.run_deploy`."""

from __future__ import annotations

from typing import Any

from pytest_orbstack.model.results import DeployResult
from pytest_orbstack.pyinfra.deploy import Target, run_deploy


def apply_deploy(machine: str, deploy: Any, *, backend: Any, **options: Any) -> DeployResult:
    """:func:`run_deploy` on ``machine`` alone (``options``: its ``data=`` and ``config=``)."""
    return run_deploy([Target(machine)], deploy, backend=backend, **options)[machine]
