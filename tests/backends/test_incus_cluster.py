"""The Incus engine on a two-member Incus cluster: two nested incusd (tests/support/nested_incus.py,
built per module in about 30 s) clustered with a join token, added as remote ``ptclu``. The
cluster's scheduler places machines, ``PYTEST_ORBSTACK_INCUS_TARGET`` pins a member, a golden
machine's snapshot is copied to whichever member a clone lands on, machines on different members
reach each other as NAME.orb.local, and ``-n 2`` spreads a session over both members. Both
containers and the client configuration are deleted at the end."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time

import pytest
from incusenv import incus, why_no_incus
from nested_incus import Client, cluster, kill_9_mid_test

from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.model.types import Resources

REASON = why_no_incus()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
REMOTE = "ptclu"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    client = Client(tmp_path_factory.mktemp("incus-conf"))
    tag = secrets.token_hex(3)
    containers = [f"ptclu-{tag}-m1", f"ptclu-{tag}-m2"]
    started = time.monotonic()
    with cluster(containers, REMOTE, client) as daemons:
        print(f"cluster {REMOTE} (m1 {daemons[0].address}, m2 {daemons[1].address}) ready in "
              f"{time.monotonic() - started:.1f} s")
        yield client
    assert not set(containers) & set(incus("list", "-f", "csv", "-c", "n").stdout.split())


def locations(client: Client) -> dict[str, str]:
    """Machine name -> the member it runs on."""
    return {i["name"]: i["location"] for i in json.loads(client.incus("list", f"{REMOTE}:", "-f", "json"))}


def backend(client: Client, target: str = "") -> IncusBackend:
    return IncusBackend(env={"INCUS_CONF": client.env["INCUS_CONF"], "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE,
                             "PYTEST_ORBSTACK_INCUS_TARGET": target})


def test_the_members_are_online(client):
    members = json.loads(client.incus("cluster", "list", f"{REMOTE}:", "-f", "json"))
    assert {(m["server_name"], m["status"]) for m in members} == {("m1", "Online"), ("m2", "Online")}


def test_scheduler_target_and_golden_clones_across_members(client):
    placed, pinned = backend(client), backend(client, "m2")
    a, b, g, c = (f"ptclu-x{secrets.token_hex(3)}" for _ in range(4))
    try:
        placed.create(a, "debian:bookworm")
        placed.create(b, "debian:bookworm")
        where = locations(client)
        assert {where[a], where[b]} == {"m1", "m2"}, where  # the scheduler: fewest instances first
        backend(client, "m1").create(g, "debian:bookworm")  # a golden machine on m1...
        started = time.monotonic()
        pinned.clone(g, c, frozen_source=True)  # ...its snapshot copied to m2
        print(f"golden clone m1 -> m2: {time.monotonic() - started:.1f} s")
        assert locations(client)[c] == "m2"
        assert placed.run(c, "hostname").stdout.strip() == c
        other = a if where[a] == "m1" else b  # a machine on the other member, by name
        assert placed.run(c, f"ping -c1 -W5 {other}.orb.local", user="root").returncode == 0
    finally:
        for name in {a, b, g, c} & set(locations(client)):
            client.incus("delete", "--force", f"{REMOTE}:{name}")
    assert not {a, b, g, c} & set(locations(client))


def test_a_golden_machine_made_with_target_has_its_clones_there(client):
    """A golden machine made on m2 by its own target= (not the session's) is cloned onto m2,
    where the scheduler would have put the clone on the empty m1."""
    placed = backend(client)
    g, c = (f"ptclu-t{secrets.token_hex(3)}" for _ in range(2))
    try:
        placed.create(g, "debian:bookworm", resources=Resources(target="m2"))
        placed.clone(g, c, frozen_source=True)
        assert {locations(client)[g], locations(client)[c]} == {"m2"}
    finally:
        for name in {g, c} & set(locations(client)):
            client.incus("delete", "--force", f"{REMOTE}:{name}")


SPREAD_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_machine(orbstack_machine, i):
    assert orbstack_machine().run("true").rc == 0
"""


def test_n2_spreads_a_session_over_both_members(client, tmp_path):
    """Four tests with -n 2, their machines kept: they are on both members; prune removes them."""
    (tmp_path / "test_spread.py").write_text(SPREAD_TESTS)
    env = {**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE, "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--orbstack-backend=incus"]
    started = time.monotonic()
    proc = subprocess.run([*base, "-n", "2", "--orbstack-keep"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    print(f"-n 2, 4 machine tests on the cluster: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    kept = {n: m for n, m in locations(client).items() if n.startswith("pto-")}
    assert len(kept) >= 4 and set(kept.values()) == {"m1", "m2"}, kept
    pruned = subprocess.run([*base, "--orbstack-prune"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert pruned.returncode == 0, pruned.stdout[-3000:]
    assert not {n for n in locations(client) if n.startswith("pto-")}


PINNED_TESTS = """
import pytest

@pytest.mark.orbstack(deploy="deploy.py", target="m2")
def test_golden_clone_on_m2(orbstack):
    assert orbstack.run("cat /etc/deployed").stdout.strip() == "yes"
    print("MACHINE m2", orbstack.name)

def test_factory_on_m2(orbstack_machine):
    machine = orbstack_machine(target="m2")
    print("MACHINE m2", machine.name)
"""
DEPLOY = """
from pyinfra.operations import files
files.put(name="mark", src=__import__("io").StringIO("yes"), dest="/etc/deployed", _sudo=True)
"""


def test_target_pins_a_machine_and_a_golden_machines_clones(client, tmp_path):
    """target="m2" on the marker (a golden machine and its clone) and on the factory: the test
    machines are on m2 (the golden machine is gone with the session); prune removes them."""
    (tmp_path / "test_pinned.py").write_text(PINNED_TESTS)
    (tmp_path / "deploy.py").write_text(DEPLOY)
    env = {**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE, "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "--orbstack-backend=incus"]
    try:
        proc = subprocess.run([*base, "--orbstack-keep"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:]
        asked = re.findall(r"MACHINE m2 (\S+)", proc.stdout)
        ours = {n: m for n, m in locations(client).items() if n.startswith("pto-")}
        assert len(asked) == 2 and set(asked) <= set(ours), (asked, ours)
        assert set(ours.values()) == {"m2"}, ours
    finally:
        subprocess.run([*base, "--orbstack-prune"], cwd=tmp_path, env=env, capture_output=True, timeout=600)
    assert not {n for n in locations(client) if n.startswith("pto-")}


def test_kill_9_leaves_nothing_on_any_member_within_10s(client, tmp_path):
    """kill -9 of a -n 2 session while each worker's test runs on a machine: the watcher reaps
    them on the cluster (one listing covers both members)."""
    env = {**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE, "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}
    seen: dict[str, str] = {}

    def ours() -> dict[str, str]:
        found = {n: m for n, m in locations(client).items() if n.startswith("pto-")}
        seen.update(found)
        return found

    seconds = kill_9_mid_test(tmp_path, env, ours, "-n", "2")
    print(f"cluster empty {seconds:.1f} s after kill -9; the session had machines on {sorted(set(seen.values()))}")
    assert seconds < 10, f"machines left on the cluster 10 s after kill -9: {ours()}"
