"""The watcher's test for an engine call still under way (pytest_orbstack/machines/reaper.py):
a process naming one of a dead session's machines counts only when its program is an engine's
client; a machine's own processes that name it (Podman's conmon, Incus's LXC monitor) live as
long as the machine does and must not hold the late sweeps back."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest

from pytest_orbstack.backends import ENGINES, engine_clients
from pytest_orbstack.machines.reaper import _engine_call_running


def started(folder: Path, program: str, *args: str) -> subprocess.Popen[bytes]:
    """A shell script named ``program`` that sleeps, started with ``args`` (its command line is
    ``/bin/sh .../program ARGS``, as a client wrapper's or an interpreter's is)."""
    script = folder / program
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    proc = subprocess.Popen([str(script), *args])
    cmdline, deadline = Path(f"/proc/{proc.pid}/cmdline"), time.monotonic() + 5
    while args[-1].encode() not in cmdline.read_bytes():  # (empty while the kernel still execs it)
        assert time.monotonic() < deadline, cmdline.read_bytes()
        time.sleep(0.01)
    return proc


def test_every_engine_names_its_client_program():
    assert engine_clients() == {"docker", "podman", "incus", "orbctl"} and len(ENGINES) == 4


@pytest.mark.parametrize(("program", "counts"), [*((client, True) for client in sorted(engine_clients())),
                                                 ("conmon", False), ("lxc-monitor", False)])
def test_only_an_engine_client_naming_the_machine_is_a_call(tmp_path, program, counts):
    prefix = f"pto-{secrets.token_hex(4)}-"
    assert not _engine_call_running(prefix)
    proc = started(tmp_path, program, "run", "-n", f"{prefix}test-a-0-abc123")
    try:
        assert _engine_call_running(prefix) is counts
        assert not _engine_call_running(f"pto-{secrets.token_hex(4)}-")  # another session's
    finally:
        proc.kill()
        proc.wait()
    assert not _engine_call_running(prefix)
