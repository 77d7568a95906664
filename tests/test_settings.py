"""settings.py is the one reader of the environment: every variable it reads is in its
VARIABLES and in the README's table of environment variables, and nothing else is; no other
module of the package reads ``os.environ``; a variable takes effect when set, not at import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pytest_orbstack
from pytest_orbstack import settings
from pytest_orbstack.errors import InvalidInput

PACKAGE = Path(pytest_orbstack.__file__).parent
README = PACKAGE.parent / "README.md"


def readme_variables() -> list[str]:
    """The first column of the README's table under "Environment variables"."""
    section = README.read_text().split("### Environment variables", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([A-Z_]+)` \|", section, re.MULTILINE)


def variables_read() -> set[str]:
    """The names settings.py passes to its one reader, ``_get``."""
    tree = ast.parse(Path(settings.__file__).read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_get"
            and node.args and isinstance(node.args[0], ast.Constant)}


def test_the_readme_table_is_what_settings_reads() -> None:
    listed = readme_variables()
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == set(settings.VARIABLES) == variables_read()


def test_only_settings_reads_the_environment() -> None:
    readers = [f"{path.relative_to(PACKAGE)}:{number}"
               for path in PACKAGE.rglob("*.py") if path.name != "settings.py"
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"os\.environ|getenv", line)]
    assert readers == []


def test_variables_are_read_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PYTEST_ORBSTACK_SHELL", "off")
    monkeypatch.setenv("PYTEST_ORBSTACK_ENGINE_TIMEOUT", "7.5")
    assert (settings.state_dir(), settings.shell_enabled(), settings.call_timeout()) == (tmp_path, False, 7.5)
    monkeypatch.delenv("PYTEST_ORBSTACK_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert settings.state_dir() == tmp_path / "xdg" / "pytest-orbstack"
    monkeypatch.setenv("PYTEST_ORBSTACK_ENGINE_TIMEOUT", "soon")
    with pytest.raises(InvalidInput, match="PYTEST_ORBSTACK_ENGINE_TIMEOUT='soon': expected a number"):
        settings.call_timeout()
