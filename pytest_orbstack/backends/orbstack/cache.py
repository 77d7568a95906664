"""The golden cache on OrbStack (:mod:`pytest_orbstack.backends.cache_store`): an entry is the
deployed golden machine itself, stopped and renamed ``pto-cache-<digest>-<project>-<made>``.

OrbStack keeps no labels on a machine, so the name carries what an entry needs: the first 24
hex digits of its key's digest, the project's tag and when it was made (seconds since the epoch,
hex); 56 characters, one DNS label. The rename is the one engine step that makes the entry: a
golden machine stopped but not renamed is still its session's (named ``pto-<session>-...``),
and its reap removes it. Entries are not a session's machines (no ``pto-<session>-`` prefix):
no reap, watcher or inventory takes them; ``--orbstack-prune`` removes them.

What this relies on, from OrbStack's own source (docs/orbstack.md): ``orbctl clone`` of a
stopped machine is a btrfs snapshot, left stopped, with the source's image and config (its
default user, its limits) (2.0, scon/clone.go), so clones need their source only while the
snapshot is taken; ``orbctl rename`` of a stopped machine rewrites its hostname files
(scon/rename.go). OrbStack shows no id of the image a machine was made from: the OrbStack
version stands in for it in the key (a new release is the only time its images can change
under a cached machine that this package can see).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from pytest_orbstack.backends.cache_store import CacheEntry, CacheStore
from pytest_orbstack.errors import MachineError

if TYPE_CHECKING:
    from pytest_orbstack.backends.orbstack.backend import OrbStackBackend

PREFIX = "pto-cache-"
DIGEST = 24  # hex digits of the key's digest in an entry's name
ENTRY = re.compile(rf"^{PREFIX}(?P<digest>[0-9a-f]{{{DIGEST}}})-(?P<project>[0-9a-f]+)-(?P<made>[0-9a-f]+)$")


def entry_name(digest: str, project: str, made: float) -> str:
    """The name an entry of ``digest`` of ``project``, made at ``made``, is given."""
    return f"{PREFIX}{digest[:DIGEST]}-{project}-{int(made):x}"


class OrbStackCacheStore(CacheStore):
    """The cache entries of one OrbStack: stopped machines named by :func:`entry_name`."""

    def __init__(self, backend: OrbStackBackend) -> None:
        self.backend = backend
        self.client = backend.client

    def base_id(self, image: str) -> str:
        """``image`` and the OrbStack version (OrbStack shows no image id; see the module's text)."""
        return f"{image} on OrbStack {self.client.version()}"

    def entries(self, project: str | None) -> list[CacheEntry]:
        """Machines named as entries (of ``project``; None: of any), newest first; ``about`` is
        the image OrbStack lists for it (the deploy is not recorded: no labels)."""
        found = []
        for machine in self.client.list():
            match = ENTRY.match(machine.name)
            if match and (project is None or match["project"] == project):
                about = f"{machine.image.distro}:{machine.image.version} (a stopped machine)"
                found.append(CacheEntry(machine.name, match["digest"], float(int(match["made"], 16)), about,
                                        match["project"]))
        return sorted(found, key=lambda e: e.created, reverse=True)

    def publish(self, golden: str, digest: str, about: str, project: str) -> str:
        """Stop ``golden`` and rename it the entry of ``digest`` (``about`` is not kept: no
        labels). Returns the entry's name."""
        ref = entry_name(digest, project, time.time())
        self.backend.stop(golden)
        self.client.rename(golden, ref)
        return ref

    def use(self, golden: str, ref: str) -> None:
        """Clones of ``golden`` (which need not exist) are clones of entry ``ref``."""
        self.backend.frozen_as(golden, ref)

    def remove(self, ref: str) -> bool:
        """Delete the entry (its clones are snapshots of their own); False if it is not there."""
        try:
            self.backend.delete(ref)
        except MachineError:
            return False
        return True
