"""The ``inner`` fixture: an inner pytest project on the docker backend (``incus_inner``: on
incus; ``engine_inner``: on the ``engine`` a test is parametrized with; see
tests/support/innerpytest.py)."""

from __future__ import annotations

import subprocess

import pytest
from incusenv import incus, instances, why_no_incus
from innerpytest import containers, sessions_of
from podmanenv import why_no_podman

WHY_NOT = {"docker": lambda: None, "incus": why_no_incus, "podman": why_no_podman}


def on_engine(engine: str, pytester, monkeypatch, tmp_path):
    """An inner project using ``engine`` with its own state dir (skipped with one line when the
    engine cannot be used); afterwards checks that none of its sessions left a machine (other
    users of the engine are not looked at), removing any it finds (machines, then their
    sessions' images) before it fails."""
    why = WHY_NOT[engine]()
    if why:
        pytest.skip(why)
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", engine)
    monkeypatch.setenv("COLUMNS", "250")  # the -ra summary lines whole, as on CI (never cut there)
    pytester.makeini(f"[pytest]\norbstack_backend = {engine}\n")
    yield pytester
    sessions = sessions_of(tmp_path / "state")
    if engine == "incus":
        leaked = set().union(*[instances(s) for s in sessions])
        for name in leaked:
            incus("delete", "--force", name)
        assert not leaked, f"instances leaked: {leaked}"
        return
    leaked = set().union(*[containers(s, engine) for s in sessions])
    for name in leaked:
        subprocess.run([engine, "rm", "-f", name], capture_output=True)
    for session in sessions if leaked else []:
        images = subprocess.run([engine, "images", "-q", "--filter", f"label=pytest-orbstack.session={session}"],
                                capture_output=True, text=True).stdout.split()
        subprocess.run([engine, "rmi", "-f", *images], capture_output=True) if images else None
    assert not leaked, f"machines leaked: {leaked}"


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    """An inner project on the docker backend (see :func:`on_engine`)."""
    yield from on_engine("docker", pytester, monkeypatch, tmp_path)


@pytest.fixture
def incus_inner(pytester, monkeypatch, tmp_path):
    """``inner`` on the incus engine."""
    yield from on_engine("incus", pytester, monkeypatch, tmp_path)


@pytest.fixture
def engine_inner(engine, pytester, monkeypatch, tmp_path):
    """``inner`` on the test's ``engine`` parameter (docker, incus, podman)."""
    yield from on_engine(engine, pytester, monkeypatch, tmp_path)
