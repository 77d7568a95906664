"""Converged golden machines cached across runs (``--orbstack-cache``).

After its deploy, a golden machine is published to its engine's cache
(:mod:`pytest_orbstack.backends.cache_store`) under the digest of its key
(:mod:`.cache_key`); clones come from that entry from then on. A later run whose golden machine
has the same digest clones from the entry without creating or deploying anything; any change
of an input gives another digest, so another entry is made. An entry older than the maximum
age is never used, and each publish removes the project's entries over the age and beyond the
maximum count (oldest first). ``refresh`` makes and publishes every golden machine anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_orbstack.backends.cache_store import CacheEntry, CacheStore, entry_labels
from pytest_orbstack.errors import MachineError
from pytest_orbstack.machines.cache_key import cache_digest
from pytest_orbstack.model.inputs import Deploy, describe
from pytest_orbstack.model.records import MachineRecord

if TYPE_CHECKING:
    from pytest_orbstack.machines.lifecycle import Lifecycle

MODES = ("on", "off", "refresh")


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
                     if e.digest == digest and self.fresh(e, now)), None)

    def publish(self, golden: str, digest: str, about: str) -> str | None:
        """Publish ``golden`` as the entry of ``digest``, then :meth:`evict`; None (told) if the
        engine refused: the session goes on with the golden machine as it is."""
        labels = entry_labels(digest, time.time(), about, self.policy.project)
        try:
            ref = self.store.publish(golden, digest, labels)
        except MachineError as exc:
            self.progress(f"orbstack: golden machine {golden} not cached: {exc}")
            return None
        self.progress(f"orbstack: cached golden machine {golden} as {ref}")
        self.evict(keep=ref)
        return ref

    def evict(self, keep: str = "") -> list[str]:
        """Remove the project's entries older than the maximum age, and the oldest beyond the
        maximum count (``keep`` stays); an entry a machine runs from stays until a later evict.
        Returns the references removed."""
        now, removed = time.time(), []
        entries = [e for e in self.store.entries(self.policy.project) if e.ref != keep]
        room = self.policy.max_count - (1 if keep else 0)
        for index, entry in enumerate(entries):
            if (index >= room or not self.fresh(entry, now)) and self.store.remove(entry.ref):
                removed.append(entry.ref)
        return removed

    def golden(self, lifecycle: Lifecycle, key: str, image: str, deploy: Deploy, args: dict[str, Any],
               label: str, asker: str) -> str:
        """The golden machine of ``key`` (see :meth:`.Lifecycle.golden`; ``args``: its machine
        and apply arguments), from the cache when an entry has its digest, else made, deployed
        and published (then deleted: clones come from the entry). Made or found by one process
        of the session; every process then clones from the entry."""
        with lifecycle.shared_machines.claim(key, label, asker) as entry:
            if not entry:
                entry.update(self._claimed(lifecycle, key, image, deploy, args, label))
        name, ref = entry["name"], entry.get("cache")
        if ref and name not in self.used:
            self.store.use(name, ref)
            self.used.add(name)
            if entry.get("hit"):
                self.hits.add(name)
        return str(name)

    def _claimed(self, lifecycle: Lifecycle, key: str, image: str, deploy: Deploy, args: dict[str, Any],
                 label: str) -> dict[str, Any]:
        """The shared record of a golden machine this process is the first to ask for."""
        digest = cache_digest(key, deploy, self.store.base_id(image), self.policy.project)
        hit = self.lookup(digest)
        if hit is not None:
            record = MachineRecord(lifecycle.name_for(key), image, lifecycle.backend.name, "golden", "cache",
                                   test=label, created_at=round(time.time(), 3))
            lifecycle.records.append(record)
            self.progress(f"orbstack: golden machine from the cache: {hit.ref} "
                          f"({age(time.time() - hit.created)} old)")
            return dict(name=record.name, image=image, record=record.as_json(), cache=hit.ref, hit=True)
        machine, record = lifecycle.create(key, image, role="golden", shown=label, deploy=deploy, clone=False,
                                           **args)
        ref = self.publish(machine.name, digest, f"{image} {describe(deploy)}")
        if ref is not None:  # the clones come from the entry: the machine is not needed
            lifecycle.backend.delete_if_exists(machine.name)
        return dict(name=machine.name, image=image, record=record.as_json(),
                    **({"cache": ref} if ref else {}))
