"""The fixtures of pytest-orbstack (registered by :mod:`pytest_orbstack.plugin`).

Every factory takes the same keywords; see :func:`orbstack_marker` for their meaning. Inputs are
checked before any machine is made, and a problem fails the test with one line naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

from .backends.base import Backend
from .errors import InvalidInput, MachineError
from .identity import callable_key
from .inputs import Deploy, check_cloud_init, check_deploy, check_user, closest, parse_image
from .lifecycle import Lifecycle, MachineRecord
from .machine import Machine
from .results import DeployError
from .state import plugin_state

MACHINES_KEY = pytest.StashKey[list[Machine]]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
T = TypeVar("T")
MachineFactory = Callable[..., Machine]


def orbstack_marker(image: str | None = None, *, deploy: Deploy | None = None,
                    user: str | None = None, cloud_init: str | None = None,
                    clone: bool | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """``@pytest.mark.orbstack(image=None, *, deploy=None, user=None, cloud_init=None,
    clone=None, data=None)``: the machine the ``orbstack`` fixture makes; the factories take
    the same keywords.

    ``image``: ``distro[:version]`` (default: ``--orbstack-image`` / ini ``orbstack_image``).
    ``deploy``: a pyinfra deploy file or a callable, applied to the machine. ``user``: the
    machine's default user (passwordless sudo; default: ini ``orbstack_user``, else the engine's
    default). ``cloud_init``: a cloud-init user-data file applied at creation. ``clone``: run
    the deploy once on a golden machine and clone it per test (default: ini ``orbstack_clone``,
    true). ``data``: pyinfra host data for the deploy (``host.data``). Relative paths are looked
    up in the running test's folder, then in the rootdir.
    """
    return dict(image=image, deploy=deploy, user=user, cloud_init=cloud_init, clone=clone,
                data=data)


def marker_kwargs(marker: pytest.Mark) -> dict[str, Any]:
    """The marker's arguments checked against :func:`orbstack_marker`; InvalidInput naming
    the wrong argument (with the closest right one) otherwise."""
    names = ("image", "deploy", "user", "cloud_init", "clone", "data")
    for key in marker.kwargs:
        if key not in names:
            raise InvalidInput(f"@pytest.mark.orbstack got an unknown argument {key!r}"
                               f"{closest(key, names)}; it takes {', '.join(names)}")
    try:
        return orbstack_marker(*marker.args, **marker.kwargs)
    except TypeError as exc:
        raise InvalidInput(f"@pytest.mark.orbstack: {exc}".replace("orbstack_marker() ", ""))


def _or_fail(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``func``; an error of pytest-orbstack fails the test with its message, whose first
    line names the problem (no traceback from inside the package, no chained exception)."""
    try:
        return func(*args, **kwargs)
    except (MachineError, DeployError) as exc:
        message = f"pytest-orbstack: {exc}"
    _fail(message)


