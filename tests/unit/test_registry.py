"""Session registry: who owns which machine, and what prune may delete."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from pytest_orbstack.errors import MachineNotFound
from pytest_orbstack.registry import Registry


class Engine:
    """Stands in for a backend: a set of machine names."""

    def __init__(self, names):
        self.names = set(names)

    def list(self):
        return [SimpleNamespace(name=n) for n in sorted(self.names)]

    def delete(self, name):
        if name not in self.names:
            raise MachineNotFound(name)
        self.names.remove(name)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_prune_deletes_only_dead_owners_machines_and_spares_kept(tmp_path):
    reg = Registry(tmp_path)
    reg.open("dead01", "docker", pid=dead_pid())
    reg.open("live01", "docker", pid=os.getpid())
    for sid, name in [("dead01", "pto-dead01-a"), ("dead01", "pto-dead01-k"), ("live01", "pto-live01-b")]:
        reg.add(sid, name)
    reg.keep("dead01", "pto-dead01-k")
    # pto-dead01-late: its create finished after the owner died, so it was never recorded
    engine = Engine(["pto-dead01-a", "pto-dead01-k", "pto-dead01-late", "pto-live01-b", "other"])
    assert sorted(reg.prune(lambda kind: engine)) == ["pto-dead01-a", "pto-dead01-late"]
    assert engine.names == {"pto-dead01-k", "pto-live01-b", "other"}
    assert reg.get("dead01").kept == ["pto-dead01-k"]  # still recorded, for --orbstack-prune
    assert reg.prune(lambda kind: engine, include_kept=True) == ["pto-dead01-k"]
    assert reg.get("dead01") is None and reg.get("live01").machines == ["pto-live01-b"]


def test_close_keeps_a_session_with_machines_left(tmp_path):
    reg = Registry(tmp_path)
    reg.open("s1", "orbstack")
    reg.add("s1", "pto-s1-x")
    reg.close("s1")
    assert reg.machines("s1") == ["pto-s1-x"]
    reg.remove("s1", "pto-s1-x")
    reg.close("s1")
    assert reg.get("s1") is None
    reg.remove("s1", "pto-s1-x")  # a closed session: nothing to do, no error
