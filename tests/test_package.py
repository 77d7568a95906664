"""The package as users meet it: its public API, its import cost, its fixtures' documentation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest_orbstack

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_and_version():
    from pytest_orbstack import MachineError, OrbStackError
    assert OrbStackError is MachineError
    assert pytest_orbstack.__version__[0].isdigit()
    assert set(pytest_orbstack.__all__) <= set(dir(pytest_orbstack))
    assert (Path(pytest_orbstack.__file__).parent / "py.typed").exists()
    assert (ROOT / "LICENSE").exists() and (ROOT / "CHANGELOG.md").exists()


def test_loading_the_plugin_imports_neither_pyinfra_nor_testinfra():
    code = ("import sys, pytest_orbstack.plugin; "
            "print(sorted(m for m in ('pyinfra', 'testinfra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_fixture_is_documented(pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    text = result.stdout.str()
    ours = text.split("fixtures defined from pytest_orbstack.plugin.fixtures")[1].split("fixtures defined from")[0]
    for name in ("orbstack_backend", "orbstack_machine", "orbstack_module_machine",
                 "orbstack_session_machine", "orbstack "):
        assert name in ours
    assert "no docstring available" not in ours and "_orbstack_lifecycle" not in ours
