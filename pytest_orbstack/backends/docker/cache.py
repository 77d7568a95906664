"""The golden cache on Docker and Podman (:mod:`pytest_orbstack.backends.cache_store`): an entry
is the image committed from a deployed golden machine, the same kind of snapshot image its
clones come from within a session. ``docker commit`` writes the image, its labels and its tag
in one step of the engine, so an entry listed is complete."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pytest_orbstack import settings
from pytest_orbstack.backends.cache_store import CACHE_LABEL, CacheEntry, CacheStore, entry_labels, parse_entry
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.cli import local_name
from pytest_orbstack.backends.docker.leftovers import SOURCES
from pytest_orbstack.model.names import PROJECT_LABEL

if TYPE_CHECKING:
    from pytest_orbstack.backends.docker.backend import DockerBackend

REPOSITORY = "pytest-orbstack-cache"


class DockerCacheStore(CacheStore):
    """The cache entries of one Docker (or Podman) engine, images labelled :data:`CACHE_LABEL`."""

    def __init__(self, backend: DockerBackend) -> None:
        self.backend = backend
        self.cli = backend.cli

    def base_id(self, image: str) -> str:
        """The id of the prepared image machines of ``image`` run from (built if missing)."""
        return self.cli.call(cmd.image_id(self.backend.prepare(image))).stdout.strip()

    def _inspect(self, *filters: str) -> list[dict[str, Any]]:
        argv = [cmd.DOCKER, "images", "-q", "--no-trunc", *(a for f in filters for a in ("--filter", f))]
        ids = sorted(set(self.cli.call(argv).stdout.split()))
        if not ids:
            return []
        proc = self.cli.call(cmd.image_inspect(*ids), check=False)  # one removed meanwhile: the rest
        return list(json.loads(proc.stdout or "[]"))

    def entries(self, project: str | None) -> list[CacheEntry]:
        """Images labelled as entries of ``project`` (None: of any), newest first. The project
        is checked here, not by a second ``--filter``: Podman 4 ORs two label filters."""
        found = []
        for image in self._inspect(f"label={CACHE_LABEL}"):
            labels = image["Config"].get("Labels") or {}
            if project is not None and labels.get(PROJECT_LABEL) != project:
                continue
            if any(labels.get(key) for key in SOURCES):
                continue  # a snapshot of a machine cloned from an entry: it inherited the labels
            names = [local_name(t) for t in image.get("RepoTags") or []]  # as publish names it
            tags = [name for name in names if name.startswith(f"{REPOSITORY}:")]
            entry = parse_entry(tags[0] if tags else image["Id"], labels)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: e.created, reverse=True)

    def publish(self, golden: str, digest: str, about: str, project: str) -> str:
        """``docker commit`` of ``golden`` to ``pytest-orbstack-cache:<digest>`` with its labels,
        then ``golden`` removed. An entry the tag named before (``refresh``, or one too old) is
        left untagged, still an entry of its digest, for :meth:`.GoldenCache.evict` to remove."""
        ref = f"{REPOSITORY}:{digest[:32]}"
        labels = entry_labels(digest, time.time(), about, project)
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        self.cli.call(cmd.commit(golden, ref, *changes), timeout=settings.DOCKER_COMMIT_TIMEOUT)
        self.backend.delete(golden)
        return ref

    def use(self, golden: str, ref: str) -> None:
        """Clones of ``golden`` run from image ``ref`` (its labels give their user, image, resources)."""
        image = json.loads(self.cli.call(cmd.image_inspect(ref)).stdout)[0]
        self.backend.frozen_as(golden, ref, image["Config"].get("Labels") or {})

    def remove(self, ref: str) -> bool:
        """``docker rmi`` of the entry, unless a container runs from it."""
        self.cli.remove_image(ref)
        return self.cli.call(cmd.image_id(ref), check=False).returncode != 0
