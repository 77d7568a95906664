"""A second Incus daemon on this host, for the remote and cluster tests: an Incus container of the
local daemon (``security.nesting=true``) running its own incusd (incus-base from
bookworm-backports, installed in it), listening on https and added as an ``incus remote`` with a
trust token to a client configuration of its own (``INCUS_CONF`` in a temporary folder: the
user's ``incus remote list`` is not touched). docs/scale.md says what each step is for.

Nothing outside the container and that folder changes: the local daemon's network, profile and
pool are used as they are, and deleting the container takes its daemon, trust entries, images
and machines with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from incusenv import IMAGE
from innerpytest import kill_9_and_time_until_gone

PACKAGES = ["incus-base", "dnsmasq-base"]
BACKPORTS = "deb http://deb.debian.org/debian bookworm-backports main"
# The local daemon gives a container 1e9 ids from 1000000 (/etc/subuid root:1000000:1000000000):
# the nested daemon's containers get 1e8 of them, inside that range.
SUBIDS = "root:1000000:100000000"
# On a host with cgroup v1 controllers (hybrid), LXC does not mount cpu and cpuacct in the
# container; the nested LXC then fails ("Failed to open 9/cpuacct"). Mount them as the host has them.
CGROUP_FIX = r"""
set -e
grep -q ' /sys/fs/cgroup tmpfs ' /proc/mounts || exit 0
for c in cpu cpuacct; do
  grep -q ":$c:" /proc/self/cgroup || continue
  grep -q " /sys/fs/cgroup/$c cgroup " /proc/mounts && continue
  mount -o remount,rw /sys/fs/cgroup
  rm -f "/sys/fs/cgroup/$c"; mkdir -p "/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
done
mount -o remount,ro /sys/fs/cgroup
"""


def run(argv: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 300) -> str:
    """Run ``argv``; its stdout, or AssertionError with its last stderr line."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        raise AssertionError(f"{' '.join(argv[:4])}...: {lines[-1]}")
    return proc.stdout


def host_exec(container: str, script: str, *, stdin: str | None = None, timeout: float = 300) -> str:
    return run(["incus", "exec", container, "--", "sh", "-c", script], stdin=stdin, timeout=timeout)


@dataclass
class Daemon:
    """One nested incusd: its container on the local daemon and that container's IPv4."""

    container: str
    address: str = ""

    def launch(self) -> None:
        """The container, its cgroups and ids fixed, with systemd up and an IPv4 address."""
        run(["incus", "launch", IMAGE, self.container, "-c", "security.nesting=true",
             "-c", "user.pytest-orbstack-test=nested-incus"])
        host_exec(self.container, "until [ -S /run/systemd/private ]; do sleep 0.1; done; "
                                  "systemctl is-system-running --wait >/dev/null || true")
        host_exec(self.container, CGROUP_FIX)
        host_exec(self.container, f"echo {SUBIDS} > /etc/subuid && echo {SUBIDS} > /etc/subgid")
        self.address = wait_ipv4(self.container)

    def install(self) -> None:
        """incus-base from bookworm-backports (systemd socket-activates incusd)."""
        host_exec(self.container,
                  f"echo '{BACKPORTS}' > /etc/apt/sources.list.d/bookworm-backports.list && "
                  "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  f"--no-install-recommends -t bookworm-backports {' '.join(PACKAGES)} >/dev/null",
                  timeout=600)

    def init(self, preseed: dict) -> None:
        """``incus admin init --preseed`` (JSON is YAML)."""
        host_exec(self.container, "incus admin init --preseed", stdin=json.dumps(preseed))

    def token(self, client: str) -> str:
        """A trust token for a client called ``client``."""
        return host_exec(self.container, f"incus config trust add {client} -q").strip()

    def delete(self) -> None:
        subprocess.run(["incus", "delete", "--force", self.container], capture_output=True, timeout=300)


def wait_ipv4(container: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(run(["incus", "query", f"/1.0/instances/{container}/state"]))
        eth0 = (state.get("network") or {}).get("eth0") or {}
        found = [a["address"] for a in eth0.get("addresses", []) if a["family"] == "inet"]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{container} got no IPv4 address in {timeout:g} s")


def standalone_preseed(address: str, subnet: str) -> dict:
    """An https listener, a bridge with the orb.local DNS domain, a dir pool, the default profile."""
    return {"config": {"core.https_address": f"{address}:8443"},
            "networks": [{"name": "incusbr0", "type": "bridge",
                          "config": {"ipv4.address": f"{subnet}.1/24", "ipv4.nat": "true",
                                     "ipv6.address": "none", "dns.domain": "orb.local"}}],
            "storage_pools": [{"name": "default", "driver": "dir"}],
            "profiles": [{"name": "default", "devices": {
                "eth0": {"name": "eth0", "network": "incusbr0", "type": "nic"},
                "root": {"path": "/", "pool": "default", "type": "disk"}}}]}


@dataclass
class Client:
    """An incus client configuration of its own (``INCUS_CONF``), holding the remotes added."""

    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "INCUS_CONF": str(self.conf)}

    def incus(self, *args: str, timeout: float = 300) -> str:
        return run(["incus", *args], env=self.env, timeout=timeout)

    def add_remote(self, remote: str, daemon: Daemon) -> None:
        """``incus remote add REMOTE https://ADDRESS:8443 --token ...`` (the token carries the
        server certificate's fingerprint), then the offline image copied to it."""
        self.conf.mkdir(parents=True, exist_ok=True)
        self.incus("remote", "add", remote, f"https://{daemon.address}:8443",
                   "--token", daemon.token(f"pytest-orbstack-{remote}"), "--accept-certificate")
        self.incus("image", "copy", f"local:{IMAGE}", f"{remote}:", "--alias", IMAGE, "--mode", "relay",
                   timeout=600)


