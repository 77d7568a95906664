"""The golden cache on Incus (:mod:`pytest_orbstack.backends.cache_store`): an entry is the
deployed golden machine itself, stopped, with the snapshot its clones copy (the same snapshot
clones copy within a session). Publishing stops it, snapshots it and then, in one ``incus config
set``, turns it from a machine (``user.pytest-orbstack=1``) into an entry
(``user.pytest-orbstack=cache``) with the entry's keys and an empty session key: an entry listed
is complete, and a machine stopped on its way there is still its session's (its reap removes
it). Last it is renamed ``pto-cache-<digest>-<hex>`` (when the rename fails, the entry keeps the
golden machine's name). Copies do not depend on their source here, so an entry can always go.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING

from pytest_orbstack import settings
from pytest_orbstack.backends.cache_store import CacheEntry, CacheStore, entry_labels, parse_entry
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus.instances import ENTRY
from pytest_orbstack.errors import MachineError, MachineNotFound
from pytest_orbstack.model.names import validate_machine_name

if TYPE_CHECKING:
    from pytest_orbstack.backends.incus.backend import IncusBackend

PREFIX = "pto-cache-"


class IncusCacheStore(CacheStore):
    """The cache entries of one Incus daemon (or remote): stopped instances keyed :data:`ENTRY`."""

    def __init__(self, backend: IncusBackend) -> None:
        self.backend = backend
        self.cli = backend.cli

    def base_id(self, image: str) -> str:
        """The fingerprint of the Incus image machines of ``image`` start from (built if missing)."""
        info = self.cli.call(cmd.image_info(self.backend.image_ref(image))).stdout
        return next((line.split(":", 1)[1].strip() for line in info.splitlines()
                     if line.startswith("Fingerprint:")), info)

    def _config(self, ref: str) -> dict[str, str]:
        """The config keys of entry ``ref``; MachineNotFound when it is gone."""
        data = self.cli.instance(validate_machine_name(ref))
        if data is None:
            raise MachineNotFound(f"machine not found: {ref!r}")
        return dict(data.get("config") or {})

    def entries(self, project: str | None) -> list[CacheEntry]:
        """Instances keyed as entries (of ``project``; None: of any), newest first."""
        found = []
        for item in json.loads(self.cli.call(cmd.list_machines(self.cli.remote, ENTRY)).stdout or "[]"):
            entry = parse_entry(item["name"], cmd.labels(item.get("config") or {}))
            if entry is not None and (project is None or entry.project == project):
                found.append(entry)
        return sorted(found, key=lambda e: e.created, reverse=True)

    def publish(self, golden: str, digest: str, about: str, project: str) -> str:
        """Stop ``golden``, snapshot it, key it as the entry of ``digest`` (see the module's
        text) and rename it; returns the entry's name."""
        self.backend.stop(golden)
        self.cli.call(cmd.snapshot(self.backend.at(golden)), ok=("already exists",),
                      timeout=settings.INCUS_CREATE_TIMEOUT)
        keys = {cmd.key(k): v for k, v in entry_labels(digest, time.time(), about, project).items()}
        self.cli.call(cmd.config_set(self.backend.at(golden), {cmd.KEY: ENTRY, **keys}))
        self.backend.forget(golden)
        ref = f"{PREFIX}{digest[:32]}-{secrets.token_hex(3)}"
        renamed = self.cli.call(cmd.rename(self.backend.at(golden), self.backend.at(ref)), check=False)
        return ref if renamed.returncode == 0 else golden

    def use(self, golden: str, ref: str) -> None:
        """Clones of ``golden`` copy the snapshot of entry ``ref`` (their user, image and
        resources are its keys; the entry's own and its session's keys are dropped)."""
        self.backend.frozen_as(golden, ref, self._config(ref))

    def remove(self, ref: str) -> bool:
        """``incus delete --force`` of the entry (its copies do not need it)."""
        try:
            self.cli.call(cmd.delete(self.backend.at(validate_machine_name(ref))),
                          timeout=settings.INCUS_DELETE_TIMEOUT)
        except MachineError:
            return False
        return True
