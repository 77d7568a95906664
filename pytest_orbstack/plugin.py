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
import signal
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .backends import KINDS, get_backend, resolve_kind
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
    group.addoption("--orbstack-keep", nargs="?", const="always", choices=KEEP_POLICIES,
                    default=None, help="keep machines after tests: never (default), always (the "
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
        if self.keep not in KEEP_POLICIES:
            raise pytest.UsageError(f"orbstack_keep = {self.keep!r}: use never, always or failed")
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
        return self.registry.prune(lambda kind, name: get_backend(kind).delete(name))

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
    registry = Registry()
    pruned = registry.prune(lambda kind, name: get_backend(kind).delete(name))
    kept = _kept_file(registry)
    names = json.loads(kept.read_text()) if kept.exists() else []
    for entry in names:
        try:
            get_backend(entry["backend"]).delete(entry["name"])
            pruned.append(entry["name"])
        except OrbStackError:
            pass
    kept.unlink(missing_ok=True)
    print(f"orbstack: pruned {len(pruned)} machine(s){': ' if pruned else ''}{' '.join(pruned)}")
    return 0


def _kept_file(registry: Registry) -> Path:
    return registry.dir.parent / "kept.json"


# -- reports: remember outcomes, attach machine logs and deploy output to failures ------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if report.failed:
        _session(item.config).failed = True
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


@pytest.fixture
def orbstack_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """Factory of machines that are deleted (or kept, see --orbstack-keep) after the test."""
    yield from _factory(request, orbstack_lifecycle, request.node.nodeid,
                        lambda: _test_failed(request.node))


@pytest.fixture(scope="module")
def orbstack_module_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """Factory of machines that live for the test module (per xdist worker)."""
    yield from _factory(request, orbstack_lifecycle, f"{request.node.nodeid}@{os.getpid()}",
                        lambda: _session(request.config).failed)


@pytest.fixture(scope="session")
def orbstack_session_machine(request: pytest.FixtureRequest, orbstack_lifecycle: Lifecycle) -> MachineFactory:
    """Factory of session-wide machines: one per set of arguments, shared by every test and
    every xdist worker; deleted once, by the last worker to finish."""
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
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    plugin = _session(session.config)
    lifecycle = plugin.lifecycle
    if lifecycle is not None and not plugin.has_workers:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) if plugin.is_worker else 1
        lifecycle.finish_worker(workers, plugin.failed)
    if plugin.is_worker:
        records = [asdict(r) for r in plugin.all_records()]
        session.config.workeroutput["orbstack_records"] = json.dumps(records)
        return
    # The controller's last word: whatever this session still owns goes (Ctrl-C, SIGTERM,
    # crashed workers), then the session is forgotten. Kept machines were unrecorded already.
    if lifecycle is not None or plugin.registry.machines(plugin.session_id):
        swept = (lifecycle or _sweeper(plugin)).sweep()
        if swept:
            plugin.progress(f"orbstack: swept {len(swept)} machine(s) left by the session")
        plugin.registry.close(plugin.session_id)
    _remember_kept(plugin)


def _sweeper(plugin: OrbStackSession) -> Lifecycle:
    session = next(s for s in plugin.registry.sessions() if s.id == plugin.session_id)
    return Lifecycle(get_backend(session.backend), plugin.registry, plugin.session_id,
                     plugin.shared_dir, keep="never")


def _remember_kept(plugin: OrbStackSession) -> None:
    kept = [r for r in plugin.all_records() if r.outcome == "kept"]
    if not kept:
        return
    path = _kept_file(plugin.registry)
    entries = json.loads(path.read_text()) if path.exists() else []
    entries += [{"name": r.name, "backend": r.backend} for r in kept]
    path.write_text(json.dumps(entries))


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
