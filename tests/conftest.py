"""The test tree, by one rule: a folder per layer of the package, a folder per thing outside it.

- ``tests/<layer>/`` tests the modules of ``pytest_orbstack/<layer>/``, whatever a test costs
  (pure function or real machine): ``model/``, ``backends/``, ``pyinfra/`` (with ``facts/`` and
  ``testinfra_backend.py``, the modules pyinfra and testinfra load), ``machines/``, ``plugin/``.
  ``tests/test_*.py`` test the package's top level: its public paths and facade.
- Outside the package: ``acceptance/`` (the built wheel in a user's repository), ``setup/``
  (``scripts/dev.sh``), ``contracts/`` (what real OrbStack printed, replayed against our client
  and against the orbctl emulator, and the emulator's own tests), ``ci/`` (the CI recipes of
  docs/ci/, their shell steps run here).
- ``support/`` holds no tests: the scaffolding the tests import (the orbctl emulator, inner
  pytest runs, the test environment, deploy helpers). It is on ``sys.path`` through pytest's
  ``pythonpath`` setting in pyproject.toml.

The fixtures here put the orbctl emulator (support/orbctl_emulator) on PATH and make machines
through it. The emulator drives real Docker containers running systemd; on a Mac with OrbStack
the same tests can run against the real ``orbctl`` by setting PYTEST_ORBSTACK_REAL=1. A module
that asks for :func:`orbctl_on_incus` runs the emulator on Incus LXC containers instead (what
OrbStack's machines are), skipped in one line where Incus is unusable.
"""

from __future__ import annotations

import os

import pytest
from emusubstrate import substrate_env
from orbctl_emulator.shims import install_shims
from testenv import REAL, unique

from pytest_orbstack.backends.orbstack.client import Orbctl

# The suite's inner pytest runs are throwaway projects: a golden machine they cached would
# outlive them. Cache tests ask for it with --orbstack-cache (and remove what they made).
os.environ.setdefault("PYTEST_ORBSTACK_CACHE", "off")


@pytest.fixture(scope="session")
def orbctl_env(tmp_path_factory) -> dict[str, str]:
    """Environment in which ``orbctl``/``orb`` is the emulator (or the real one, see above)."""
    if REAL:
        return dict(os.environ)
    bin_dir = install_shims(tmp_path_factory.mktemp("orbctl-bin"))
    home = tmp_path_factory.mktemp("orbctl-home")
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "ORBCTL_EMULATOR_HOME": str(home)}


@pytest.fixture(scope="session")
def orbctl_path(orbctl_env, pytestconfig):
    """Put the emulator on this process's PATH for the session (restored at the end)."""
    saved = {k: os.environ.get(k) for k in ("PATH", "ORBCTL_EMULATOR_HOME")}
    os.environ.update({k: orbctl_env[k] for k in saved if k in orbctl_env})
    yield orbctl_env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def orb(orbctl_path) -> Orbctl:
    return Orbctl()


@pytest.fixture(scope="module")
def orb_machine(orb):
    """A running machine (debian:bookworm) for a whole module, deleted afterwards."""
    name = unique("e2e")
    orb.create("debian:bookworm", name)
    yield name
    orb.delete(name)


@pytest.fixture(scope="module")
def orbctl_on_incus(orbctl_path, tmp_path_factory):
    """For the rest of the module, this process's ``orbctl`` is the emulator on the Incus
    substrate (``ORBCTL_EMULATOR_SUBSTRATE=incus``, its own home); restored afterwards."""
    if REAL:
        pytest.skip("real OrbStack runs its own machines")
    env = {**substrate_env("incus"), "ORBCTL_EMULATOR_HOME": str(tmp_path_factory.mktemp("orbctl-home-incus"))}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield {**orbctl_path, **env}
