"""The key of a cached golden machine: everything that decides what the machine holds.

The golden machine's key in the session (:func:`.shared.golden_key`: image, deploy, ``data=``,
``config=``, user, resources, cloud-init and the other machine and apply arguments), plus what
a file's path and its deploy's digest do not show: every file of the deploy's folder (the
deploy file, what it includes, ``group_data``, ``config.py``, templates and files it ships; for a
deploy callable, the folder pyinfra runs it from and its module's folder), the engine's id of the base image,
the pyinfra and pytest-orbstack versions, and the project.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from importlib.metadata import version
from pathlib import Path

from pytest_orbstack.model.deploy_refs import function_folder
from pytest_orbstack.model.inputs import Deploy

SKIPPED = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".pytest_cache", ".mypy_cache",
                     ".ruff_cache", ".tox"})  # folders whose files no deploy ships


def deploy_folders(deploy: Deploy) -> list[Path]:
    """The folders a deploy reads files from: a deploy file's; for a callable, the folder
    pyinfra runs it from (:func:`.deploy_refs.function_folder`, where ``group_data``,
    ``config.py`` and ``src=`` paths resolve) and its module's own folder (what it imports)."""
    if not callable(deploy):
        return [Path(os.fspath(deploy)).resolve().parent]
    try:
        source = inspect.getsourcefile(inspect.unwrap(deploy))
    except TypeError:
        source = None
    own = [Path(source).resolve().parent] if source else []
    return list(dict.fromkeys([function_folder(deploy), *own]))


def folder_digest(folder: Path) -> str:
    """A hash of every file under ``folder`` (relative path, executable bit and content;
    :data:`SKIPPED` folders and symbolic links to folders are not entered)."""
    digest = hashlib.sha256()
    if not folder.is_dir():
        return ""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            path = Path(root, name)
            try:
                content = path.read_bytes()
                mode = os.stat(path).st_mode & 0o111
            except OSError:
                continue  # a broken link, or removed meanwhile
            rel = path.relative_to(folder).as_posix()
            digest.update(f"{rel}\0{mode:o}\0{len(content)}\0".encode())
            digest.update(content)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """The versions of what turns a deploy into a machine: pyinfra and this package."""
    from pytest_orbstack import __version__
    return {"pyinfra": version("pyinfra"), "pytest-orbstack": __version__}


def cache_digest(golden_key: str, deploy: Deploy, base_id: str, project: str) -> str:
    """The digest of a cached golden machine's key (see the module's text)."""
    parts = {"golden": golden_key, "folders": [folder_digest(f) for f in deploy_folders(deploy)], "base": base_id,
             "versions": versions(), "project": project}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
