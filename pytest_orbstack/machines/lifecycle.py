"""Machine lifecycle for one pytest process: create, deploy, clone from golden, keep or delete.
Golden and session-shared machines are made through the project's own pyinfra operation
(:mod:`.provision`), then deployed to through pyinfra's API; per-test machines are made by the
engine from the same command builders (no pyinfra run on the hot path). Names are
``pto-<session>-<slug of the key>-<hash>``, deterministic per key (test id), so xdist workers
agree; each is recorded in the session registry before it is created. Session machines and
golden machines (one per image+deploy, cloned for each test) are made by exactly one worker
(:mod:`.shared`) and deleted once, when every worker has finished."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import MachineError, MachineExists, attach_sections
from pytest_orbstack.machines.cache import GoldenCache
from pytest_orbstack.machines.diagnostics import machine_diagnostics
from pytest_orbstack.machines.kept import KeptMachine, machine_spec
from pytest_orbstack.machines.machine import Machine
from pytest_orbstack.machines.registry import Registry
from pytest_orbstack.machines.shared import SharedMachines, golden_args, golden_key
from pytest_orbstack.machines.spares import Spares
from pytest_orbstack.model.inputs import Deploy, describe
from pytest_orbstack.model.names import PROJECT_LABEL, SESSION_LABEL, project_tag, session_prefix, slug_name
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.model.results import DeployResult
from pytest_orbstack.model.types import NO_RESOURCES, MachineInfo, Resources


class Lifecycle:
    def __init__(self, backend: Backend, registry: Registry, session_id: str, shared_dir: Path,
                 keep: str = "never", progress: Callable[[str], None] = lambda line: None,
                 find_kept: Callable[[str], KeptMachine | None] | None = None,
                 cache: GoldenCache | None = None) -> None:
        self.backend = backend
        self.registry = registry
        self.session_id = session_id
        self.prefix = session_prefix(session_id)
        self.shared_machines = SharedMachines(shared_dir)
        self.keep = keep
        self.progress = progress
        self.records: list[MachineRecord] = []
        self.kept: list[MachineRecord] = []
        self.find_kept = find_kept  # --orbstack-reuse: a test's kept machine, if any
        self.cache = cache  # golden machines kept between runs (--orbstack-cache), None: off
        self._warned_no_clone = False
        self._project_tag: str | None = None
        self.spares = Spares(backend, lambda name: registry.remove(session_id, name), progress)

    # -- naming and timing ------------------------------------------------------------------
    def name_for(self, key: str) -> str:
        return slug_name(self.prefix, key)

    @contextmanager
    def _phase(self, record: MachineRecord, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            record.phases[phase] = round(time.monotonic() - started, 3)
            self.progress(f"orbstack: {phase} {record.name} ({record.image}) "
                          f"{record.phases[phase]:.1f}s")

    # -- machines -----------------------------------------------------------------------------
    def create(self, key: str, image: str, *, deploy: Deploy | None = None, user: str | None = None,
               cloud_init: str | os.PathLike | None = None, clone: bool = True,
               data: dict[str, Any] | None = None, check_idempotent: bool = False,
               allow_changes: Sequence[str] = (), allow_stale: Sequence[str] = (),
               check_dry_run: bool = False, resources: Resources = NO_RESOURCES, role: str = "test",
               next_keys: Sequence[str] = (), shown: str = "") -> tuple[Machine, MachineRecord]:
        """A running machine for ``key``, with ``deploy`` applied (twice with
        ``check_idempotent``; planned first with ``check_dry_run``). With ``clone`` (and no
        cloud-init), the deploy runs on a golden machine that is then cloned: the clones get no
        apply of their own, and the golden fails if the deploy left a service running on
        changed files (:meth:`.Machine.apply_golden`; services matching ``allow_stale`` are exempt).
        ``next_keys``: the keys the next tests will likely ask for with these same arguments;
        their clones start now, in the background (:mod:`.spares`). ``shown``: how reports name the
        machine (default ``key``)."""
        machine_args, apply_args = golden_args(dict(
            user=user, resources=resources, allow_stale=allow_stale, data=data,
            check_idempotent=check_idempotent, allow_changes=allow_changes, check_dry_run=check_dry_run))
        spec = machine_spec(image, user, resources, cloud_init)
        kept = self.find_kept(key) if self.find_kept is not None and role == "test" else None
        if kept is not None and kept.spec == spec:
            return self._reuse(kept, key, deploy, apply_args)
        if kept is not None:
            self.progress(f"orbstack: not reusing kept {kept.name} ({kept.spec}): the test asks for {spec}")
        name = self.name_for(key)
        record = MachineRecord(name, image, self.backend.name, role, test=shown or key,
                               created_at=round(time.time(), 3), spec=spec)
        self.records.append(record)
        self.registry.add(self.session_id, name)
        machine = None
        try:
            if deploy is not None and clone and cloud_init is None and self._can_clone():
                golden = self.golden(image, deploy, machine_args, apply_args, asker=key.rpartition("#")[0] or key)
                machine = self._clone(record, golden, next_keys)
            else:
                machine = self._make(record, user, cloud_init, resources)
                if deploy is not None and role == "golden":
                    machine.apply_golden(deploy, apply_args, allow_stale)
                elif deploy is not None:
                    machine.apply(deploy, **apply_args)
        except MachineExists:
            record.outcome = "failed"  # not ours to delete: another owner made it
            raise
        except BaseException as exc:
            self._failed(record, machine, exc)
            raise
        return machine, record

    def _clone(self, record: MachineRecord, golden: str, next_keys: Sequence[str]) -> Machine:
        """The machine of ``record`` as a clone of ``golden`` (a spare one if it is ready),
        and the next tests' clones started (``next_keys``)."""
        record.created_by = "clone"
        with self._phase(record, "clone"):
            info = self.spares.take(record.name, golden)
            if info is None:
                info = self.backend.clone(golden, record.name, labels=self._labels(), frozen_source=True)
            else:
                record.created_by = "spare"
        if self.cache is not None and golden in self.cache.hits:
            record.created_by = "cache"  # a clone of a golden machine an earlier run made
        machine = self._machine(record.name, record.image, record, info)
        for key in next_keys if self.find_kept is None and record.role == "test" else ():
            self._start_spare(key, golden)
        return machine

    def _make(self, record: MachineRecord, user: str | None, cloud_init: str | os.PathLike | None,
              resources: Resources) -> Machine:
        """The machine of ``record``, made new: a test's by the engine from the builders (the
        hot path), a golden or session machine through the project's own pyinfra operation
        (once per session)."""
        name, image = record.name, record.image
        self.spares.take(name, None)  # a spare guessed wrong: the name must be free
        with self._phase(record, "create"):
            info = None
            if record.role == "test":
                info = self.backend.create(name, image, user=user, cloud_init=cloud_init,
                                           labels=self._labels(), resources=resources)
            else:
                from pytest_orbstack.pyinfra.provision import provision_machine
                record.created_by = "operations.machine"
                provision_machine(self.backend, name, image, user=user, cloud_init=cloud_init,
                                  labels=self._labels(), resources=resources)
        return self._machine(name, image, record, info)

    def _failed(self, record: MachineRecord, machine: Machine | None, exc: BaseException) -> None:
        """After ``exc``: a failed deploy's error gets the machine's diagnostics; kept or deleted."""
        if machine is not None and isinstance(exc, Exception):  # its deploy failed
            attach_sections(exc, [(f"orbstack machine: {record.name}", machine_diagnostics(machine))])
            if self.keep in ("always", "failed"):
                self.finish(machine, record, failed=True)  # a failed deploy, kept to look at
                return
        record.outcome = "failed"
        self._delete(record.name)

    def _start_spare(self, key: str, golden: str) -> None:
        """Clone the machine of ``key`` from ``golden`` now, in the background (:mod:`.spares`);
        if that cannot start, the test that asks for it clones on demand."""
        name = self.name_for(key)
        try:
            self.registry.add(self.session_id, name)
            self.spares.start(name, golden, key, self._labels())
        except Exception as exc:
            self.progress(f"orbstack: no spare clone {name}: {exc}")

    def _reuse(self, kept: KeptMachine, key: str, deploy: Deploy | None,
               apply_args: dict[str, Any]) -> tuple[Machine, MachineRecord]:
        """A kept machine of an ended session, taken over by this one and started if needed,
        with ``deploy`` applied again (the debug loop: fix the deploy, rerun); it stays kept."""
        record = MachineRecord(kept.name, kept.image, self.backend.name, "test", "reused", test=key, spec=kept.spec)
        self.records.append(record)
        self.registry.adopt(kept.session, self.session_id, kept.name)
        self.progress(f"orbstack: reusing kept {kept.name} ({kept.image})")
        if not self.backend.info(kept.name).machine.running:
            with self._phase(record, "start"):
                self.backend.start(kept.name)
        machine = self._machine(kept.name, kept.image, record)
        if deploy is not None:
            machine.apply(deploy, **apply_args)
        return machine, record

    def _machine(self, name: str, image: str, record: MachineRecord | None,
                 info: MachineInfo | None = None) -> Machine:
        machine = Machine(name, self.backend, image, created=info)
        machine.on_apply = lambda machine, result: self.deployed(machine, record, result)
        return machine

    def deployed(self, machine: Machine, record: MachineRecord | None, result: DeployResult) -> None:
        """Every apply, by a fixture or in a test body: added to the record (its ``deploy``
        phase is the sum of them; ``--orbstack-timings`` lists each operation) and told in
        ``-v`` progress lines with the operations that changed something."""
        if record is not None:
            record.add_deploy(result)
        self.progress(f"orbstack: deploy {machine.name}: {result.headline().removeprefix('deploy ')}")
        for op in result.changed:
            self.progress(f"orbstack:   changed: {op.name}")

    def _can_clone(self) -> bool:
        """Whether golden machines can be cloned here; if not, every test machine gets the
        deploy itself, and one warning says why (an OrbStack before 2.0)."""
        if not self.backend.can_clone() and not self._warned_no_clone:
            self._warned_no_clone = True
            warnings.warn(f"{self.backend.name} cannot clone machines (OrbStack 2.0 or newer can):"
                          " each test machine gets its deploy applied instead", stacklevel=2)
        return self.backend.can_clone()

    def _labels(self) -> dict[str, str]:
        """The session's labels on its machines and images: its id, its user and project."""
        if self._project_tag is None:
            session = self.registry.get(self.session_id)
            self._project_tag = project_tag(session.user, session.project) if session else ""
        tag = {PROJECT_LABEL: self._project_tag} if self._project_tag else {}
        return {SESSION_LABEL: self.session_id, **tag}

    def _delete(self, name: str) -> None:
        self.backend.delete_if_exists(name)
        self.registry.remove(self.session_id, name)

    def finish(self, machine: Machine, record: MachineRecord, failed: bool) -> None:
        """Delete the machine, or keep it as the keep policy says (a reused one stays kept)."""
        if self.keep == "always" or (self.keep == "failed" and failed) or record.created_by == "reused":
            record.outcome = "kept"
            self.kept.append(record)
            made = {"created_at": record.created_at} if record.created_at else {}  # reused: as recorded
            self.registry.keep(self.session_id, machine.name,
                               {"test": record.test, "image": record.image, "spec": record.spec, **made})
            self.progress(f"orbstack: kept {machine.name}")
            return
        try:
            with self._phase(record, "teardown"):
                self._delete(machine.name)
        except MachineError:
            record.outcome = "failed"  # still recorded: the session's reap tries again
            raise
        record.outcome = "deleted"

    # -- machines shared between workers: golden and session machines (:mod:`.shared`) -------
    def shared(self, key: str, image: str, *, role: str = "shared", label: str = "", asker: str = "",
               **create_args: Any) -> Machine:
        """The one machine for ``key`` in this session, created by whichever worker asks first
        (:meth:`.SharedMachines.claim`: a failed creation is not retried; ``asker`` is the id of
        the test asking, ``label`` says which shared machine it is, in reports too)."""
        what = label or f"{role} machine of {image}"
        # the engine is part of the key: a golden machine is never shared across engines
        with self.shared_machines.claim(f"{self.backend.name}|{key}", what, asker) as entry:
            if not entry:  # no process made it yet: this one does
                create_args.setdefault("clone", False)
                machine, record = self.create(key, image, role=role, shown=what, **create_args)
                entry.update(name=machine.name, image=image, record=record.as_json())
        mine = next((r for r in self.records if r.name == entry["name"]), None)
        return self._machine(entry["name"], entry["image"], mine)

    def golden(self, image: str, deploy: Deploy, machine_args: dict[str, Any],
               apply_args: dict[str, Any], asker: str = "") -> str:
        """Name of the golden machine for (image, deploy, machine and apply arguments):
        deployed once (twice with ``check_idempotent``), before any clone is made from it.
        ``asker``: the id of the test asking (see :meth:`shared`)."""
        what, key = describe(deploy), golden_key(image, deploy, machine_args, apply_args)
        label = f"golden machine of {image} with deploy {what}"
        if self.cache is not None:  # (:mod:`.cache`)
            return self.cache.golden(self, key, image, deploy, {**machine_args, **apply_args}, label,
                                     f"{image} {what}", asker)
        return self.shared(key, image, deploy=deploy, role="golden", label=label, asker=asker,
                           **machine_args, **apply_args).name

    def finish_shared(self, failed: bool, interrupted: bool = False) -> list[MachineRecord]:
        """At the session's end, once (the only process, or the xdist controller after every
        worker is down): delete golden machines (spare clones of them first; ``interrupted``:
        those under way are not waited for), and delete or keep session machines."""
        self.spares.delete_all(wait=not interrupted)
        records = []
        mine = {r.name: r for r in self.records}
        for entry in self.shared_machines.take_all():
            record = mine.get(entry["name"]) or MachineRecord.from_json(entry["record"])
            machine = Machine(entry["name"], self.backend, entry["image"])
            if record.role == "golden":
                with self._phase(record, "teardown"):
                    self._delete(machine.name)  # (cached: its entry stays)
                record.outcome = "cached" if entry.get("cache") else "deleted"
            else:
                self.finish(machine, record, failed)
            records.append(record)
            if record.name not in mine:
                self.records.append(record)
        return records

    def reap(self) -> list[str]:
        """Delete every machine of this session that is not kept (those still recorded, and any
        the engine has under the session's prefix), then its images no machine uses; the
        session is closed (:meth:`.Registry.close`)."""
        from pytest_orbstack.machines import reaper
        return reaper.reap(self.backend, self.registry, self.session_id)
