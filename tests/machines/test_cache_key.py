"""The golden cache's key (machines/cache.py) without an engine: which changes give a new
digest and which do not; and the cache's default mode (settings.cache_mode)."""

from __future__ import annotations

import pytest

from pytest_orbstack import settings
from pytest_orbstack.machines import cache
from pytest_orbstack.machines.cache import cache_digest, deploy_folders, folder_digest


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "deploy.py").write_text("print('deploy')\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "site.j2").write_text("port {{ port }}\n")
    return tmp_path


def test_every_file_of_the_folder_counts_and_caches_do_not(folder):
    before = folder_digest(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "deploy.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref\n")
    assert folder_digest(folder) == before
    (folder / "templates" / "site.j2").write_text("port 1\n")
    changed = folder_digest(folder)
    assert changed != before
    (folder / "templates" / "site.j2").chmod(0o755)
    assert folder_digest(folder) != changed  # an executable bit ships too


def test_the_base_image_versions_and_project_are_in_the_digest(folder, monkeypatch):
    deploy = str(folder / "deploy.py")
    digest = cache_digest("golden:k", deploy, "sha256:1", "p")
    assert cache_digest("golden:k", deploy, "sha256:1", "p") == digest
    assert len({digest, cache_digest("golden:k2", deploy, "sha256:1", "p"),
                cache_digest("golden:k", deploy, "sha256:2", "p"),
                cache_digest("golden:k", deploy, "sha256:1", "q")}) == 4
    monkeypatch.setattr(cache, "version", lambda name: "0.0.1")
    assert cache_digest("golden:k", deploy, "sha256:1", "p") != digest  # pyinfra's version
    monkeypatch.undo()
    monkeypatch.setattr("pytest_orbstack.__version__", "0.0.1")
    assert cache_digest("golden:k", deploy, "sha256:1", "p") != digest  # this package's


def test_a_deploy_function_is_keyed_by_its_module_folder():
    assert deploy_folders(test_a_deploy_function_is_keyed_by_its_module_folder)[-1].name == "machines"


@pytest.mark.parametrize(("env", "mode"), [({}, "on"), ({"CI": "true"}, "off"), ({"CI": "false"}, "on"),
                                           ({"CI": "1", "PYTEST_ORBSTACK_CACHE": "on"}, "on")])
def test_the_cache_is_on_unless_in_ci(monkeypatch, env, mode):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYTEST_ORBSTACK_CACHE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert settings.cache_mode() == mode
