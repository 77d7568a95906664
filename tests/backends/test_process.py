"""The one subprocess policy (pytest_orbstack.backends.process) with real child processes: how a
call ends a command that outlives its timeout, and where a detached command (Podman's) runs."""

from __future__ import annotations

import os
import sys
import time

import pytest

from pytest_orbstack.backends import process
from pytest_orbstack.errors import CommandTimeout, EngineUnavailable

SID = [sys.executable, "-c", "import os; print(os.getsid(0))"]
# writes "term" to argv[1] on SIGTERM, then exits
TERM_AWARE = [sys.executable, "-c", "import signal, sys, time\n"
              "def bye(*_): open(sys.argv[1], 'w').write('term'); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye); time.sleep(30)"]
DEAF = ["sh", "-c", 'trap "" TERM; exec sleep 30']  # ignores SIGTERM


@pytest.mark.parametrize("detached", [False, True])
def test_a_detached_command_runs_in_a_session_of_its_own(detached):
    sid = int(process.run_text(SID, timeout=30, detached=detached).stdout)
    assert (sid != os.getsid(0)) is detached


def test_a_timeout_ends_a_detached_command_with_sigterm(tmp_path):
    mark = tmp_path / "mark"
    with pytest.raises(CommandTimeout, match=r"did not finish in 1s$"):
        process.run([*TERM_AWARE, str(mark)], timeout=1, detached=True)
    assert mark.read_text().strip() == "term"


def test_a_timeout_kills_an_attached_command_at_once(tmp_path):
    mark = tmp_path / "mark"
    with pytest.raises(CommandTimeout):
        process.run([*TERM_AWARE, str(mark)], timeout=1)
    assert not mark.exists()  # SIGKILL: no trap ran


def test_a_detached_command_deaf_to_sigterm_is_killed_after_the_grace(monkeypatch):
    monkeypatch.setattr(process, "TERM_GRACE", 0.5)
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        process.run(DEAF, timeout=0.5, detached=True)
    assert time.monotonic() - started < 5


def test_input_reaches_a_detached_command_and_a_missing_binary_is_one_line():
    assert process.run_text(["cat"], timeout=30, input="hello", detached=True).stdout == "hello"
    with pytest.raises(EngineUnavailable, match=r"^install it$"):
        process.run(["pto-no-such-binary"], timeout=5, missing="install it", detached=True)
