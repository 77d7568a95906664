"""The ``inner`` fixture: an inner pytest project on the docker backend (see tests/support/innerpytest.py)."""

from __future__ import annotations

import subprocess

import pytest
from innerpytest import containers, sessions_of


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    """An inner project using the docker backend with its own state dir; checks that none of
    its sessions left a machine (other users of the engine are not looked at)."""
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "docker")
    monkeypatch.setenv("COLUMNS", "250")  # the -ra summary lines whole, as on CI (never cut there)
    pytester.makeini("[pytest]\norbstack_backend = docker\n")
    yield pytester
    sessions = sessions_of(tmp_path / "state")
    leaked = set().union(*[containers(s) for s in sessions])
    for name in leaked:  # clean up (the machines, then their sessions' images), then fail
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    for session in sessions if leaked else []:
        images = subprocess.run(["docker", "images", "-q", "--filter", f"label=pytest-orbstack.session={session}"],
                                capture_output=True, text=True).stdout.split()
        subprocess.run(["docker", "rmi", "-f", *images], capture_output=True) if images else None
    assert not leaked, f"machines leaked: {leaked}"
