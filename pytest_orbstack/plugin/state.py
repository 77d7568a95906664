"""Per-process plugin state: the session id, the keep policy, the engine (made lazily, so runs
that use no machine need no engine), and where the lines told to the user go (:class:`.Notices`)."""

from __future__ import annotations

import functools
import getpass
import os
import tempfile
from pathlib import Path
from typing import IO

import pytest

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend, Notices
from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.machines.kept import finder
from pytest_orbstack.machines.lifecycle import Lifecycle
from pytest_orbstack.machines.reaper import prune, start_watcher, stop_watcher
from pytest_orbstack.machines.registry import Registry, new_session_id
from pytest_orbstack.model.inputs import image_list, search_dirs
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.plugin.cache import golden_cache
from pytest_orbstack.plugin.flags import KEEP_POLICIES

DEFAULT_IMAGE = "debian:bookworm"
PLUGIN_NAME = "orbstack_state"


class PluginState:
    """What one pytest process (the only one, the xdist controller or a worker) knows about
    this session's machines. Registered as the pytest plugin ``orbstack_state``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self._shared_dir: Path | None = None
        if workerinput is not None:
            self.session_id = workerinput["orbstack_session"]
            self._shared_dir = Path(workerinput["orbstack_shared_dir"])
            self.owner_pid = int(workerinput["orbstack_owner_pid"])
        else:
            self.session_id = new_session_id()
            self.owner_pid = os.getpid()
        self.reuse: bool = config.getoption("orbstack_reuse")
        self.keep: str = (config.getoption("orbstack_keep") or ("always" if self.reuse else None)
                          or config.getini("orbstack_keep") or "never")
        if self.keep not in KEEP_POLICIES:
            raise pytest.UsageError(f"--orbstack-keep / orbstack_keep = {self.keep!r}: "
                                    f"use {', '.join(KEEP_POLICIES)}")
        self.engine_requested = config.getoption("orbstack_backend") or config.getini("orbstack_backend")
        # --orbstack-image narrows every matrix to its images; else the ini list is the matrix
        # of tests whose marker names no image
        option = config.getoption("orbstack_image")
        try:
            self.narrow: list[str] | None = image_list(option, "--orbstack-image") if option else None
            self.images: list[str] = self.narrow or image_list(config.getini("orbstack_image"),
                                                               "ini orbstack_image")
        except InvalidInput as exc:
            raise pytest.UsageError(str(exc)) from None
        self.image = self.images[0]  # the default image outside a matrix
        self.registry = Registry()
        self.lifecycle: Lifecycle | None = None
        self.lifecycle_engine: Backend | None = None  # the session's engine, once asked for
        self.records: list[MachineRecord] = []  # from xdist workers
        self.failed = False
        self.current_item: pytest.Item | None = None
        self.next_item: pytest.Item | None = None  # the test this process runs next, if known
        plugins = config.pluginmanager  # the lines told go to pytest's own reporter (or, on a
        # worker, are held and sent with the next test report)
        self.notices = Notices(functools.partial(plugins.get_plugin, "terminalreporter"),
                               functools.partial(plugins.get_plugin, "capturemanager"),
                               verbose=config.getoption("verbose") > 0, held=[] if self.is_worker else None)
        self.watcher: IO[bytes] | None = None

    @property
    def shared_dir(self) -> Path:
        """Where golden and session machines are agreed on by every process of the session: in
        the controller's pytest temp folder (xdist's "session fixture once" recipe), which pytest
        itself cleans up under its retention policy should this session be killed."""
        if self._shared_dir is None:
            factory = getattr(self.config, "_tmp_path_factory", None)
            base = factory.getbasetemp() if factory is not None else Path(tempfile.gettempdir())
            self._shared_dir = Path(base) / f"orbstack-{self.session_id}"
        return self._shared_dir

    def get_lifecycle(self) -> Lifecycle:
        """The session's Lifecycle; the first call checks the engine answers, prunes what dead
        sessions left and registers this session."""
        if self.lifecycle is None:
            backend = get_backend(self.engine_requested)
            machines = backend.list()  # fails now, with a clear error, when the engine does not answer

            self.lifecycle_engine = backend
            # dead sessions' leftovers, by this session's backend when on its engine
            prune(self.registry, functools.partial(get_backend, own=backend), user=getpass.getuser())
            self.registry.open(self.session_id, backend.name, pid=self.owner_pid,
                               project=str(self.config.rootpath))
            self.start_watcher()
            backend.notice = self.notices.notice
            find_kept = finder(self.registry, getpass.getuser(), str(self.config.rootpath), backend.name,
                               [m.name for m in machines]) if self.reuse else None
            self.lifecycle = Lifecycle(backend, self.registry, self.session_id, self.shared_dir,
                                       keep=self.keep, progress=self.notices.progress, find_kept=find_kept,
                                       cache=golden_cache(self.config, backend, self.notices.progress))
        return self.lifecycle

    def engine_named(self, name: str) -> Backend:
        """The backend of engine ``name``: this session's own when it is that engine."""
        return get_backend(name, own=self.lifecycle.backend if self.lifecycle is not None else self.lifecycle_engine)

    def start_watcher(self) -> None:
        """The watcher that reaps this session if its owner dies (reaper.py); started once, by
        the owner: the only process, or the xdist controller (see plugin.py)."""
        if self.watcher is None and not self.is_worker:
            self.watcher = start_watcher(self.session_id, self.engine_requested, self.registry.dir.parent)

    def stop_watcher(self, late: bool = False) -> None:
        """The session's end: the watcher exits, or with ``late`` (and machines made) sweeps again
        once this process and its engine calls have ended (:func:`.reaper.stop_watcher`)."""
        if self.watcher is not None:
            stop_watcher(self.watcher, self.lifecycle.backend.name if late and self.lifecycle else None)
            self.watcher = None

    def search_dirs(self) -> list[Path]:
        """Where relative deploy and cloud-init paths are looked up: the running test's folder,
        then the rootdir."""
        item_dir = self.current_item.path.parent if self.current_item is not None else None
        return search_dirs(item_dir, self.config.rootpath)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Any failure (here, or on an xdist worker: the controller sees every report) makes
        ``keep=failed`` keep the session's shared machines; workers' progress lines, sent
        with their reports, are printed here."""
        if report.failed:
            self.failed = True
        if self.is_worker:
            return
        worker = getattr(getattr(report, "node", None), "gateway", None)
        for line in getattr(report, "orbstack_progress", None) or []:
            self.notices.write(f"[{worker.id}] {line}" if worker is not None else line)

    def all_records(self) -> list[MachineRecord]:
        own = self.lifecycle.records + self.lifecycle.kept if self.lifecycle else []
        seen: dict[str, MachineRecord] = {}
        for record in [*own, *self.records]:
            if record.name not in seen or record.outcome != "alive":
                seen[record.name] = record
        return list(seen.values())


STATE = pytest.StashKey[PluginState]()  # config.stash[STATE]: the process's PluginState (pytest_configure)
