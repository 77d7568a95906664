"""Converged golden machines cached across runs (``--orbstack-cache``).

After its deploy, a golden machine is published to its engine's cache
(:mod:`pytest_orbstack.backends.cache_store`) under the digest of its key
(:func:`cache_digest`); clones come from that entry from then on. A later run whose golden machine
has the same digest clones from the entry without creating or deploying anything; any change
of an input gives another digest, so another entry is made. An entry older than the maximum
age is never used, and each publish removes the project's entries over the age and beyond the
maximum count (oldest first). ``refresh`` makes and publishes every golden machine anew.

The key of an entry is everything that decides what the machine holds: the golden machine's key
in the session (:func:`.shared.golden_key`: image, deploy, ``data=``, ``config=``, user,
resources, cloud-init and the other machine and apply arguments), plus what a file's path and
its deploy's digest do not show: every file of the deploy's folder (the deploy file, what it
includes, ``group_data``, ``config.py``, templates and files it ships; for a deploy callable,
the folder pyinfra runs it from and its module's folder), the engine's id of the base image,
the pyinfra and pytest-orbstack versions, and the project. Symbolic links count by their target.
What the deploy read outside its folders (files, local modules, environment variables) is
known only after it ran: it is kept beside the entry (:mod:`.deploy_reads`), and an entry
whose recorded inputs differ now is not used (a miss; the new entry replaces it).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orbstack.backends.cache_store import CacheEntry, CacheStore
from pytest_orbstack.errors import MachineError
from pytest_orbstack.machines import deploy_reads
from pytest_orbstack.model.deploy_refs import function_folder
from pytest_orbstack.model.inputs import Deploy
from pytest_orbstack.model.records import MachineRecord

if TYPE_CHECKING:
    from pytest_orbstack.machines.lifecycle import Lifecycle

MODES = ("on", "off", "refresh")
SKIPPED = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".pytest_cache", ".mypy_cache",
                     ".ruff_cache", ".tox"})  # folders whose files no deploy ships



def deploy_sources(deploy: Deploy) -> tuple[list[Path], list[str]]:
    """The folders a deploy reads files from: a deploy file's; for a callable, the folder
    pyinfra runs it from (:func:`.deploy_refs.function_folder`, where ``group_data``,
    ``config.py`` and ``src=`` paths resolve) and its module's own folder (what it imports);
    and its own code's file (the deploy file, the callable's module), where none is ""."""
    if not callable(deploy):
        path = Path(os.fspath(deploy)).resolve()
        return [path.parent], [str(path)]
    try:
        source = inspect.getsourcefile(inspect.unwrap(deploy))
    except TypeError:
        source = None
    own = [Path(source).resolve().parent] if source else []
    return list(dict.fromkeys([function_folder(deploy), *own])), [source] if source else []


def deploy_folders(deploy: Deploy) -> list[Path]:
    """The folders of :func:`deploy_sources`."""
    return deploy_sources(deploy)[0]


def folder_digest(folder: Path) -> str:
    """A hash of every file under ``folder`` (relative path, executable bit and content;
    :data:`SKIPPED` folders are not entered). Symbolic links are followed: a linked file
    counts by its target's content, a linked folder's files as files of this one (each real
    folder once); a dangling link counts by its text."""
    digest = hashlib.sha256()
    if not folder.is_dir():
        return ""
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            try:
                content = path.read_bytes()
                mode = os.stat(path).st_mode & 0o111
            except OSError:
                if not path.is_symlink():
                    continue  # removed meanwhile
                content, mode = f"dangling link to {os.readlink(path)}".encode(), 0
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


@dataclass(frozen=True)
class CachePolicy:
    """``mode`` (:data:`MODES`), the entries' maximum age (seconds) and count, per project
    (``project``: its tag)."""
    mode: str
    max_age: float
    max_count: int
    project: str


def age(seconds: float) -> str:
    """``seconds`` in its largest unit: ``3d``, ``5h``, ``12m``, ``40s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class GoldenCache:
    """One process's view of its engine's cache, under ``policy``."""

    def __init__(self, store: CacheStore, policy: CachePolicy, progress: Callable[[str], None]) -> None:
        self.store = store
        self.policy = policy
        self.progress = progress
        self.used: set[str] = set()  # golden machines whose clones come from an entry here
        self.hits: set[str] = set()  # of those, the ones found in the cache (not made now)

    def fresh(self, entry: CacheEntry, now: float) -> bool:
        return now - entry.created <= self.policy.max_age

    def lookup(self, digest: str) -> CacheEntry | None:
        """The newest entry of ``digest`` younger than the maximum age (``refresh``: none)."""
        if self.policy.mode == "refresh":
            return None
        now = time.time()
        return next((e for e in self.store.entries(self.policy.project)
                     if e.holds(digest) and self.fresh(e, now)), None)

    def publish(self, golden: str, digest: str, about: str) -> str | None:
        """Publish ``golden`` as the entry of ``digest`` (the machine goes: clones come from the
        entry), then :meth:`evict`; None (told) if the engine refused: the session goes on with
        the golden machine as it is."""
        try:
            ref = self.store.publish(golden, digest, about, self.policy.project)
        except MachineError as exc:
            self.progress(f"orbstack: golden machine {golden} not cached: {exc}")
            return None
        self.progress(f"orbstack: cached golden machine {golden} as {ref}")
        self.evict(keep=ref, digest=digest)
        return ref

    def evict(self, keep: str = "", digest: str = "") -> list[str]:
        """Remove the project's entries older than the maximum age, the oldest beyond the
        maximum count, and those ``keep`` (the entry of ``digest``, which stays) replaces; an
        entry a machine runs from stays until a later evict. Returns the references removed."""
        now, removed = time.time(), []
        entries = [e for e in self.store.entries(self.policy.project) if e.ref != keep]
        room = self.policy.max_count - (1 if keep else 0)
        for index, entry in enumerate(entries):
            if (entry.holds(digest) or index >= room or not self.fresh(entry, now)) and self.store.remove(entry.ref):
                removed.append(entry.ref)
                if not entry.holds(digest):  # (the inputs of ``digest`` are the new entry's)
                    deploy_reads.forget(entry.digest)
        return removed

    def golden(self, lifecycle: Lifecycle, key: str, image: str, deploy: Deploy, args: dict[str, Any],
               label: str, about: str, asker: str) -> str:
        """The golden machine of ``key`` (see :meth:`.Lifecycle.golden`; ``args``: its machine
        and apply arguments; ``label``: how reports name it; ``about``: image and deploy, for
        ``--orbstack-list``), from the cache when an entry has its digest, else made, deployed
        and published. Made or found by one process
        of the session; every process then clones from the entry."""
        with lifecycle.shared_machines.claim(key, label, asker) as entry:
            if not entry:
                entry.update(self._claimed(lifecycle, key, image, deploy, args, label, about))
        name, ref = entry["name"], entry.get("cache")
        if ref and name not in self.used:
            self.store.use(name, ref)
            self.used.add(name)
            if entry.get("hit"):
                self.hits.add(name)
        return str(name)

    def _claimed(self, lifecycle: Lifecycle, key: str, image: str, deploy: Deploy, args: dict[str, Any],
                 label: str, about: str) -> dict[str, Any]:
        """The shared record of a golden machine this process is the first to ask for."""
        digest = cache_digest(key, deploy, self.store.base_id(image), self.policy.project)
        hit = self.lookup(digest)
        why = deploy_reads.changed(digest) if hit is not None else None
        if hit is not None and why:
            self.progress(f"orbstack: cached golden machine {hit.ref} not used: {why}")
            hit = None
        if hit is not None:
            record = MachineRecord(lifecycle.name_for(key), image, lifecycle.backend.name, "golden", "cache",
                                   test=label, created_at=round(time.time(), 3))
            lifecycle.records.append(record)
            self.progress(f"orbstack: golden machine from the cache: {hit.ref} "
                          f"({age(time.time() - hit.created)} old)")
            return dict(name=record.name, image=image, record=record.as_json(), cache=hit.ref, hit=True)
        folders, sources = deploy_sources(deploy)
        with deploy_reads.recording(folders) as reads:
            machine, record = lifecycle.create(key, image, role="golden", shown=label, deploy=deploy, clone=False,
                                               **args)
        deploy_reads.save(digest, deploy_reads.inputs(reads, sources))
        ref = self.publish(machine.name, digest, about)
        return dict(name=machine.name, image=image, record=record.as_json(),
                    **({"cache": ref} if ref else {}))