def make_remote(container: str, remote: str, client: Client) -> Daemon:
    """A standalone nested daemon in ``container``, added to ``client`` as ``remote``."""
    daemon = Daemon(container)
    try:
        daemon.launch()
        daemon.install()
        daemon.init(standalone_preseed(daemon.address, "10.183.100"))
        client.add_remote(remote, daemon)
    except BaseException:
        daemon.delete()
        raise
    return daemon


def cluster_preseed(member: str, daemon: Daemon, token: str | None = None) -> dict:
    """The first member (``token`` None) makes the cluster: https on its address, a dir pool,
    machines' eth0 a macvlan on the member's own eth0, so that machines on every member share the
    local daemon's bridge (one L2, its DHCP, its dnsmasq answering NAME.orb.local). Another
    member joins with ``token`` (``incus cluster add``)."""
    if token is None:
        return {"config": {"core.https_address": f"{daemon.address}:8443"},
                "cluster": {"server_name": member, "enabled": True},
                "storage_pools": [{"name": "default", "driver": "dir"}],
                "profiles": [{"name": "default", "devices": {
                    "eth0": {"name": "eth0", "nictype": "macvlan", "parent": "eth0", "type": "nic"},
                    "root": {"path": "/", "pool": "default", "type": "disk"}}}]}
    return {"cluster": {"enabled": True, "server_name": member, "server_address": f"{daemon.address}:8443",
                        "cluster_token": token,
                        "member_config": [{"entity": "storage-pool", "name": "default", "key": "source",
                                           "value": ""}]}}


def make_cluster(containers: list[str], remote: str, client: Client) -> list[Daemon]:
    """A cluster of nested daemons (members ``m1``, ``m2``... in ``containers``), its first
    member added to ``client`` as ``remote``."""
    daemons = [Daemon(c) for c in containers]
    try:
        with ThreadPoolExecutor(len(daemons)) as pool:
            list(pool.map(lambda d: (d.launch(), d.install()), daemons))
        first = daemons[0]
        first.init(cluster_preseed("m1", first))
        for number, daemon in enumerate(daemons[1:], 2):
            token = host_exec(first.container, f"incus cluster add m{number} -q").strip()
            daemon.init(cluster_preseed(f"m{number}", daemon, token))
        client.add_remote(remote, first)
    except BaseException:
        for daemon in daemons:
            daemon.delete()
        raise
    return daemons


@contextmanager
def cluster(containers: list[str], remote: str, client: Client) -> Iterator[list[Daemon]]:
    """:func:`make_cluster`; on leaving, every member's container is deleted (with its daemon,
    images and machines) and ``remote`` removed from ``client``, also after an error or Ctrl-C."""
    daemons = make_cluster(containers, remote, client)
    try:
        yield daemons
    finally:
        for daemon in daemons:
            daemon.delete()
        subprocess.run(["incus", "remote", "remove", remote], env=client.env, capture_output=True, timeout=60)


SLOW_TESTS = """
import os, time
import pytest

@pytest.mark.parametrize("i", range(2))
def test_running(orbstack_machine, i):
    orbstack_machine()
    open(os.environ["MARK"] + str(i), "w").write("running")
    time.sleep(120)
"""


def kill_9_mid_test(workdir: Path, env: dict[str, str], ours: Callable[[], Collection[str]], *args: str) -> float:
    """Start a session of two tests (``args``: ``-n 2`` for one per worker) whose machines are on
    the remote, kill -9 its process group once both tests run, and return the seconds until
    ``ours()`` (the session's machines on the remote) is empty, 10 at most."""
    (workdir / "test_slow.py").write_text(SLOW_TESTS)
    mark = workdir / "mark"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "--orbstack-backend=incus", f"--basetemp={workdir / 'basetemp'}", *args],
                            cwd=workdir, env={**env, "MARK": str(mark)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (Path(f"{mark}0").exists() and (Path(f"{mark}1").exists() or "-n" not in args)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        assert ours(), "no machine on the remote"
        return kill_9_and_time_until_gone(proc, ours)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
