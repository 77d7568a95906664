"""The fixtures of pytest-orbstack (registered by :mod:`pytest_orbstack.plugin`).

Every factory takes the same keywords; see :func:`.marker.orbstack_marker` for their meaning. Inputs are
checked before any machine is made, and a problem fails the test with one line naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import pytest

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import InvalidInput, MachineError, attach_sections, report_sections
from pytest_orbstack.machines.lifecycle import Lifecycle
from pytest_orbstack.machines.machine import Machine, MachineGroup
from pytest_orbstack.machines.shared import session_key
from pytest_orbstack.model.inputs import Deploy, check_deploy, check_names, describe, resolve_path
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.model.results import DeployError
from pytest_orbstack.plugin.marker import (
    item_key,
    machine_args,
    machine_keywords,
    marker_kwargs,
    same_machines,
    worker_id,
)
from pytest_orbstack.plugin.state import STATE

MACHINES_KEY = pytest.StashKey[list[Machine]]()
RECORDS_KEY = pytest.StashKey[list[MachineRecord]]()  # the test's own machines, for JUnit
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
T = TypeVar("T")
MachineFactory = Callable[..., Machine]


def _or_fail(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``func``; an error of pytest-orbstack fails the test with its message, whose first
    line names the problem (no traceback from inside the package, no chained exception)."""
    try:
        return func(*args, **kwargs)
    except (MachineError, DeployError) as exc:
        message, sections = f"pytest-orbstack: {exc}", report_sections(exc)
    _fail(message, sections)


def _fail(message: str, sections: list[tuple[str, str]] | None = None) -> NoReturn:
    """Fail the test with ``message`` (no traceback); its report shows ``sections`` too (a
    machine's diagnostics taken before the machine was deleted)."""
    __tracebackhide__ = True
    failure = pytest.fail.Exception(message, pytrace=False)
    attach_sections(failure, sections or [])
    raise failure


@pytest.fixture(scope="session")
def _orbstack_lifecycle(pytestconfig: pytest.Config) -> Lifecycle:
    """Internal: the session's Lifecycle (engine checked, dead sessions pruned)."""
    return _or_fail(pytestconfig.stash[STATE].get_lifecycle)


@pytest.fixture(scope="session")
def orbstack_backend(_orbstack_lifecycle: Lifecycle) -> Backend:
    """The engine machines are made on: a :class:`~pytest_orbstack.backends.base.Backend`
    whose ``name`` is ``"orbstack"``, ``"docker"`` or ``"incus"`` (chosen by ``--orbstack-backend``, ini
    ``orbstack_backend``, ``$PYTEST_ORBSTACK_BACKEND``, else OrbStack when ``orbctl`` answers).
    Use it to create or inspect machines by hand; those are not deleted for you."""
    return _orbstack_lifecycle.backend


class _Factory:
    """The machines one fixture makes for its scope, finished (deleted, or kept as
    ``--orbstack-keep`` says) together when the fixture ends."""

    def __init__(self, request: pytest.FixtureRequest, lifecycle: Lifecycle, scope_key: str,
                 image: str | None = None, per_test: bool = False) -> None:
        self.request, self.lifecycle, self.scope_key = request, lifecycle, scope_key
        self.image = image  # the test's image in a platform matrix
        self.per_test = per_test  # a test's machines: the next test's may be cloned early
        self.made: list[tuple[Machine, MachineRecord]] = []

    def check(self, keywords: dict[str, Any]) -> dict[str, Any]:
        """The keywords with their defaults, every input checked (InvalidInput otherwise), a
        ``vm=True`` the engine cannot make included."""
        checked = machine_args(self.request.config, keywords, self.image,
                               self.request.config.stash[STATE].search_dirs())
        self.lifecycle.backend.refuse_resources(checked["resources"])
        return checked

    def make(self, suffix: str, checked: dict[str, Any], alias: str = "") -> Machine:
        """A machine from :meth:`check`'s keywords (``alias``: its name in a group)."""
        machine, record = _or_fail(self.lifecycle.create, f"{self.scope_key}#{suffix}",
                                   next_keys=self._next_keys(suffix), **checked)
        record.alias = alias
        machine.search_dirs = self.request.config.stash[STATE].search_dirs
        self.made.append((machine, record))
        self.request.node.stash.setdefault(MACHINES_KEY, []).append(machine)
        self.request.node.stash.setdefault(RECORDS_KEY, []).append(record)
        return machine

    def _next_keys(self, suffix: str) -> list[str]:
        """The keys of the machine ``suffix`` of the next tests (:attr:`.State.upcoming`), as
        long as each will likely ask for it with these arguments (:func:`.marker.same_machines`):
        they are cloned while this one runs (unless ini ``orbstack_spares`` is false)."""
        config = self.request.config
        if not self.per_test or not config.getini("orbstack_spares"):
            return []
        keys = []
        for item in config.stash[STATE].upcoming:
            if not same_machines(self.request.node, item):
                break
            keys.append(f"{item_key(config, item)}#{suffix}")
        return keys

    def numbered(self, where: str) -> MachineFactory:
        """The public factory: ``make(image=None, **keywords)``, machines numbered in order."""
        def make(image: str | None = None, **keywords: Any) -> Machine:
            checked = _or_fail(self.check, _or_fail(machine_keywords, (image,), keywords, where))
            return self.make(str(len(self.made)), checked)
        return make

    def finish(self, failed: bool) -> None:
        """Finish every machine made, even when one fails (its error is reported after the
        others are done; it stays recorded, so the session's end or the next run deletes it)."""
        errors = []
        for machine, record in self.made:
            try:
                self.lifecycle.finish(machine, record, failed=failed)
            except MachineError as exc:
                errors.append(f"pytest-orbstack: teardown of {machine.name} failed: {exc}")
        if errors:
            _fail("\n".join(errors))


