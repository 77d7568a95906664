"""``--orbstack-shard=K/N``: this job runs shard K of N of the suite, each golden machine's
tests together (:mod:`pytest_orbstack.model.shards` splits; docs/scale.md says why not
pytest-split alone). The tests that clone one golden machine are found at collection by the
golden key their ``orbstack`` fixture will ask for (:func:`.shared.golden_key` of the marker's
checked keywords); a module's ``orbstack_module_machine`` tests stay together too. Tests not
in this shard are deselected through pytest's own ``pytest_deselected`` ("3 deselected").
Each shard is an ordinary session of its own: its own id, machines, watcher and prune scope."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.machines.shared import golden_args, golden_key
from pytest_orbstack.model.inputs import search_dirs
from pytest_orbstack.model.names import PREFIX, slug_name
from pytest_orbstack.model.shards import COUNT, Costs, Group, golden_tag, parse_shard, partition, recorded_costs
from pytest_orbstack.plugin.marker import machine_args, machine_keywords, marker_kwargs

PLUGIN_NAME = "orbstack_shard"


def configure(config: pytest.Config) -> None:
    """With ``--orbstack-shard``: check its value and the timings (one usage line, before any
    machine is made) and register the selection."""
    value = config.getoption("orbstack_shard", None)
    if not value:
        return
    try:
        index, total = parse_shard(value)
        costs = load_costs(config.getoption("orbstack_shard_timings"))
    except InvalidInput as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(ShardSelection(index, total, costs), PLUGIN_NAME)


def load_costs(path: str | None) -> Costs:
    """The costs recorded in ``path`` (:func:`.shards.recorded_costs`); counts when there is no
    such file yet (a first run); InvalidInput when it is not ``--orbstack-timings`` JSON."""
    if not path or not Path(path).is_file():
        return Costs(source=f"{COUNT}: no {path} yet" if path else COUNT)
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        return recorded_costs(data, path)
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        raise InvalidInput(f"--orbstack-shard-timings={path}: not the JSON --orbstack-timings writes ({exc})")


def golden_group(config: pytest.Config, item: pytest.Item) -> str:
    """The key of the golden machine the test's ``orbstack`` fixture will clone (its closest
    marker, matrix image and ini defaults, checked as the fixture checks them), or "" when it
    makes none (no deploy, ``clone=False``, cloud-init, or inputs the test itself will reject)."""
    marker = item.get_closest_marker("orbstack")
    image = getattr(getattr(item, "callspec", None), "params", {}).get("_orbstack_image")
    try:
        kwargs = dict(marker_kwargs(marker)) if marker is not None else {}
        if image is not None:
            kwargs["image"] = image
        if kwargs.get("deploy") is None and config.getini("orbstack_deploy"):
            kwargs["deploy"] = config.getini("orbstack_deploy")
        keywords = machine_keywords((kwargs.pop("image", None),), kwargs)
        checked = machine_args(config, keywords, image, search_dirs(item.path.parent, config.rootpath))
    except InvalidInput:
        return ""
    if checked.get("deploy") is None or not checked["clone"] or checked.get("cloud_init") is not None:
        return ""
    return golden_key(checked["image"], checked["deploy"], *golden_args(checked))


def shard_groups(config: pytest.Config, items: list[pytest.Item]) -> list[Group]:
    """The collected tests as groups kept whole, in collection order: one per golden machine,
    one per module using ``orbstack_module_machine``, else one per test."""
    groups: dict[str, Group] = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        key = golden_group(config, item) if "orbstack" in fixtures else ""
        tag = golden_tag(slug_name(PREFIX.rstrip("-"), key)) if key else ""
        if not key and "orbstack_module_machine" in fixtures:
            key = "module:" + item.nodeid.partition("::")[0]
        groups.setdefault(key or item.nodeid, Group(key or item.nodeid, [], tag)).nodeids.append(item.nodeid)
    return list(groups.values())


class ShardSelection:
    """Keeps shard ``index`` of ``total`` of the collected tests (after pytest's own ``-k``/``-m``
    selection) and says so under pytest's collection line."""

    def __init__(self, index: int, total: int, costs: Costs) -> None:
        self.index, self.total, self.costs = index, total, costs
        self.summary: list[str] = []
        self.empty = False

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        groups = shard_groups(config, items)
        shards = partition(groups, self.total, self.costs)
        mine = {nodeid for group in shards[self.index - 1] for nodeid in group.nodeids}
        selected = [item for item in items if item.nodeid in mine]
        deselected = [item for item in items if item.nodeid not in mine]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected
        self.empty = not selected
        loads = [sum(group.cost(self.costs) for group in shard) for shard in shards]
        goldens = [group.golden for group in groups if group.golden]
        found = sum(tag in self.costs.goldens for tag in goldens)
        self.summary = [f"orbstack: shard {self.index}/{self.total}: {len(selected)} of "
                        f"{len(selected) + len(deselected)} tests, {len(shards[self.index - 1])} of "
                        f"{len(groups)} groups ({len(goldens)} golden); cost {loads[self.index - 1]:.1f} "
                        f"of {sum(loads):.1f} (by {self.costs.source}; {found} golden machines' costs recorded)"]

    def pytest_report_collectionfinish(self) -> list[str]:
        return self.summary

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """A shard left with no test (more shards than groups) passes: it has nothing to run."""
        if self.empty and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK
