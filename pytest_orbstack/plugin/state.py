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
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.notices import Notices
from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.machines.kept import finder
from pytest_orbstack.machines.lifecycle import Lifecycle
from pytest_orbstack.machines.reaper import prune, start_watcher, stop_watcher
from pytest_orbstack.machines.registry import Registry, new_session_id
from pytest_orbstack.machines.spares import DEPTH as SPARE_DEPTH
from pytest_orbstack.model.inputs import image_list, search_dirs
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.plugin import engines as several
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
        # several engines (plugin/engines.py): the controller's list; a worker's one engine
        self.engines: list[str] = [] if self.is_worker else several.requested(config)
        self.engine_requested = (self.engines[0] if self.engines else None) or (
            workerinput or {}).get("orbstack_engine") or config.getoption("orbstack_backend") or config.getini(
            "orbstack_backend")
        self.engine_sessions: dict[str, str] = {}  # engine -> its session id (the controller's, several)
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
        self.left_out: set[str] = set()  # matrix images --orbstack-image left out
        self.registry = Registry()
        self.lifecycle: Lifecycle | None = None
        self.lifecycle_engine: Backend | None = None  # the session's engine, once asked for
        self.worker_lifecycles: list[Lifecycle] = []  # the controller's, of its workers' sessions
        self.records: list[MachineRecord] = []  # from xdist workers
        self.failed = False
        self.test_seconds: dict[str, float] = {}  # each test's setup+call+teardown, --orbstack-timings
        self.current_item: pytest.Item | None = None
        self.upcoming: list[pytest.Item] = []  # the tests this process runs next (:meth:`look_ahead`)
        self._positions: dict[int, int] = {}  # id of each of session.items -> its index
        plugins = config.pluginmanager  # the lines told go to pytest's own reporter (or, on a
        # worker, are held and sent with the next test report)
        self.notices = Notices(functools.partial(plugins.get_plugin, "terminalreporter"),
                               functools.partial(plugins.get_plugin, "capturemanager"),
                               verbose=config.getoption("verbose") > 0, held=[] if self.is_worker else None)
        self.watchers: dict[str, tuple[IO[bytes], str | None]] = {}  # session -> (pipe, engine)

    def look_ahead(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Set :attr:`upcoming` for the test ``item``: the next ``SPARE_DEPTH`` tests this
        process will run. pytest runs ``session.items`` in order; an xdist worker runs
        ``nextitem``, then the tests the controller has queued on it so far
        (:func:`worker_queue`)."""
        items = item.session.items
        if self.is_worker:
            queued = [items[i] for i in worker_queue(self.config, SPARE_DEPTH - 1)]
            self.upcoming = [nextitem, *queued] if nextitem is not None else []
            return
        if not self._positions:
            self._positions = {id(it): i for i, it in enumerate(items)}
        at = self._positions.get(id(item), -1)
        in_order = 0 <= at < len(items) - 1 and items[at + 1] is nextitem
        self.upcoming = items[at + 1:at + 1 + SPARE_DEPTH] if in_order else [nextitem] if nextitem else []

    @property
    def shared_dir(self) -> Path:
        """Where golden and session machines are agreed on by every process of the session: in
        the controller's pytest temp folder (xdist's "session fixture once" recipe), which pytest
        itself cleans up under its retention policy should this session be killed."""
        if self._shared_dir is None:
            self._shared_dir = self.shared_dir_of(self.session_id)
        return self._shared_dir

    def shared_dir_of(self, session_id: str) -> Path:
        """The shared folder of the controller's session ``session_id`` (one per engine)."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        base = factory.getbasetemp() if factory is not None else Path(tempfile.gettempdir())
        return Path(base) / f"orbstack-{session_id}"

    def session_of(self, worker_id: str) -> tuple[str, str | None]:
        """The controller's answer to xdist worker ``worker_id``: (its session id, its engine).
        With several engines each engine has a session of its own (the first engine's is this
        process's), whose watcher starts now; else the one session and no engine named."""
        if not self.engines:
            self.start_watcher()
            return self.session_id, None
        engine = several.engine_of_worker(self.engines, worker_id)
        if engine not in self.engine_sessions:
            first = not self.engine_sessions
            self.engine_sessions[engine] = self.session_id if first else new_session_id()
        self.start_watcher(self.engine_sessions[engine], engine)
        return self.engine_sessions[engine], engine

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

    def start_watcher(self, session_id: str | None = None, engine: str | None = None) -> None:
        """The watcher that reaps session ``session_id`` (default: this process's) on ``engine``
        (default: the one requested) if its owner dies (reaper.py); started once per session, by
        the owner: the only process, or the xdist controller (see plugin.py)."""
        session_id = session_id or self.session_id
        if session_id not in self.watchers and not self.is_worker:
            engine = engine or self.engine_requested
            self.watchers[session_id] = (start_watcher(session_id, engine, self.registry.dir.parent), engine)

    def stop_watcher(self, late: bool = False) -> None:
        """The session's end: each watcher exits, or with ``late`` (and machines made) sweeps again
        once this process and its engine calls have ended (:func:`.reaper.stop_watcher`)."""
        made = {lifecycle.session_id: lifecycle.backend.name for lifecycle in self.own_lifecycles()}
        for session_id, (pipe, _) in self.watchers.items():
            stop_watcher(pipe, made.get(session_id) if late else None)
        self.watchers.clear()

    def own_lifecycles(self) -> list[Lifecycle]:
        """This process's Lifecycle, else those :meth:`lifecycles_of_workers` found."""
        return [self.lifecycle] if self.lifecycle is not None else self.worker_lifecycles

    def lifecycles_of_workers(self) -> list[Lifecycle]:
        """The controller's view of the sessions its xdist workers registered (one per engine
        with several engines; none if they made no machine), for the session's end."""
        self.worker_lifecycles = []
        for session_id in dict.fromkeys(list(self.engine_sessions.values()) or [self.session_id]):
            session = self.registry.get(session_id)
            if session is not None:
                self.worker_lifecycles.append(Lifecycle(
                    get_backend(session.backend), self.registry, session_id, self.shared_dir_of(session_id),
                    keep=self.keep, progress=self.notices.progress))
        return self.worker_lifecycles

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Several engines without xdist workers: a notice that the first one takes every test."""
        if self.engines and len(self.engines) > 1 and not several.uses_xdist(self.config):
            self.notices.notice(several.single_process_notice(self.engines))

    def search_dirs(self) -> list[Path]:
        """Where relative deploy and cloud-init paths are looked up: the running test's folder,
        then the rootdir."""
        item_dir = self.current_item.path.parent if self.current_item is not None else None
        return search_dirs(item_dir, self.config.rootpath)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Any failure (here, or on an xdist worker: the controller sees every report) makes
        ``keep=failed`` keep the session's shared machines; each test's seconds (setup, call, teardown) are noted
        (``--orbstack-timings``); workers' progress lines, sent with their reports, are printed here."""
        if report.failed:
            self.failed = True
        if self.is_worker:
            return
        seconds = self.test_seconds.get(report.nodeid, 0.0) + report.duration
        self.test_seconds[report.nodeid] = round(seconds, 3)
        worker = getattr(getattr(report, "node", None), "gateway", None)
        for line in getattr(report, "orbstack_progress", None) or []:
            self.notices.write(f"[{worker.id}] {line}" if worker is not None else line)

    def all_records(self) -> list[MachineRecord]:
        own = [r for lifecycle in self.own_lifecycles() for r in lifecycle.records + lifecycle.kept]
        seen: dict[str, MachineRecord] = {}
        for record in [*own, *self.records]:
            if record.name not in seen or record.outcome != "alive":
                seen[record.name] = record
        return list(seen.values())


STATE = pytest.StashKey[PluginState]()  # config.stash[STATE]: the process's PluginState (pytest_configure)


def worker_queue(config: pytest.Config, count: int) -> list[int]:
    """The indices (into ``session.items``) of up to ``count`` tests queued on this xdist
    worker after its next test: the head of xdist's ``WorkerInteractor.torun``, read under its
    lock. xdist has no public call for it; where its internals differ, nothing (one spare)."""
    for plugin in config.pluginmanager.get_plugins():
        queue = getattr(plugin, "torun", None) if type(plugin).__name__ == "WorkerInteractor" else None
        if queue is not None and hasattr(queue, "lock"):
            with queue.lock() as pending:
                return [i for i in list(pending)[:count] if isinstance(i, int)]
    return []