def _test_key(request: pytest.FixtureRequest) -> str:
    return item_key(request.config, request.node)


def _test_failed(item: pytest.Item) -> bool:
    return any(r.failed for r in item.stash.get(REPORTS_KEY, {}).values())


@pytest.fixture
def _orbstack_image(request: pytest.FixtureRequest) -> str | None:
    """Internal: the test's image in a platform matrix (parametrized by plugin.py), else None."""
    return getattr(request, "param", None)


@pytest.fixture
def orbstack_machine(request: pytest.FixtureRequest, _orbstack_lifecycle: Lifecycle,
                     _orbstack_image: str | None) -> Iterator[MachineFactory]:
    """A factory of machines for this test: ``orbstack_machine(image=None, **keywords)``
    returns a running :class:`~pytest_orbstack.Machine` (``.host`` testinfra Host as root,
    ``.run()``, ``.apply()``, ``.ip4``, ``.domain``, ``.status()``, ...). The keywords are
    those of the ``orbstack`` marker (``deploy``, ``user``, ``cloud_init``, ``clone``,
    ``data``, ``check_idempotent``, ``allow_changes``, ``check_dry_run``, ``capabilities``). Every machine it made
    is deleted after the test, or kept as ``--orbstack-keep`` says. In a platform matrix
    (the marker's or ini ``orbstack_image``'s image list) machines default to the test's image."""
    factory = _Factory(request, _orbstack_lifecycle, _test_key(request), _orbstack_image, per_test=True)
    yield factory.numbered("orbstack_machine()")
    factory.finish(_test_failed(request.node))


@pytest.fixture
def orbstack_machines(request: pytest.FixtureRequest, _orbstack_lifecycle: Lifecycle,
                      _orbstack_image: str | None) -> Iterator[Callable[..., MachineGroup]]:
    """A factory of named machine groups for multi-host deploys:
    ``orbstack_machines({"web": dict(image=...), "db": dict(groups=["backend"])}, *,
    deploy=None, data=None, check_idempotent=False, allow_changes=(), check_dry_run=False)``
    makes one machine per
    name (each spec takes the ``orbstack`` marker's keywords, plus ``groups``: more inventory
    groups than its name; its ``data`` is its host data), or
    ``orbstack_machines(inventory="inventory.py", deploy=...)`` one per ``@orbstack/NAME`` host
    of a pyinfra inventory file (its groups, host data and ``group_data/`` as the CLI loads
    them; host data ``orbstack_image`` picks the image), and returns a
    :class:`~pytest_orbstack.MachineGroup` (``group["web"]`` is a Machine). ``deploy`` then runs
    ONCE across all of them, as ``pyinfra inventory.py deploy.py`` would with each machine in
    the group of its name: the deploy branches on ``host.groups`` and finds the others with
    ``inventory.get_group("db")``; inside the group each machine's name there (``db``, and
    ``db.orb.local`` as OrbStack names machines) resolves to that machine, so a deploy written
    for an inventory of ``@orbstack/db`` works unchanged (``machine.domain`` reaches it too).
    Deleted after the test, or kept as ``--orbstack-keep`` says."""
    factory = _Factory(request, _orbstack_lifecycle, _test_key(request), _orbstack_image, per_test=True)
    yield lambda specs=None, **kwargs: _or_fail(_make_group, factory, specs, **kwargs)
    factory.finish(_test_failed(request.node))


