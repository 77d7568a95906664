"""Session registry: who owns which machine, and what prune may delete (reaper.prune)."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

from pytest_orbstack.errors import MachineNotFound
from pytest_orbstack.machines.kept import kept_machines
from pytest_orbstack.machines.reaper import prune, reap, removable
from pytest_orbstack.machines.registry import Registry
from pytest_orbstack.model.names import PROJECT_LABEL, SESSION_LABEL, project_tag


class Engine:
    """Stands in for a backend: a set of machine names."""

    def __init__(self, names):
        self.names = set(names)
        self.deleted: list[str] = []
        self.images_removed: list[str] = []

    def list(self):
        return [SimpleNamespace(name=n) for n in sorted(self.names)]

    def delete(self, name):
        if name not in self.names:
            raise MachineNotFound(name)
        self.names.remove(name)
        self.deleted.append(name)

    def remove_session_images(self, session_id):
        self.images_removed.append(session_id)

    def remove_unused_images(self, removable):
        return []


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
    rows = prune(reg, lambda kind: engine)
    assert sorted(what for _, outcome, what in rows if outcome == "deleted") == ["pto-dead01-a", "pto-dead01-late"]
    assert ("live01", "left", f"its pytest (pid {os.getpid()}) is still running") in rows
    assert any(outcome == "kept" and what.startswith("pto-dead01-k ") for _, outcome, what in rows)
    assert engine.names == {"pto-dead01-k", "pto-live01-b", "other"} and engine.images_removed == ["dead01"]
    assert reg.get("dead01").kept == ["pto-dead01-k"]  # still recorded, for --orbstack-prune
    rows = prune(reg, lambda kind: engine, include_kept=True)
    assert [what for _, outcome, what in rows if outcome == "deleted"] == ["pto-dead01-k"]
    assert reg.get("dead01") is None and reg.get("live01").machines == ["pto-live01-b"]


def test_prune_is_scoped_to_this_user_and_project(tmp_path):
    reg = Registry(tmp_path)
    for sid, project in [("proja01", "/src/a"), ("projb01", "/src/b")]:
        reg.open(sid, "docker", pid=dead_pid(), project=project)
        reg.add(sid, f"pto-{sid}-m")
        reg.keep(sid, f"pto-{sid}-m")
    engine = Engine(["pto-proja01-m", "pto-projb01-m"])
    rows = prune(reg, lambda kind: engine, include_kept=True, project="/src/a", user=reg.get("proja01").user)
    assert engine.names == {"pto-projb01-m"}  # project b's kept machine is left
    assert ("projb01", "left", f"another project ({reg.get('projb01').user}: /src/b)") in rows
    prune(reg, lambda kind: engine, include_kept=True)  # the explicit whole-host form
    assert engine.names == set()


def test_reap_deletes_clones_before_their_golden(tmp_path):
    reg = Registry(tmp_path)
    reg.open("g1", "docker")
    names = ["pto-g1-golden-debian-x", "pto-g1-test-a", "pto-g1-test-b"]
    for name in names:
        reg.add("g1", name)
    engine = Engine(names)
    assert reap(engine, reg, "g1") == ["pto-g1-test-a", "pto-g1-test-b", "pto-g1-golden-debian-x"]
    assert engine.deleted[-1] == "pto-g1-golden-debian-x" and reg.get("g1") is None


def test_close_keeps_a_session_with_machines_left(tmp_path):
    reg = Registry(tmp_path)
    reg.open("s1", "orbstack")
    reg.add("s1", "pto-s1-x")
    reg.close("s1")
    assert reg.get("s1").machines == ["pto-s1-x"]
    reg.remove("s1", "pto-s1-x")
    reg.close("s1")
    assert reg.get("s1") is None
    reg.remove("s1", "pto-s1-x")  # a closed session: nothing to do, no error


def test_reap_leaves_a_machine_a_later_session_took_over(tmp_path):
    """--orbstack-reuse moves a kept machine pto-a1-... to session b1's record: a1's reap, which
    also finds machines on the engine by its name prefix, must not delete it."""
    reg = Registry(tmp_path)
    reg.open("a1", "docker", pid=dead_pid())
    reg.open("b1", "docker", pid=dead_pid())
    for name in ("pto-a1-one", "pto-a1-two"):
        reg.add("a1", name)
        reg.keep("a1", name)
    reg.adopt("a1", "b1", "pto-a1-one")
    engine = Engine(["pto-a1-one", "pto-a1-two", "pto-a1-leftover"])
    assert reap(engine, reg, "a1", include_kept=True) == ["pto-a1-leftover", "pto-a1-two"]
    assert engine.names == {"pto-a1-one"} and reg.get("b1").kept == ["pto-a1-one"]


def test_removable_images_by_their_labels(tmp_path):
    """Which images a prune may remove, by label: never a recorded session's; in one user's
    project, that project's (or, unlabelled by project, a session reaped now); all for =all."""
    reg = Registry(tmp_path)
    reg.open("live01", "docker", pid=os.getpid(), project="/src/a")
    user, tag_a, tag_b = reg.get("live01").user, project_tag(reg.get("live01").user, "/src/a"), "0" * 12
    project = removable(reg, {"gone01"}, "/src/a", user)
    assert not project({SESSION_LABEL: "live01", PROJECT_LABEL: tag_a})
    assert project({SESSION_LABEL: "older1", PROJECT_LABEL: tag_a})  # a chain's first session
    assert not project({SESSION_LABEL: "older1", PROJECT_LABEL: tag_b})
    assert project({SESSION_LABEL: "gone01"}) and not project({SESSION_LABEL: "older1"})
    just_user = removable(reg, {"gone01"}, None, user)
    assert just_user({SESSION_LABEL: "gone01"}) and not just_user({SESSION_LABEL: "older1", PROJECT_LABEL: tag_a})
    anyone = removable(reg, set(), None, None)
    assert anyone({SESSION_LABEL: "older1", PROJECT_LABEL: tag_b}) and not anyone({SESSION_LABEL: "live01"})


def test_a_session_file_of_release_0_1_0_is_found_and_pruned(tmp_path):
    """0.1.0 wrote no user, project, about or adopted, and a /proc start tick for ``start``."""
    reg = Registry(tmp_path)
    old = {"id": "old01", "pid": dead_pid(), "start": "123456", "host": socket.gethostname(),
           "backend": "docker", "machines": ["pto-old01-a"], "created": 1.0, "kept": ["pto-old01-k"]}
    (reg.dir / "old01.json").write_text(json.dumps(old))
    engine = Engine(["pto-old01-a", "pto-old01-k"])
    assert [k.name for k in kept_machines(reg, getpass.getuser(), "/src/a")] == ["pto-old01-k"]
    rows = prune(reg, lambda kind: engine, include_kept=True, project="/src/a", user=getpass.getuser())
    assert sorted(what for _, outcome, what in rows if outcome == "deleted") == ["pto-old01-a", "pto-old01-k"]
    assert engine.names == set() and reg.get("old01") is None
