"""The watcher (pytest_orbstack/machines/reaper.py) after its owner died: a machine whose
deletion fails (the engine busy or away for a moment) stays recorded, and the watcher sweeps
again every RETRY_SWEEP seconds until it is gone, not only its three planned sweeps."""

from __future__ import annotations

import io

from pytest_orbstack import settings
from pytest_orbstack.errors import MachineError
from pytest_orbstack.machines import reaper
from pytest_orbstack.machines.registry import Registry
from pytest_orbstack.model.types import EngineMachine, Image

SESSION = "abcd1234"
MACHINE = f"pto-{SESSION}-test-a-0-123abc"


class BusyEngine:
    """An engine whose first ``failures`` deletions fail, as a busy or restarting one's do."""

    name = "docker"

    def __init__(self, failures: int) -> None:
        self.failures, self.machines = failures, {MACHINE}

    def list(self) -> list[EngineMachine]:
        return [EngineMachine(name, name, Image("debian", "bookworm"), "running") for name in self.machines]

    def delete(self, name: str) -> None:
        if self.failures:
            self.failures -= 1
            raise MachineError("engine busy")
        self.machines.discard(name)

    def remove_session_images(self, session_id: str) -> None:
        pass


def test_a_machine_whose_deletion_failed_is_swept_again_until_it_is_gone(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    registry.open(SESSION, "docker")
    registry.add(SESSION, MACHINE)
    engine = BusyEngine(failures=5)  # more than the planned sweeps (one at once, LATE_SWEEPS)
    monkeypatch.setattr(reaper, "get_backend", lambda name: engine)
    monkeypatch.setattr(settings, "LATE_SWEEPS", (0.01, 0.01))
    monkeypatch.setattr(settings, "RETRY_SWEEP", 0.01)
    assert reaper.watch(SESSION, "docker", tmp_path, io.BytesIO(b"")) == 0  # the pipe closed: owner gone
    assert engine.machines == set() and engine.failures == 0
    assert registry.get(SESSION) is None  # nothing left recorded: the session's file went


def test_the_watcher_stops_trying_at_its_deadline(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    registry.open(SESSION, "docker")
    registry.add(SESSION, MACHINE)
    engine = BusyEngine(failures=10**6)  # an engine that never deletes it
    monkeypatch.setattr(reaper, "get_backend", lambda name: engine)
    monkeypatch.setattr(settings, "LATE_SWEEPS", (0.01, 0.01))
    monkeypatch.setattr(settings, "RETRY_SWEEP", 0.01)
    monkeypatch.setattr(settings, "ORPHAN_WAIT", 0.5)
    assert reaper.watch(SESSION, "docker", tmp_path, io.BytesIO(b"")) == 0
    assert engine.machines == {MACHINE}
    assert registry.get(SESSION).machines == [MACHINE]  # left for the next prune