def _make_group(factory: _Factory, specs: dict[str, dict[str, Any]] | None = None, *,
                inventory: str | None = None, deploy: Deploy | None = None,
                data: dict[str, Any] | None = None, check_idempotent: bool = False,
                allow_changes: Sequence[str] = (), check_dry_run: bool = False) -> MachineGroup:
    where = "orbstack_machines()"
    dirs = factory.request.config.stash[STATE].search_dirs()
    inventory_path = resolve_path(inventory, "inventory file", dirs) if inventory is not None else None
    if inventory_path is not None:
        if specs is not None:
            raise InvalidInput(f"{where} takes machine specs or an inventory file, not both")
        from pytest_orbstack.pyinfra.deploy import inventory_machines
        specs = inventory_machines(inventory_path)
    if not isinstance(specs, dict) or not specs:
        raise InvalidInput(f"{where} takes a dict of machine name -> dict(image=..., ...), not {specs!r}")
    checked, groups, host_data = {}, {}, {}
    for alias, spec in specs.items():
        if not isinstance(alias, str) or not isinstance(spec, dict):
            raise InvalidInput(f"{where}: {alias!r}: give a name and a dict of keywords, not {spec!r}")
        spec = dict(spec)
        groups[alias] = check_names(spec.pop("groups", ()), f"{where}: {alias!r}: groups=")
        checked[alias] = factory.check(machine_keywords((), spec, f"{where}: {alias!r}"))
        host_data[alias] = checked[alias].get("data") or {}
    if deploy is not None:
        deploy = check_deploy(deploy, dirs)
    allow_changes = check_names(allow_changes, "allow_changes=")
    machines = {alias: factory.make(alias, keywords, alias=alias) for alias, keywords in checked.items()}
    group = MachineGroup(machines, groups, host_data, inventory=inventory_path)
    group.name_each_other()
    if deploy is not None:
        group.apply(deploy, data=data, check_idempotent=check_idempotent, allow_changes=allow_changes,
                    check_dry_run=check_dry_run)
    return group


@pytest.fixture(scope="module")
def orbstack_module_machine(request: pytest.FixtureRequest,
                            _orbstack_lifecycle: Lifecycle) -> Iterator[MachineFactory]:
    """The factory of ``orbstack_machine`` (same keywords, returns a
    :class:`~pytest_orbstack.Machine`) for machines that live for the whole test module (one
    set per xdist worker); deleted after the module, or kept if a test failed and
    ``--orbstack-keep=failed``."""
    factory = _Factory(request, _orbstack_lifecycle, f"{request.node.nodeid}@{worker_id(request.config)}")
    yield factory.numbered("orbstack_module_machine()")
    factory.finish(request.config.stash[STATE].failed)


@pytest.fixture(scope="session")
def orbstack_session_machine(request: pytest.FixtureRequest,
                             _orbstack_lifecycle: Lifecycle) -> MachineFactory:
    """A factory of session-wide machines: ``orbstack_session_machine(image=None, **keywords)``
    (the marker's keywords but ``clone``) returns the one :class:`~pytest_orbstack.Machine`
    for those arguments, made by whichever test (or xdist worker) asks first and shared by
    all; deleted once, when every worker has finished. A failed creation is not retried:
    every asker gets its error."""
    def make(image: str | None = None, **keywords: Any) -> Machine:
        checked = _or_fail(machine_keywords, (image,), keywords, "orbstack_session_machine()")
        kwargs = _or_fail(machine_args, request.config, checked)
        kwargs.pop("clone", None)
        key = session_key(kwargs)
        current = request.config.stash[STATE].current_item
        deploy = kwargs.get("deploy")
        label = f"session machine of {kwargs['image']}" + (f" with deploy {describe(deploy)}" if deploy else "")
        return _or_fail(_orbstack_lifecycle.shared, key, label=label, asker=current.nodeid if current else "",
                        **kwargs)
    return make


@pytest.fixture
def orbstack(request: pytest.FixtureRequest, orbstack_machine: MachineFactory,
             _orbstack_image: str | None) -> Machine:
    """The running :class:`~pytest_orbstack.Machine` that the closest
    ``@pytest.mark.orbstack(image=None, **keywords)`` describes (see the marker; without a
    marker: ini ``orbstack_image`` and ``orbstack_deploy``); deleted after the test, or kept
    as ``--orbstack-keep`` says. ``image=["debian:bookworm", "debian:trixie"]`` (or several
    images in ini ``orbstack_image``) runs the test once per image, ids ``[debian:trixie]``;
    ``--orbstack-image`` narrows that list."""
    marker = request.node.get_closest_marker("orbstack")
    kwargs = _or_fail(marker_kwargs, marker) if marker else {}
    if _orbstack_image is not None:
        kwargs["image"] = _orbstack_image
    if kwargs.get("deploy") is None and request.config.getini("orbstack_deploy"):
        kwargs["deploy"] = request.config.getini("orbstack_deploy")
    return orbstack_machine(**kwargs)
