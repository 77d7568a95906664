"""Splitting a suite over shards (pytest_orbstack.model.shards): the option's value, the costs
an earlier run's timings record, and the split: deterministic, balanced, groups kept whole."""

from __future__ import annotations

import itertools
import random

import pytest

from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.model.shards import Costs, Group, parse_shard, partition, recorded_costs


@pytest.mark.parametrize("value, expected", [("1/2", (1, 2)), ("2/2", (2, 2)), (" 3 / 7 ", (3, 7)), ("1/1", (1, 1))])
def test_shard_values(value, expected):
    assert parse_shard(value) == expected


@pytest.mark.parametrize("value, says", [
    ("3/2", "--orbstack-shard=3/2: K must be 1 to N (here 2), as in 1/2"),
    ("0/2", "K must be 1 to N"), ("1/0", "K must be 1 to N (here 0), as in 1/1"),
    ("x/y", "--orbstack-shard=x/y: give K/N"), ("2", "give K/N"), ("-1/2", "give K/N"), ("", "give K/N"),
])
def test_bad_shard_values_say_what_to_give(value, says):
    with pytest.raises(InvalidInput) as exc:
        parse_shard(value)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def _groups(sizes: list[int]) -> list[Group]:
    return [Group(f"g{i}", [f"t.py::g{i}_{j}" for j in range(size)], golden=f"tag{i}" if size > 1 else "")
            for i, size in enumerate(sizes)]


def test_every_test_in_exactly_one_shard_and_groups_whole():
    rng = random.Random(7)
    for total in (1, 2, 3, 5):
        groups = _groups([rng.randint(1, 6) for _ in range(20)])
        shards = partition(groups, total, Costs())
        assert len(shards) == total
        placed = [g.key for shard in shards for g in shard]
        assert sorted(placed) == sorted(g.key for g in groups)  # each group once, whole
        tests = [t for shard in shards for g in shard for t in g.nodeids]
        assert sorted(tests) == sorted(t for g in groups for t in g.nodeids)


def test_the_split_is_the_same_every_time_and_in_any_process():
    groups = _groups([3, 1, 1, 2, 5, 1, 2, 2])
    costs = Costs(walls={"t.py::g4_0": 30.0, "t.py::g1_0": 12.5}, source="t.json")
    first = [[g.key for g in shard] for shard in partition(groups, 3, costs)]
    for _ in range(5):
        assert [[g.key for g in shard] for shard in partition(list(groups), 3, costs)] == first


def test_balanced_by_count_without_timings():
    shards = partition(_groups([4, 1, 1, 1, 1, 2, 2]), 2, Costs())
    loads = [sum(len(g.nodeids) for g in shard) for shard in shards]
    assert sorted(loads) == [6, 6]


def test_greedy_is_close_to_the_best_split():
    """Largest first to the least loaded shard: within 4/3 of the best split (Graham's bound),
    checked against every split of a small suite."""
    rng = random.Random(3)
    for _ in range(30):
        groups = _groups([rng.randint(1, 9) for _ in range(7)])
        greedy = max(sum(len(g.nodeids) for g in s) for s in partition(groups, 3, Costs()))
        sizes = [len(g.nodeids) for g in groups]
        best = min(max(sum(n for n, k in zip(sizes, assign, strict=True) if k == shard) for shard in range(3))
                   for assign in itertools.product(range(3), repeat=len(groups)))
        assert greedy <= best * 4 / 3


def test_recorded_costs_balance_the_split():
    """A golden group of three cheap tests and one slow test: by count the slow test would share
    a shard; by recorded seconds it is alone."""
    timings = {"session": "s1", "tests": {"a.py::slow": 100.0, "b.py::one": 1.0, "b.py::two": 1.0,
                                          "c.py::x": 1.0, "c.py::y": 1.0, "c.py::z": 1.0}, "machines": []}
    groups = [Group("a.py::slow", ["a.py::slow"]), Group("b.py::one", ["b.py::one"]),
              Group("b.py::two", ["b.py::two"]), Group("golden:x", ["c.py::x", "c.py::y", "c.py::z"], "abc123")]
    shards = partition(groups, 2, recorded_costs(timings, "t.json"))
    assert [[g.key for g in shard] for shard in shards] == [["a.py::slow"], ["golden:x", "b.py::one", "b.py::two"]]


def test_golden_and_machine_costs_where_no_wall_time_is_recorded():
    """Timings of a release that recorded no test seconds: the tests' machines' phases, and the
    golden machine's own phases (create, deploy, teardown), found by its name's hash."""
    timings = {"session": "s1", "machines": [
        {"name": "pto-s1-golden-debian-x-abc123", "kind": "golden", "test": "golden machine of ...",
         "phases": {"create": 2.0, "deploy": 40.0, "teardown": 1.0}},
        {"name": "pto-s1-t-a-0-111111", "kind": "test", "test": "t.py::a#0", "phases": {"clone": 1.5, "teardown": 0.5}},
        {"name": "pto-s1-t-b-0-222222", "kind": "test", "test": "t.py::b[x@y]@gw1#web", "phases": {"create": 3.0}},
    ]}
    costs = recorded_costs(timings, "old.json")
    assert costs.machines == {"t.py::a": 2.0, "t.py::b[x@y]": 3.0} and costs.goldens == {"abc123": 43.0}
    assert Group("g", ["t.py::a", "t.py::new"], "abc123").cost(costs) == 2.0 + 2.5 + 43.0  # new: the median
    assert Group("g", ["t.py::a"], "unknown").cost(costs) == 2.0 + 43.0  # an unknown golden: the median
    with_walls = recorded_costs({**timings, "tests": {"t.py::a": 50.0}}, "new.json")
    assert Group("g", ["t.py::a"], "abc123").cost(with_walls) == 50.0  # its wall time paid for the golden


def test_more_shards_than_groups_leaves_some_empty():
    shards = partition(_groups([3]), 3, Costs())
    assert [len(s) for s in shards] == [1, 0, 0]
