"""``pytest -n N`` with xdist's default ``--dist load``: golden machines of different keys are
made at the same time by different workers, and a worker is not handed a test that would wait
for a golden machine another worker is still making while other tests are there to run.

xdist's own load scheduler hands out tests in collection order, two or more at a time: with a
suite's tests of golden A before those of golden B, both workers start on A, and the second
waits on A's file lock (:mod:`.shared`) while B is not begun. :class:`GoldenScheduling` is that
scheduler (same batch sizes, refills and crash handling) picking *which* pending tests to send:

- a worker that makes no golden machine now claims a golden key no worker has begun (its first
  test of that key makes it), and is then sent that key's tests;
- other workers are sent tests of other keys, or tests with no golden machine, meanwhile;
- once a test of a key has finished (the golden machine is made, or its making failed and is
  recorded), that key's tests go to any worker, first to a worker whose last test had that key
  (its spare clone, :mod:`pytest_orbstack.machines.spares`, is made for the test after it: a
  worker switching keys clones on demand);
- only when nothing else is pending is a worker sent a test that will wait (a worker runs a test
  only when it holds the next one too, so it is never left with fewer than two).

The golden key of each test is the one ``--orbstack-shard`` groups by (:func:`.shard.shard_groups`),
computed by the workers at collection (the controller collects nothing) and written to the
session's shared folder, where the controller's scheduler reads it when it starts scheduling
(after every worker's collection). Other ``--dist`` modes are left to xdist (``loadgroup``,
``loadscope``, ``loadfile`` and ``worksteal`` are the user's explicit choice)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

from pytest_orbstack.machines.spares import DEPTH as SPARE_DEPTH
from pytest_orbstack.plugin.shard import shard_groups
from pytest_orbstack.plugin.state import STATE

GROUPS_FILE = Path("schedule") / "golden-groups.json"  # in the session's shared folder
GROUPS_INPUT = "orbstack_golden_groups"  # the workers' input naming that file
SHORT_TEST = 2.0  # seconds between a worker's test reports below which its next tests are queued
# deeper (:meth:`GoldenScheduling.top_up`): a second spare helps tests shorter than a clone's
# boot (0.5-2 s on these engines); with longer tests it would only leave another worker idle
# at the run's end while this one still holds tests
PLUGIN_NAME = "orbstack_schedule"


def configure(config: pytest.Config) -> None:
    """Register the scheduler's hooks in an xdist controller under ``--dist load`` (what
    ``-n N`` means by default), and in its workers (told so by their input: a worker's own
    ``dist`` option is always ``no``)."""
    workerinput = getattr(config, "workerinput", None)
    if (GROUPS_INPUT in workerinput) if workerinput is not None else getattr(config.option, "dist", "no") == "load":
        config.pluginmanager.register(GoldenSchedule(), PLUGIN_NAME)


class GoldenSchedule:
    """The worker's half (writes each test's golden tag at collection) and the controller's
    (names that file in the workers' input, makes the scheduler)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is None:
            return
        tags = {nodeid: group.golden for group in shard_groups(config, items) if group.golden
                for nodeid in group.nodeids}
        path = Path(workerinput[GROUPS_INPUT])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{workerinput['workerid']}")  # every worker writes the same
        partial.write_text(json.dumps(tags))
        os.replace(partial, path)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[GROUPS_INPUT] = str(self.groups(node.config))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> GoldenScheduling:
        return GoldenScheduling(config, log, self.groups(config))

    @staticmethod
    def groups(config: pytest.Config) -> Path:
        """The file the workers write the tests' golden tags to."""
        return Path(config.stash[STATE].shared_dir) / GROUPS_FILE


class GoldenScheduling(LoadScheduling):
    """xdist's :class:`LoadScheduling`, choosing which pending tests it sends (the module says
    how). ``groups`` is the workers' JSON of test id to golden tag; a test it does not name (or
    no file: the plugin made no machine here) has no golden machine and goes anywhere."""

    def __init__(self, config: pytest.Config, log: Any, groups: Path) -> None:
        super().__init__(config, log)
        self.groups = groups
        self.tags: list[str] | None = None  # by collection index, read at the first send
        self.builders: dict[str, Any] = {}  # a golden tag being made: the worker making it
        self.made: set[str] = set()  # golden tags of which a test has finished
        self.last: dict[Any, str] = {}  # a worker: the golden tag of the last test it was sent
        self.reported: dict[Any, float] = {}  # a worker: when its last test's report came
        self.short: dict[Any, bool] = {}  # a worker: whether its last test was short (SHORT_TEST)

    def tag(self, index: int) -> str:
        """The golden tag of the test at collection ``index`` ("" for none)."""
        if self.tags is None:
            try:
                tags = json.loads(self.groups.read_text())
            except (OSError, ValueError):
                tags = {}
            self.tags = [tags.get(nodeid, "") for nodeid in self.collection or ()]
        return self.tags[index]

    def ready(self, node: Any, index: int) -> bool:
        """Whether ``node`` can run the test at ``index`` without waiting for another worker's
        golden machine; claims the test's golden key for ``node`` when it begins it."""
        tag = self.tag(index)
        if not tag or tag in self.made or self.builders.get(tag) is node:
            return True
        if tag in self.builders or node in self.builders.values():
            return False  # another worker makes it; or this one makes one golden at a time
        self.builders[tag] = node
        return True

    def _send_tests(self, node: Any, num: int) -> None:
        """Send ``node`` up to ``num`` pending tests it can run at once, those of the golden key
        of the last test it was sent first, else in collection order;
        topped up with the first others so that it holds at least two (or all that are left)
        while there are more tests than workers: a worker holding one test does not start it,
        and xdist would not ask again."""
        last = self.last.get(node)
        order = sorted(self.pending, key=lambda index: self.tag(index) != last)  # (stable)
        chosen: list[int] = []
        for index in order:
            if len(chosen) == num:
                break
            if self.ready(node, index):
                chosen.append(index)
        # (with no more tests than workers every worker gets its own: xdist's end of the run,
        # which lets a worker start its last test, comes once nothing is pending)
        short = 2 - len(self.node2pending[node]) - len(chosen) if len(self.pending) > len(self.nodes) else 0
        chosen += [index for index in order if index not in chosen][:max(0, short)]
        if chosen:
            self.last[node] = self.tag(chosen[-1])
            self._hand(node, chosen)

    def _hand(self, node: Any, chosen: list[int]) -> None:
        """Send ``node`` the pending tests ``chosen``: no longer pending, now held by it."""
        self.pending[:] = [index for index in self.pending if index not in chosen]
        self.node2pending[node].extend(chosen)
        node.send_runtest_some(chosen)

    def schedule(self) -> None:
        """xdist's first distribution, then :meth:`top_up` for each worker."""
        super().schedule()
        for node in self.nodes:
            self.top_up(node)

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        """xdist's refill, then :meth:`top_up`."""
        super().check_schedule(node, duration)
        self.top_up(node)

    def top_up(self, node: Any) -> None:
        """Keep ``node`` holding, besides the test it runs, ``SPARE_DEPTH + 1`` more tests of
        the golden key of the last test it was sent, while such tests are pending: the worker
        clones the machines of the next ``SPARE_DEPTH`` ahead (:func:`.state.worker_queue`).
        One more than that, because a refill is sent when a test's report reaches the
        controller, by which time the worker has begun its next test. xdist's own refill keeps
        two in all, which leaves a worker one spare. Not after a long test (the time since the
        worker's previous report: :data:`SHORT_TEST`; a worker's first test, which often makes
        its golden machine, counts as short)."""
        last = self.last.get(node)
        wanted = 2 + SPARE_DEPTH - len(self.node2pending.get(node, ()))
        if not last or wanted <= 0 or node.shutting_down or not self.short.get(node, True):
            return
        chosen = [index for index in self.pending if self.tag(index) == last and self.ready(node, index)][:wanted]
        if chosen:
            self._hand(node, chosen)

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        now = time.monotonic()
        self.short[node] = now - self.reported.get(node, now) < SHORT_TEST
        self.reported[node] = now
        tag = self.tag(item_index)
        if tag:
            self.made.add(tag)
            self.builders.pop(tag, None)
        super().mark_test_complete(node, item_index, duration)

    def remove_node(self, node: Any) -> str | None:
        """A worker that went down makes nothing more: the keys it was making are free again."""
        self.builders = {tag: worker for tag, worker in self.builders.items() if worker is not node}
        for by_worker in (self.last, self.reported, self.short):
            by_worker.pop(node, None)
        return super().remove_node(node)
