"""pyinfra-examples' deploy-functions: its @deploy functions, applied to disposable machines by
the ``orbstack`` marker and the ``orbstack_machine`` factory.

The example's operations carry no ``_sudo`` (its README runs them in root containers) and the
machines' default user is not root: each apply gives pyinfra's ``_sudo`` as host data."""

import importlib.util
from pathlib import Path

import pytest

SUDO = {"_sudo": True}


def load(path):
    """The module of a deploy file (the example's folder name is no Python package name)."""
    spec = importlib.util.spec_from_file_location("deploy_functions", Path(__file__).parent / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load("vendor/pyinfra-examples/deploy-functions/deploy.py")


@pytest.mark.orbstack(deploy=example.install_base_packages, data=SUDO, check_idempotent=True)
def test_base_packages(orbstack):
    for package in ("dstat", "iftop"):
        assert orbstack.host.package(package).is_installed


def test_nginx(orbstack_machine):
    # setup_nginx removes /etc/nginx/nginx.conf, then reloads nginx: the reload fails
    machine = orbstack_machine(deploy=example.setup_nginx, data=SUDO)
    assert machine.host.service("nginx").is_running
