"""Where an engine keeps converged golden machines between pytest runs (the golden cache).

An entry is the cheapest form of a golden machine the engine offers (Docker and Podman: the
committed image its clones come from; Incus: the stopped golden instance with its snapshot).
It becomes an entry in one engine step that also writes its labels (``docker commit --change
LABEL``, ``incus config set``): an entry the engine lists is complete, never half made.
Entries carry :data:`CACHE_LABEL` (the key's digest), the time they were made and the
project's tag, and an empty session label: no session's reap and no watcher removes them;
``--orbstack-prune`` of the project does (:func:`pytest_orbstack.machines.reaper.removable`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from pytest_orbstack.model.names import PROJECT_LABEL

CACHE_LABEL = "pytest-orbstack.cache"  # the key's digest: which golden machine the entry is
CREATED_LABEL = "pytest-orbstack.cache.created"  # when it was published (seconds since the epoch)
ABOUT_LABEL = "pytest-orbstack.cache.about"  # image and deploy, for --orbstack-list


@dataclass(frozen=True)
class CacheEntry:
    """One cached golden machine as the engine lists it."""
    ref: str  # what the engine makes clones from (an image reference)
    digest: str  # its key's digest
    created: float
    about: str
    project: str

    def holds(self, digest: str) -> bool:
        """Whether this is an entry of ``digest`` (an entry may keep its first digits only:
        OrbStack's, in its name)."""
        return bool(digest) and digest.startswith(self.digest)


def entry_labels(digest: str, created: float, about: str, project: str) -> dict[str, str]:
    """The labels an entry is published with (the session label emptied: no session owns it)."""
    return {CACHE_LABEL: digest, CREATED_LABEL: f"{created:.0f}", ABOUT_LABEL: about,
            PROJECT_LABEL: project, "pytest-orbstack.session": ""}


def parse_entry(ref: str, labels: dict[str, str]) -> CacheEntry | None:
    """The entry of an engine object with ``labels``, or None when they are not a cache entry's."""
    digest = labels.get(CACHE_LABEL, "")
    try:
        created = float(labels.get(CREATED_LABEL, ""))
    except ValueError:
        return None
    if not digest:
        return None
    return CacheEntry(ref, digest, created, labels.get(ABOUT_LABEL, ""), labels.get(PROJECT_LABEL, ""))


class CacheStore(ABC):
    """An engine's golden cache (see the module's text)."""

    @abstractmethod
    def base_id(self, image: str) -> str:
        """The engine's id of the image machines of ``image`` are made from (part of the key)."""

    @abstractmethod
    def entries(self, project: str | None) -> list[CacheEntry]:
        """The project's complete entries (``project``: its tag; None: every project's), newest first."""

    @abstractmethod
    def publish(self, golden: str, digest: str, about: str, project: str) -> str:
        """Keep machine ``golden`` (deployed, not changing any more) as the entry of ``digest``
        (of project ``project``; ``about``: its image and deploy), labelled
        (:func:`entry_labels`) in the same step; the machine is gone under its name afterwards
        (deleted, or become the entry); returns the entry's reference."""

    @abstractmethod
    def use(self, golden: str, ref: str) -> None:
        """From now on, in this process, clones of ``golden`` (which need not exist) come from
        entry ``ref``."""

    @abstractmethod
    def remove(self, ref: str) -> bool:
        """Remove entry ``ref``; False when a machine still uses it (it stays)."""
