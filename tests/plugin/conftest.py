"""The ``inner`` fixture: an inner pytest project on the docker backend (``incus_inner``: on
incus; see tests/support/innerpytest.py)."""

from __future__ import annotations

import subprocess

import pytest
from incusenv import incus, instances, why_no_incus
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


@pytest.fixture
def incus_inner(pytester, monkeypatch, tmp_path):
    """``inner`` on the incus engine (skipped with one line when Incus cannot be used); checks
    that none of its sessions left an instance."""
    why = why_no_incus()
    if why:
        pytest.skip(why)
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "incus")
    monkeypatch.setenv("COLUMNS", "250")
    pytester.makeini("[pytest]\norbstack_backend = incus\n")
    yield pytester
    leaked = set().union(*[instances(s) for s in sessions_of(tmp_path / "state")])
    for name in leaked:
        incus("delete", "--force", name)
    assert not leaked, f"instances leaked: {leaked}"
