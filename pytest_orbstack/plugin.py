"""pytest plugin: disposable OrbStack (or Docker) machines for testing PyInfra deploys.

Fixtures
    ``orbstack``                  the machine the test's ``@pytest.mark.orbstack(...)`` (or the
                                  ini defaults) describes, deleted after the test
    ``orbstack_machine``          factory: ``orbstack_machine(image=, deploy=, user=, cloud_init=,
                                  clone=, data=)`` -> Machine, deleted after the test
    ``orbstack_module_machine``   the same factory, machines live for the module
    ``orbstack_session_machine``  the same factory, one machine per arguments for the whole
                                  session, shared by all xdist workers
    ``orbstack_backend``          the engine (``orbstack`` or ``docker``)

Options: ``--orbstack-backend``, ``--orbstack-image``, ``--orbstack-keep[=never|always|failed]``,
``--orbstack-prune``, ``--orbstack-timings=FILE``; ini: ``orbstack_backend``, ``orbstack_image``,
``orbstack_user``, ``orbstack_keep``, ``orbstack_clone``, ``orbstack_deploy``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .backends import KINDS, get_backend
from .backends.base import Backend
from .errors import OrbStackError
from .deploy import DeployError
from .lifecycle import KEEP_POLICIES, Lifecycle, MachineRecord, SharedMachineError
from .machine import Machine
from .registry import Registry, new_session_id
from .testinfra_backend import register as register_testinfra

MACHINES_KEY = pytest.StashKey[list]()
REPORTS_KEY = pytest.StashKey[dict]()
DEFAULT_IMAGE = "debian:bookworm"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orbstack", "disposable OrbStack/Docker machines (pytest-orbstack)")
    group.addoption("--orbstack-backend", choices=KINDS, default=None,
                    help="engine for machines: auto (OrbStack if orbctl answers, else Docker), "
                         "orbstack or docker. Default: ini orbstack_backend, else auto.")
    group.addoption("--orbstack-image", default=None,
                    help="default image, OrbStack form (debian:bookworm, ubuntu:24.04).")
    group.addoption("--orbstack-keep", nargs="?", const="always", default=None, metavar="POLICY", help="keep machines after tests: never (default), always (the "
                    "bare flag), failed (those of failing tests). Kept machines are listed at the end.")
    group.addoption("--orbstack-prune", action="store_true",
                    help="delete machines left by killed sessions and kept machines, then exit.")
    group.addoption("--orbstack-timings", metavar="FILE", default=None,
                    help="write machine phase timings as JSON to FILE.")
    parser.addini("orbstack_backend", "default engine: auto, orbstack or docker", default="auto")
    parser.addini("orbstack_image", "default image for machines", default=DEFAULT_IMAGE)
    parser.addini("orbstack_user", "default user created in machines", default="")
    parser.addini("orbstack_keep", "default keep policy: never, always or failed", default="never")
    parser.addini("orbstack_clone", "deploy once on a golden machine, clone it per test",
                  type="bool", default=True)
    parser.addini("orbstack_deploy", "deploy file applied by the `orbstack` fixture when its "
                  "marker names none (relative to rootdir)", default="")


class OrbStackSession:
    """Per-process plugin state (registered as ``orbstack_session``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.has_workers = not self.is_worker and config.getoption("dist", "no") != "no"
        if self.is_worker:
            self.session_id = workerinput["orbstack_session"]
            self.shared_dir = Path(workerinput["orbstack_shared_dir"])
            self.owner_pid = int(workerinput["orbstack_owner_pid"])
        else:
            self.session_id = new_session_id()
            self.shared_dir = Path(tempfile.gettempdir()) / f"pytest-orbstack-{self.session_id}"
            self.owner_pid = os.getpid()
        self.keep = config.getoption("orbstack_keep") or config.getini("orbstack_keep") or "never"
        if self.keep not in KEEP_POLICIES and os.path.exists(self.keep.split("::")[0]):
            # `pytest --orbstack-keep tests/test_x.py`: the bare flag, then a path to test
            config.args.append(self.keep)
            self.keep = "always"
        if self.keep not in KEEP_POLICIES:
            raise pytest.UsageError(f"--orbstack-keep / orbstack_keep = {self.keep!r}: "
                                    f"use {', '.join(KEEP_POLICIES)}")
        self.kind_requested = config.getoption("orbstack_backend") or config.getini("orbstack_backend")
        self.image = config.getoption("orbstack_image") or config.getini("orbstack_image")
        self.registry = Registry()
        self.lifecycle: Lifecycle | None = None
        self.records: list[MachineRecord] = []  # from xdist workers
        self.failed = False

    # -- the engine, lazily: runs that use no machine need no engine ---------------------
    def get_lifecycle(self) -> Lifecycle:
        if self.lifecycle is None:
            backend = get_backend(self.kind_requested)
            backend.list()  # fails now, with a clear error, when the engine does not answer
            self.prune_dead()
            self.registry.open(self.session_id, backend.kind, pid=self.owner_pid)
            self.lifecycle = Lifecycle(backend, self.registry, self.session_id, self.shared_dir,
                                       keep=self.keep, progress=self.progress)
        return self.lifecycle

    def prune_dead(self) -> list[str]:
        return self.registry.prune(get_backend)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Any failure (here, or on an xdist worker: the controller sees every report) makes
        ``keep=failed`` keep the session's shared machines."""
        if report.failed:
            self.failed = True

    def progress(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.getoption("verbose") <= 0 or self.is_worker:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    def all_records(self) -> list[MachineRecord]:
        own = self.lifecycle.records + self.lifecycle.kept if self.lifecycle else []
        seen: dict[str, MachineRecord] = {}
        for record in [*own, *self.records]:
            if record.name not in seen or record.outcome != "alive":
                seen[record.name] = record
        return list(seen.values())


def _session(config: pytest.Config) -> OrbStackSession:
    return config.pluginmanager.get_plugin("orbstack_session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "orbstack(image=None, deploy=None, user=None, cloud_init="
                            "None, clone=None, data=None): the machine the `orbstack` fixture makes")
    register_testinfra()
    session = OrbStackSession(config)
    config.pluginmanager.register(session, "orbstack_session")
    if not session.is_worker:
        _terminate_on_sigterm()


def _terminate_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C, so fixtures and the session sweep still tear down."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers join the controller's session (same id, owner and shared folder)."""
    session = _session(node.config)
    node.workerinput["orbstack_session"] = session.session_id
    node.workerinput["orbstack_shared_dir"] = str(session.shared_dir)
    node.workerinput["orbstack_owner_pid"] = str(session.owner_pid)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    records = getattr(node, "workeroutput", {}).get("orbstack_records", "[]")
    _session(node.config).records.extend(MachineRecord(**r) for r in json.loads(records))


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("orbstack_prune"):
        return None
    try:
        pruned = Registry().prune(get_backend, include_kept=True)
    except OrbStackError as exc:
        print(f"orbstack: prune failed: {exc}")
        return 1
    print(f"orbstack: pruned {len(pruned)} machine(s){': ' if pruned else ''}{' '.join(pruned)}")
    return 0


# -- reports: remember outcomes, attach machine logs and deploy output to failures ------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if report.failed:
        for machine in item.stash.get(MACHINES_KEY, []):
            _attach_diagnostics(report, machine)
    return report


def _attach_diagnostics(report: pytest.TestReport, machine: Machine) -> None:
    for result in machine.deploys:
        if not result.success or result.changed:
            report.sections.append((f"orbstack deploy: {machine.name}", result.summary()))
    try:
        journal = "\n".join(machine.logs(lines=80))
    except Exception as exc:  # the machine may be gone or broken: say so, do not mask the failure
        journal = f"(journal unavailable: {exc})"
    report.sections.append((f"orbstack journal: {machine.name}", journal))


def _test_failed(item: pytest.Item) -> bool:
    return any(r.failed for r in item.stash.get(REPORTS_KEY, {}).values())


# -- fixtures ---------------------------------------------------------------------------------
def _or_fail(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func``; an engine or deploy error fails the test with its one-line message (no
    traceback from inside pytest-orbstack, no chained exception)."""
    try:
        return func(*args, **kwargs)
    except (OrbStackError, DeployError, SharedMachineError, FileNotFoundError, ValueError) as exc:
        message = f"pytest-orbstack: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def orbstack_lifecycle(pytestconfig: pytest.Config) -> Lifecycle:
    return _or_fail(_session(pytestconfig).get_lifecycle)


@pytest.fixture(scope="session")
def orbstack_backend(orbstack_lifecycle: Lifecycle) -> Backend:
    return orbstack_lifecycle.backend


MachineFactory = Callable[..., Machine]


def _defaults(config: pytest.Config, kwargs: dict[str, Any]) -> dict[str, Any]:
    session = _session(config)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.setdefault("image", session.image)
    kwargs.setdefault("user", config.getini("orbstack_user") or None)
    kwargs.setdefault("clone", config.getini("orbstack_clone"))
    for key in ("deploy", "cloud_init"):  # relative paths are relative to the rootdir
        path = kwargs.get(key)
        if isinstance(path, (str, os.PathLike)) and not os.path.isabs(path):
            kwargs[key] = str(Path(config.rootpath) / path)
    return kwargs


def _factory(request: pytest.FixtureRequest, lifecycle: Lifecycle, scope_key: str,
             failed: Callable[[], bool]) -> Iterator[MachineFactory]:
    made: list[tuple[Machine, MachineRecord]] = []

    def make(image: str | None = None, *, deploy: Any = None, user: str | None = None,
             cloud_init: Any = None, clone: bool | None = None,
             data: dict[str, Any] | None = None) -> Machine:
        kwargs = _defaults(request.config, dict(image=image, deploy=deploy, user=user,
                                                cloud_init=cloud_init, clone=clone, data=data))
        key = f"{scope_key}#{len(made)}"
        machine, record = _or_fail(lifecycle.create, key, **kwargs)
        made.append((machine, record))
        request.node.stash.setdefault(MACHINES_KEY, []).append(machine)
        return machine

    yield make
    for machine, record in made:
        lifecycle.finish(machine, record, failed=failed())


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture
def orbstack_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """Factory of machines that are deleted (or kept, see --orbstack-keep) after the test."""
    key = request.node.nodeid
    if request.config.getoption("dist", "no") == "each":  # every worker runs every test
        key += f"@{_worker_id()}"
    yield from _factory(request, orbstack_lifecycle, key, lambda: _test_failed(request.node))


@pytest.fixture(scope="module")
def orbstack_module_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """Factory of machines that live for the test module (per xdist worker)."""
    yield from _factory(request, orbstack_lifecycle, f"{request.node.nodeid}@{_worker_id()}",
                        lambda: _session(request.config).failed)


@pytest.fixture(scope="session")
def orbstack_session_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> MachineFactory:
    """Factory of session-wide machines: one per set of arguments, shared by every test and
    every xdist worker; deleted once, when every worker has finished (by the controller)."""
    def make(image: str | None = None, *, deploy: Any = None, user: str | None = None,
             cloud_init: Any = None, data: dict[str, Any] | None = None) -> Machine:
        kwargs = _defaults(request.config, dict(image=image, deploy=deploy, user=user,
                                                cloud_init=cloud_init, data=data))
        kwargs.pop("clone", None)
        key = "session:" + json.dumps(kwargs, sort_keys=True, default=str)
        return _or_fail(orbstack_lifecycle.shared, key, **kwargs)
    return make


@pytest.fixture
def orbstack(request: pytest.FixtureRequest, orbstack_machine: MachineFactory) -> Machine:
    """The machine described by ``@pytest.mark.orbstack(...)`` (closest marker wins) or by the
    ini options ``orbstack_image`` / ``orbstack_deploy``."""
    marker = request.node.get_closest_marker("orbstack")
    kwargs = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        kwargs.setdefault("image", marker.args[0])
    if "deploy" not in kwargs and request.config.getini("orbstack_deploy"):
        kwargs["deploy"] = request.config.getini("orbstack_deploy")
    return orbstack_machine(**kwargs)


# -- session end: shared machines, sweep, summary -------------------------------------------
@pytest.hookimpl(trylast=True)  # after pytest has torn down the fixtures still up
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's last word, in the only process or the xdist controller (after every
    worker is down): shared and golden machines go (or are kept), then anything this session
    still owns is swept (Ctrl-C, SIGTERM, a crashed worker), and the session is closed."""
    plugin = _session(session.config)
    if plugin.is_worker:
        records = [asdict(r) for r in plugin.all_records()]
        session.config.workeroutput["orbstack_records"] = json.dumps(records)
        return
    lifecycle = plugin.lifecycle or _lifecycle_of_workers(plugin)
    if lifecycle is not None:
        lifecycle.finish_shared(plugin.failed)
        swept = lifecycle.sweep()
        if swept:
            plugin.progress(f"orbstack: swept {len(swept)} machine(s) left by the session")
        plugin.registry.close(plugin.session_id)
    shutil.rmtree(plugin.shared_dir, ignore_errors=True)


def _lifecycle_of_workers(plugin: OrbStackSession) -> Lifecycle | None:
    """The controller's view of a session its xdist workers registered (None if they made no
    machine)."""
    session = plugin.registry.get(plugin.session_id)
    if session is None:
        return None
    lifecycle = Lifecycle(get_backend(session.backend), plugin.registry, plugin.session_id,
                          plugin.shared_dir, keep=plugin.keep, progress=plugin.progress)
    plugin.lifecycle = lifecycle
    return lifecycle


def login_command(record: MachineRecord) -> str:
    if record.backend == "orbstack":
        return f"orb -m {record.name}"
    return f"docker exec -it {record.name} bash -l"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    plugin = _session(config)
    if plugin.is_worker:
        return
    records = plugin.all_records()
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "orbstack machines")
    phases = ["create", "clone", "deploy", "teardown"]
    width = max(len("machine"), *(len(r.name) for r in records))
    header = f"{'machine':<{width}} {'kind':<7} {'image':<16} " + " ".join(f"{p:>8}" for p in phases) + "  outcome"
    tr.write_line(header)
    for r in sorted(records, key=lambda r: (r.kind != "golden", r.name)):
        cells = " ".join(f"{r.phases[p]:>7.1f}s" if p in r.phases else f"{'-':>8}" for p in phases)
        tr.write_line(f"{r.name:<{width}} {r.kind:<7} {r.image:<16} {cells}  {r.outcome}")
    kept = [r for r in records if r.outcome == "kept"]
    if kept:
        tr.write_line("")
        tr.write_line(f"kept {len(kept)} machine(s); log in with:")
        for r in kept:
            tr.write_line(f"  {login_command(r)}")
        tr.write_line("delete them with: pytest --orbstack-prune")
    path = config.getoption("orbstack_timings")
    if path:
        Path(path).write_text(json.dumps({"session": plugin.session_id,
                                          "machines": [asdict(r) for r in records]}, indent=2))
