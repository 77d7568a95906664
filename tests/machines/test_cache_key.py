"""The golden cache's key (machines/cache.py) without an engine: which changes give a new
digest and which do not; and the cache's default mode (settings.cache_mode)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_orbstack import settings
from pytest_orbstack.machines import cache, deploy_reads
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


def test_a_symbolic_link_counts_by_its_target(tmp_path):
    """A linked folder's files and a linked file count by content; a dangling link by its text."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "x.j2").write_text("one\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "templates").symlink_to("../shared")
    (site / "loop").symlink_to(".")  # a link back: walked once
    before = folder_digest(site)
    (tmp_path / "shared" / "x.j2").write_text("two\n")
    linked = folder_digest(site)
    assert linked != before
    (site / "gone").symlink_to("nowhere")
    dangling = folder_digest(site)
    assert dangling != linked
    (site / "gone").unlink()
    (site / "gone").symlink_to("elsewhere")
    assert folder_digest(site) != dangling


DEPLOY_READS = '''
import os
import json  # the standard library's: not an input
import seenlib  # loaded before the deploy ran
import freshlib  # loaded by the deploy
here = os.path.dirname(__file__)
open(os.path.join(here, "..", "outside.txt")).read()
open(os.path.join(here, "inside.txt")).read()  # in the folder's digest
os.environ.get("APP_MODE")
os.getenv("OTHER", "x")
"PYTEST_SOMETHING" in os.environ
'''


def test_what_a_deploy_reads_outside_its_folder_is_recorded_and_compared(tmp_path, monkeypatch):
    """Inside a recording, what user code reads outside the deploy's folder is kept: files it
    opens, local modules it imports (loaded now or before), environment variables (not
    ``PYTEST_*``); what this package reads is not; a later change of any is named."""
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("APP_MODE", "GOOD")
    monkeypatch.delenv("OTHER", raising=False)
    site, lib = tmp_path / "site", tmp_path / "lib"
    site.mkdir(), lib.mkdir()
    (tmp_path / "outside.txt").write_text("GOOD")
    (site / "inside.txt").write_text("GOOD")
    (site / "deploy.py").write_text(DEPLOY_READS)
    (lib / "seenlib.py").write_text("import deeplib\n")
    (lib / "deeplib.py").write_text("")
    (lib / "freshlib.py").write_text("")
    monkeypatch.syspath_prepend(str(lib))
    for name in ("seenlib", "deeplib", "freshlib"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import seenlib  # noqa: F401
    with deploy_reads.recording([site]) as recording:
        exec(compile(DEPLOY_READS, str(site / "deploy.py"), "exec"), {"__file__": str(site / "deploy.py")})
        settings.cache_mode()  # this package reads the environment: not the deploy's input
    assert os._Environ.__getitem__ is deploy_reads._getitem  # put back
    found = deploy_reads.inputs(recording, [str(site / "deploy.py")])
    assert sorted(found["env"]) == ["APP_MODE", "OTHER"]
    assert sorted(Path(f).name for f in found["files"]) == ["deeplib.py", "freshlib.py", "outside.txt", "seenlib.py"]
    deploy_reads.save("d1", found)
    assert deploy_reads.changed("d1") is None
    assert deploy_reads.changed("d2") == "what its deploy read is not known"
    for change, said in [(lambda: monkeypatch.setenv("OTHER", "y"), "environment variable OTHER changed"),
                         (lambda: (lib / "deeplib.py").write_text("X = 1\n"), "deeplib.py changed"),
                         (lambda: (tmp_path / "outside.txt").unlink(), "outside.txt appeared or is gone")]:
        change()
        assert said in (deploy_reads.changed("d1") or ""), said
        deploy_reads.save("d1", deploy_reads.inputs(recording, [str(site / "deploy.py")]))
        assert deploy_reads.changed("d1") is None
    deploy_reads.forget("d1")
    assert deploy_reads.changed("d1") == "what its deploy read is not known"


def test_folders_a_deploy_lists_outside_its_folder_are_inputs(tmp_path, monkeypatch):
    """``os.listdir``/``os.scandir``/``glob`` of a folder outside the deploy's are inputs: a file
    added there makes the entry stale (red team 2, finding 9); its own folder's are not."""
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    site, confs, extra = tmp_path / "site", tmp_path / "confs", tmp_path / "extra"
    for folder in (site, confs, extra):
        folder.mkdir()
    (confs / "a.conf").write_text("a")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "listedlib.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # the import system lists it: not an input
    monkeypatch.delitem(sys.modules, "listedlib", raising=False)
    code = (f"import glob, os\nfor name in sorted(glob.glob({str(confs)!r} + '/*.conf')): pass\n"
            f"names = os.listdir({str(extra)!r})\nlist(os.scandir({str(site)!r}))\nimport listedlib\n"
            "import importlib.metadata\nimportlib.metadata.entry_points(group='pyinfra.connectors')\n")
    with deploy_reads.recording([site]) as recording:
        exec(compile(code, str(site / "deploy.py"), "exec"), {})
    found = deploy_reads.inputs(recording, [str(site / "deploy.py")])
    assert sorted(found["listings"]) == [f"dir:{extra}", f"glob:{confs}/*.conf"]
    deploy_reads.save("d1", found)
    assert deploy_reads.changed("d1") is None
    (site / "new.txt").write_text("in the folder: its digest's business")
    (confs / "notes.txt").write_text("not matched")
    assert deploy_reads.changed("d1") is None
    for added, said in [(confs / "b.conf", f"what {confs}/*.conf lists changed"),
                        (extra / "x", f"what {extra} lists changed")]:
        added.write_text("new")
        assert deploy_reads.changed("d1") == said
        added.unlink()
    assert deploy_reads.changed("d1") is None
