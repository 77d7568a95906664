"""The Incus engine on an Incus remote: a second incusd on this host (tests/support/nested_incus.py,
built once per module, about 15 s), added as remote ``ptrem`` to a client configuration of its own.
Machines are made, cloned, listed, pruned and reaped there, and nothing of them on the local daemon.
The nested daemon, its container and the client configuration are deleted at the end."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from incusenv import incus, why_no_incus
from nested_incus import Client, kill_9_mid_test, make_remote

from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.errors import EngineUnavailable

REASON = why_no_incus()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
REMOTE = "ptrem"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The nested remote, built for this module; its container deleted after it."""
    client = Client(tmp_path_factory.mktemp("incus-conf"))
    container = f"ptrem-{secrets.token_hex(3)}"
    started = time.monotonic()
    daemon = make_remote(container, REMOTE, client)
    print(f"nested remote {REMOTE} ({daemon.address}) ready in {time.monotonic() - started:.1f} s")
    yield client
    daemon.delete()
    assert container not in incus("list", "-f", "csv", "-c", "n").stdout.split()


@pytest.fixture
def env(client, tmp_path) -> dict[str, str]:
    """A plugin session's environment: the remote's client configuration and name."""
    return {**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE,
            "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}


def remote_names(client: Client) -> set[str]:
    return {i["name"] for i in json.loads(client.incus("list", f"{REMOTE}:", "-f", "json"))}


def local_names() -> set[str]:
    return {i["name"] for i in json.loads(incus("list", "-f", "json").stdout)}


def test_machines_live_on_the_remote(client):
    backend = IncusBackend(env={"INCUS_CONF": client.env["INCUS_CONF"], "PYTEST_ORBSTACK_INCUS_REMOTE": REMOTE})
    a, b, c = (f"ptrem-m{secrets.token_hex(3)}" for _ in range(3))
    try:
        info = backend.create(a, "debian:bookworm", user="dev")
        assert info.machine.state == "running" and info.ip4 and info.ip4.startswith("10.183.100.")
        assert a in remote_names(client) and a not in local_names()
        assert backend.run(a, "systemd-detect-virt -c; hostname; id -un").stdout.split() == ["lxc", a, "dev"]
        assert backend.login_command(a) == f"incus exec {REMOTE}:{a} -- bash -l"
        backend.clone(a, b, frozen_source=True)  # the golden path: one snapshot on the remote
        assert backend.run(b, "hostname").stdout.strip() == b
        assert backend.run(b, f"getent ahostsv4 {a}.orb.local").returncode == 0  # the nested bridge's DNS
        assert {a, b} <= {m.name for m in backend.list()}
        backend.stop(b)
        backend.rename(b, c)
        backend.start(c)
        assert backend.run(c, "id -un").stdout.strip() == "dev"
    finally:
        for name in {a, b, c} & remote_names(client):
            client.incus("delete", "--force", f"{REMOTE}:{name}")
    assert not {a, b, c} & (remote_names(client) | local_names())


def test_an_unknown_or_unreachable_remote_is_one_line(client):
    with pytest.raises(EngineUnavailable, match=r'^incus remote nosuch not answering: Error: The remote "nosuch"'):
        IncusBackend(env={**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": "nosuch"}).list()
    config = client.conf / "config.yml"  # a remote whose daemon is gone (`remote add` would ask it)
    saved = config.read_text()
    config.write_text(saved.replace("remotes:\n", "remotes:\n  ptrem-gone:\n    addr: https://127.0.0.1:1\n"
                                                  "    protocol: incus\n    auth_type: tls\n", 1))
    try:
        with pytest.raises(EngineUnavailable, match=r"^incus remote ptrem-gone not answering: .*connection refused"):
            IncusBackend(env={**client.env, "PYTEST_ORBSTACK_INCUS_REMOTE": "ptrem-gone"}).list()
    finally:
        config.write_text(saved)


def test_the_example_suite_runs_on_the_remote(client, env, tmp_path):
    """examples/ (golden by operations.machine, clones, web+db) with every machine on the remote."""
    timings = tmp_path / "timings.json"
    before = local_names()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--orbstack-backend=incus", f"--orbstack-timings={timings}"],
                          cwd=ROOT / "examples", env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "7 passed" in proc.stdout, proc.stdout[-3000:]
    machines = json.loads(timings.read_text())["machines"]
    assert all(m["outcome"] == "deleted" for m in machines), machines
    assert not {m["name"] for m in machines} & remote_names(client)
    sessions = {m["name"].split("-")[1] for m in machines}  # (tests beside it make machines of their own)
    assert not {n for n in local_names() - before if n.split("-")[1:2] and n.split("-")[1] in sessions}  # none local


KEPT_TEST = """
def test_kept(orbstack_machine):
    assert orbstack_machine().run("systemd-detect-virt -c").stdout.strip() == "lxc"
"""
def inner(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--orbstack-backend=incus", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_list_and_prune_act_on_the_remote(client, env, tmp_path):
    (tmp_path / "test_kept.py").write_text(KEPT_TEST)
    kept = inner(tmp_path, env, "--orbstack-keep")
    assert kept.returncode == 0, kept.stdout[-3000:]
    mine = {n for n in remote_names(client) if n.startswith("pto-")}
    assert len(mine) == 1, mine
    listed = inner(tmp_path, env, "--orbstack-list")
    assert f"incus exec {REMOTE}:{mine.pop()} -- bash -l" in listed.stdout, listed.stdout
    pruned = inner(tmp_path, env, "--orbstack-prune")
    assert pruned.returncode == 0, pruned.stdout[-3000:]
    assert not {n for n in remote_names(client) if n.startswith("pto-")}


def test_kill_9_leaves_nothing_on_the_remote_within_10s(client, env, tmp_path):
    seconds = kill_9_mid_test(tmp_path, env, lambda: {n for n in remote_names(client) if n.startswith("pto-")})
    print(f"remote empty {seconds:.1f} s after kill -9")
    assert seconds < 10, f"machines left on the remote 10 s after kill -9: {remote_names(client)}"
