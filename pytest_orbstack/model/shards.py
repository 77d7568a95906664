"""Splitting a suite over N CI jobs (``--orbstack-shard=K/N``), as plain data: the option's
value (:func:`parse_shard`), what an earlier run's ``--orbstack-timings`` says each test and
each golden machine cost (:func:`recorded_costs`), and the split itself (:func:`partition`):
groups of tests (all the tests that clone one golden machine are one group) are kept whole and
spread so that each shard's summed cost is as even as a greedy split makes it, the same in
every process that computes it (each shard's job, each xdist worker)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_orbstack.errors import InvalidInput

SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
EACH_RE = re.compile(r"@gw\d+$")  # a test key's worker under --dist each (.marker.item_key)
COUNT = "count"  # the cost model when no earlier timings are known: one per test


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``1 <= K <= N``; InvalidInput saying what is wrong otherwise."""
    match = SHARD_RE.match(value)
    if match is None:
        raise InvalidInput(f"--orbstack-shard={value}: give K/N, this job's shard K of N (1/2, 2/2)")
    index, total = int(match[1]), int(match[2])
    if total < 1 or not 1 <= index <= total:
        raise InvalidInput(f"--orbstack-shard={value}: K must be 1 to N (here {total}), "
                           f"as in 1/{max(total, 1)}")
    return index, total


def golden_tag(name: str) -> str:
    """What a golden machine's name ends with: the hash of its key (:func:`.names.slug_name`),
    the same in every session, so an earlier run's golden is found by its key."""
    return name.rsplit("-", 1)[-1]


@dataclass
class Costs:
    """What an earlier run recorded, in seconds: each test's wall time (setup, call and
    teardown: its machines' making and deploys included, and the golden machine it was the
    first to ask for), each test's machines' phases (used where no wall time is recorded: a
    timings file of an earlier release), each golden machine's phases by its tag; ``source``
    says where they came from."""
    walls: dict[str, float] = field(default_factory=dict)
    machines: dict[str, float] = field(default_factory=dict)
    goldens: dict[str, float] = field(default_factory=dict)
    source: str = COUNT

    def test(self, nodeid: str) -> float:
        """A test's cost: its wall time, else its machines' phases, else the median of those
        recorded, else 1 (with nothing recorded the split counts tests)."""
        for known in (self.walls, self.machines):
            if nodeid in known:
                return known[nodeid]
        known = self.walls or self.machines
        return statistics.median(known.values()) if known else 1.0

    def golden(self, tag: str, nodeids: Sequence[str]) -> float:
        """What a golden machine adds to its tests' costs: nothing when one of them has a wall
        time (the one that made it paid for it), else its phases as recorded, else the median of
        those recorded, else 0."""
        if any(n in self.walls for n in nodeids):
            return 0.0
        if tag in self.goldens:
            return self.goldens[tag]
        return statistics.median(self.goldens.values()) if self.goldens else 0.0


def recorded_costs(timings: Mapping[str, Any], source: str) -> Costs:
    """The costs an ``--orbstack-timings`` JSON (one run's, or shards' merged) records: each
    test's ``tests`` seconds, the phases of the machines made for each test (``test`` is
    ``NODEID#n``), each golden machine's phases by its tag. Session machines are not counted
    apart: which tests share one is only known when they run."""
    costs = Costs(source=source)
    for nodeid, seconds in (timings.get("tests") or {}).items():
        costs.walls[nodeid] = costs.walls.get(nodeid, 0.0) + float(seconds)
    for machine in timings.get("machines") or []:
        seconds = sum(float(s) for s in (machine.get("phases") or {}).values())
        if machine.get("kind") == "golden":
            tag = golden_tag(machine.get("name", ""))
            costs.goldens[tag] = costs.goldens.get(tag, 0.0) + seconds
        elif machine.get("kind") == "test" and "#" in machine.get("test", ""):
            nodeid = EACH_RE.sub("", machine["test"].rpartition("#")[0])
            costs.machines[nodeid] = costs.machines.get(nodeid, 0.0) + seconds
    return costs


@dataclass
class Group:
    """Tests that must run in one shard: their ids in collection order, and the tag of the
    golden machine they clone ("" for a test on its own, or a module's tests)."""
    key: str
    nodeids: list[str]
    golden: str = ""

    def cost(self, costs: Costs) -> float:
        golden = costs.golden(self.golden, self.nodeids) if self.golden else 0.0
        return sum(costs.test(n) for n in self.nodeids) + golden


def partition(groups: Sequence[Group], total: int, costs: Costs) -> list[list[Group]]:
    """``groups`` spread over ``total`` shards, each group whole: the costliest first, each to
    the shard with the least cost so far (the lowest numbered on a tie). Deterministic: the same
    groups and costs give the same shards in every process."""
    shards: list[list[Group]] = [[] for _ in range(total)]
    loads = [0.0] * total
    order = sorted(enumerate(groups), key=lambda pair: (-round(pair[1].cost(costs), 6), pair[0]))
    for _, group in order:
        target = min(range(total), key=lambda i: (round(loads[i], 6), i))
        shards[target].append(group)
        loads[target] += group.cost(costs)
    return shards