def _fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def _machine_args(config: pytest.Config, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Factory keywords with the ini defaults filled in, every input checked (paths resolved
    to absolute ones) before any engine call."""
    state = plugin_state(config)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.setdefault("image", state.image)
    kwargs.setdefault("user", config.getini("orbstack_user") or None)
    kwargs.setdefault("clone", config.getini("orbstack_clone"))
    dirs = state.search_dirs()
    parse_image(kwargs["image"])
    check_user(kwargs["user"])
    if "deploy" in kwargs:
        kwargs["deploy"] = check_deploy(kwargs["deploy"], dirs)
    if "cloud_init" in kwargs:
        kwargs["cloud_init"] = check_cloud_init(kwargs["cloud_init"], dirs)
    if kwargs.get("data") is not None and not isinstance(kwargs["data"], dict):
        raise InvalidInput(f"data= must be a dict of host data, not {type(kwargs['data']).__name__}")
    return kwargs


@pytest.fixture(scope="session")
def _orbstack_lifecycle(pytestconfig: pytest.Config) -> Lifecycle:
    """Internal: the session's Lifecycle (engine checked, dead sessions pruned)."""
    return _or_fail(plugin_state(pytestconfig).get_lifecycle)


@pytest.fixture(scope="session")
def orbstack_backend(_orbstack_lifecycle: Lifecycle) -> Backend:
    """The engine machines are made on: a :class:`~pytest_orbstack.backends.base.Backend`
    whose ``kind`` is ``"orbstack"`` or ``"docker"`` (chosen by ``--orbstack-backend``, ini
    ``orbstack_backend``, ``$PYTEST_ORBSTACK_BACKEND``, else OrbStack when ``orbctl`` answers).
    Use it to create or inspect machines by hand; those are not deleted for you."""
    return _orbstack_lifecycle.backend


def _factory(request: pytest.FixtureRequest, lifecycle: Lifecycle, scope_key: str,
             failed: Callable[[], bool]) -> Iterator[MachineFactory]:
    made: list[tuple[Machine, MachineRecord]] = []
    state = plugin_state(request.config)

    def make(image: str | None = None, *, deploy: Deploy | None = None, user: str | None = None,
             cloud_init: str | None = None, clone: bool | None = None,
             data: dict[str, Any] | None = None) -> Machine:
        kwargs = _or_fail(_machine_args, request.config, orbstack_marker(
            image, deploy=deploy, user=user, cloud_init=cloud_init, clone=clone, data=data))
        key = f"{scope_key}#{len(made)}"
        machine, record = _or_fail(lifecycle.create, key, **kwargs)
        machine.search_dirs = state.search_dirs
        made.append((machine, record))
        request.node.stash.setdefault(MACHINES_KEY, []).append(machine)
        return machine

    yield make
    for machine, record in made:
        lifecycle.finish(machine, record, failed=failed())


def _worker_id(request: pytest.FixtureRequest) -> str:
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "main"


def _test_failed(item: pytest.Item) -> bool:
    return any(r.failed for r in item.stash.get(REPORTS_KEY, {}).values())


@pytest.fixture
def orbstack_machine(request: pytest.FixtureRequest,
                     _orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """A factory of machines for this test:
    ``orbstack_machine(image=None, *, deploy=None, user=None, cloud_init=None, clone=None,
    data=None)`` returns a running :class:`~pytest_orbstack.Machine` (``.host`` testinfra
    Host as root, ``.run()``, ``.apply()``, ``.ip4``, ``.domain``, ``.status()``, ...). The
    keywords are those of the ``orbstack`` marker. Every machine it made is deleted after
    the test, or kept as ``--orbstack-keep`` says."""
    key = request.node.nodeid
    if request.config.getoption("dist", "no") == "each":  # every worker runs every test
        key += f"@{_worker_id(request)}"
    yield from _factory(request, _orbstack_lifecycle, key, lambda: _test_failed(request.node))


@pytest.fixture(scope="module")
def orbstack_module_machine(request: pytest.FixtureRequest,
                            _orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """The factory of ``orbstack_machine`` (same keywords, returns a
    :class:`~pytest_orbstack.Machine`) for machines that live for the whole test module (one
    set per xdist worker); deleted after the module, or kept if a test failed and
    ``--orbstack-keep=failed``."""
    yield from _factory(request, _orbstack_lifecycle, f"{request.node.nodeid}@{_worker_id(request)}",
                        lambda: plugin_state(request.config).failed)


@pytest.fixture(scope="session")
def orbstack_session_machine(request: pytest.FixtureRequest,
                             _orbstack_lifecycle: Lifecycle) -> MachineFactory:
    """A factory of session-wide machines:
    ``orbstack_session_machine(image=None, *, deploy=None, user=None, cloud_init=None,
    data=None)`` returns the one :class:`~pytest_orbstack.Machine` for those arguments,
    made by whichever test (or xdist worker) asks first and shared by all; deleted once, when
    every worker has finished. A failed creation is not retried: every asker gets its error."""
    def make(image: str | None = None, *, deploy: Deploy | None = None, user: str | None = None,
             cloud_init: str | None = None, data: dict[str, Any] | None = None) -> Machine:
        kwargs = _or_fail(_machine_args, request.config, orbstack_marker(
            image, deploy=deploy, user=user, cloud_init=cloud_init, data=data))
        kwargs.pop("clone", None)
        identity = {k: callable_key(v) if callable(v) else v for k, v in kwargs.items()}
        key = "session:" + json.dumps(identity, sort_keys=True, default=str)
        return _or_fail(_orbstack_lifecycle.shared, key, **kwargs)
    return make


@pytest.fixture
def orbstack(request: pytest.FixtureRequest, orbstack_machine: MachineFactory) -> Machine:
    """The running :class:`~pytest_orbstack.Machine` that the closest
    ``@pytest.mark.orbstack(image=None, *, deploy=None, user=None, cloud_init=None, clone=None,
    data=None)`` describes (without a marker: ini ``orbstack_image`` and ``orbstack_deploy``);
    deleted after the test, or kept as ``--orbstack-keep`` says."""
    marker = request.node.get_closest_marker("orbstack")
    kwargs = _or_fail(marker_kwargs, marker) if marker else {}
    if kwargs.get("deploy") is None and request.config.getini("orbstack_deploy"):
        kwargs["deploy"] = request.config.getini("orbstack_deploy")
    return orbstack_machine(**kwargs)
