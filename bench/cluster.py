"""Row 6 of bench/run.py (``--backend incus --only 6``): ``pytest -n 2`` on a two-member Incus
cluster, machines placed by the cluster's scheduler / the same run pinned to one member, <= 0.75.

The cluster is the one the tests build (tests/support/nested_incus.py, docs/scale.md): two
nested incusd in containers of the local daemon (``security.nesting``), clustered with a join
token and added as a remote to a client configuration of this run (``INCUS_CONF`` in the run's
temp dir). A: ``pytest -n 2`` of 8 machine tests (each makes a machine, checks ``hostname`` and
records the member the machine is on) with ``PYTEST_ORBSTACK_INCUS_REMOTE`` the cluster and no
target; B: the same with ``PYTEST_ORBSTACK_INCUS_TARGET=m1``. A must have used both members and
B only m1, else the row fails. In the same rotation, the engine's own ratio: the same 8 cycles
(``incus launch`` + a 0.2 s systemd poll over ``incus exec``, ``hostname``, the member,
``incus delete --force``) in 2 threads, the scheduler's placement / ``--target m1``. Untimed
first: one launch on each member (a member unpacks the image on its first launch) and one inner
run of one test (Python's bytecode cache). 2 rounds. Both members' containers (with their
daemons, images and machines) and the remote are removed at the end, also on an error or
Ctrl-C. The members share this host's cores: the ratio says what placing machines on two
daemons gains on one host, not what two hosts would.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from harness import Result, alternate, busy_cores, inner_pytest, timed

from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.model.types import READY_STATES

if TYPE_CHECKING:
    from nested_incus import Client
    from run import Bench

SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
IMAGE = "debian:bookworm"
TESTS = 8
TARGET = 0.75
READY_TIMEOUT = 300.0  # seconds a raw machine may take to boot systemd
MEMBERS = ("m1", "m2")
CLUSTER_TEST = f'''
import json, os, subprocess
import pytest

@pytest.mark.parametrize("i", range({TESTS}))
def test_machine_on_the_cluster(orbstack_machine, i):
    machine = orbstack_machine()
    assert machine.run("hostname").stdout.strip() == machine.name
    path = os.environ["PYTEST_ORBSTACK_INCUS_REMOTE"] + ":/1.0/instances/" + machine.name
    found = subprocess.run(["incus", "query", path], capture_output=True, text=True, check=True)
    with open(os.environ["BENCH_LOCATIONS"], "a") as out:
        out.write(json.loads(found.stdout)["location"] + "\\n")
'''


class RawCluster:
    """The engine alone on the cluster: ``incus launch`` of the image the plugin resolves there
    (on member ``target``, or where the scheduler puts it), the systemd poll, ``hostname``, the
    member, ``incus delete --force``."""

    def __init__(self, client: Client, remote: str, label: str) -> None:
        self.env, self.remote, self.label = client.env, remote, label
        self.image = IncusBackend(env={"INCUS_CONF": self.env["INCUS_CONF"]}, remote=remote).image_ref(IMAGE)

    def incus(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["incus", *args], env=self.env, capture_output=True, text=True, timeout=600)

    def cycle(self, name: str, target: str) -> str:
        """One machine's life; the member it ran on. RuntimeError (one line) when a step fails or
        systemd is not ready in ``READY_TIMEOUT``; the machine is deleted either way."""
        ref = f"{self.remote}:{name}"
        try:
            where = ["--target", target] if target else []
            launched = self.incus("launch", self.image, ref, "-c", self.label, *where)
            if launched.returncode != 0:
                raise RuntimeError(f"incus launch {ref}: {(launched.stderr.strip().splitlines() or ['?'])[-1]}")
            deadline = time.monotonic() + READY_TIMEOUT
            while self.incus("exec", ref, "--", "systemctl", "is-system-running").stdout.strip() not in READY_STATES:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ref}: systemd not ready in {READY_TIMEOUT:g} s")
                time.sleep(0.2)
            if self.incus("exec", ref, "--", "hostname").stdout.strip() != name:
                raise RuntimeError(f"{ref}: hostname is not {name}")
            return str(json.loads(self.incus("query", f"{self.remote}:/1.0/instances/{name}").stdout)["location"])
        finally:
            self.incus("delete", "--force", ref)


def compare(bench: Bench, client: Client, remote: str, rounds: int) -> tuple[str, float, str]:
    """Run the four sides on the built cluster: (row name, ratio, detail); AssertionError when
    the machines were not where each side puts them."""
    suite = bench.tmp / "cluster-suite"
    suite.mkdir()
    (suite / "test_cluster.py").write_text(CLUSTER_TEST)
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    raw = RawCluster(client, remote, f"user.pytest-orbstack-bench={bench.run_id}")
    members: dict[str, list[str]] = {}

    def inner_run(side: str, target: str, *tests: str) -> Callable[[int], float]:
        where = suite / f"locations-{len(members)}"
        members[side] = []
        env = {**bench.inner_env(), "INCUS_CONF": client.env["INCUS_CONF"], "BENCH_LOCATIONS": str(where),
               "PYTEST_ORBSTACK_INCUS_REMOTE": remote, "PYTEST_ORBSTACK_INCUS_TARGET": target}
        argv = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--orbstack-backend=incus", *tests]

        def run(i: int) -> float:
            where.unlink(missing_ok=True)  # the members of this run only
            seconds = inner_pytest(argv, suite, env)
            members[side] = where.read_text().split() if where.exists() else []
            return seconds
        return run

    def raw_run(side: str, target: str) -> Callable[[int], float]:
        members[side] = []

        def run(i: int) -> float:
            names = [bench.raw_name(f"c{target or 'x'}{i}-{k}") for k in range(TESTS)]

            def cycles() -> None:
                with ThreadPoolExecutor(2) as pool:
                    members[side] = list(pool.map(lambda n: raw.cycle(n, target), names))
            return timed(cycles)
        return run

    bench.log("cluster: untimed launch on each member, one inner test")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: raw.cycle(bench.raw_name(f"warm-{m}"), m), MEMBERS))
    inner_run("warm-up", "m2", "test_cluster.py::test_machine_on_the_cluster[0]")(-1)
    A, B = "pytest -n 2, the scheduler's placement", "pytest -n 2, all on m1"
    RAW_A, RAW_B = "raw incus launch, 2 threads, placed", "raw incus launch, 2 threads, --target m1"
    sides = {A: inner_run(A, ""), B: inner_run(B, "m1"), RAW_A: raw_run(RAW_A, ""), RAW_B: raw_run(RAW_B, "m1")}
    cores: dict[str, list[float]] = {name: [] for name in sides}
    bench.log(f"cluster: {TESTS} machine tests, {rounds} rounds")
    c = alternate({name: busy_cores(side, cores[name]) for name, side in sides.items()}, rounds, bench.log,
                  warm_up=False)
    engine = c.ratio(RAW_A, RAW_B)
    placed = {side: dict(sorted(Counter(members[side]).items())) for side in sides}
    detail = (c.describe(A, B) + f"\n  the engine alone, same {TESTS} cycles in 2 threads placed / on m1: "
              f"{c.median(RAW_A):.2f}s vs {c.median(RAW_B):.2f}s, ratio {engine:.3f}"
              "\n  machines per member (last round): " + "; ".join(f"{s}: {p}" for s, p in placed.items()))
    if all(cores.values()):
        detail += (f"\n  host cores busy (median, of {os.cpu_count()}): " + ", ".join(
            f"{name} {statistics.median(used):.2f}" for name, used in cores.items()))
    for side, wanted in ((A, set(MEMBERS)), (RAW_A, set(MEMBERS)), (B, {"m1"}), (RAW_B, {"m1"})):
        if set(placed[side]) != wanted or sum(placed[side].values()) != TESTS:
            raise AssertionError(f"{side}: machines on {placed[side]}, expected {TESTS} on {sorted(wanted)}\n{detail}")
    return f"6 {TESTS} machine tests -n 2, cluster / one member (engine's own: {engine:.3f})", c.ratio(A, B), detail


def bench_cluster(bench: Bench, rounds: int = 2) -> list[Result]:
    """Row 6: build the two-member cluster, compare, tear it down (the members' containers,
    the remote, the client configuration); RuntimeError when a container is left behind."""
    if bench.backend.name != "incus":
        raise RuntimeError("row 6 needs the Incus engine: --backend incus --only 6")
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    from nested_incus import Client, cluster

    client = Client(bench.tmp / "incus-conf")
    remote, containers = f"ptobench-{bench.run_id}", [bench.raw_name(m) for m in MEMBERS]
    bench.log(f"cluster: building {remote} ({', '.join(containers)})")
    started = time.monotonic()
    try:
        with cluster(containers, remote, client) as daemons:
            built = time.monotonic() - started
            name, ratio, detail = compare(bench, client, remote, rounds)
    finally:
        shutil.rmtree(client.conf, ignore_errors=True)
        left = set(containers) & set(subprocess.run(["incus", "list", "-f", "csv", "-c", "n"], capture_output=True,
                                                    text=True).stdout.split())
    if left:
        raise RuntimeError(f"cluster members left behind: {sorted(left)}")
    addresses = ", ".join(f"{m} {d.address}" for m, d in zip(MEMBERS, daemons, strict=True))
    return [Result(name, ratio, TARGET, detail=f"  cluster {remote} ({addresses}) built in {built:.1f}s\n{detail}")]
