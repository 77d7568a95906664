"""SIGTERM and SIGHUP end a session as Ctrl-C does (pytest_orbstack/plugin/signals.py), even
when the kernel hands the signal to a thread other than the main one while the main thread is
in a long blocking call (a test's ``time.sleep``): without the forwarding thread the session
ran on until the call returned. A second signal during the teardown it started is ignored."""

from __future__ import annotations

import signal
import time

import pytest

ANOTHER_THREAD = '''
import signal, threading, time

def test_long_call():
    def hit():
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.{sig})  # taken by this thread, not the main one
        time.sleep(120)
    threading.Thread(target=hit, daemon=True).start()
    time.sleep(120)
'''
TWICE = '''
import os, signal, time
import pytest

@pytest.fixture
def slow_teardown(tmp_path_factory):
    yield
    os.kill(os.getpid(), signal.{sig})  # a second one, while the first one's teardown runs
    time.sleep(1)
    open({mark!r}, "w").write("torn down")

def test_ended(slow_teardown):
    os.kill(os.getpid(), signal.{sig})
    time.sleep(120)
'''


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_signal_another_thread_takes_ends_the_session(pytester, sig):
    pytester.makepyfile(test_inner=ANOTHER_THREAD.format(sig=sig))
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    assert time.monotonic() - started < 30, "the session waited for the test's sleep to end"
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines([f"*KeyboardInterrupt: signal {int(getattr(signal, sig))}*"])


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_second_signal_does_not_cut_the_teardown_short(pytester, sig):
    mark = pytester.path / "mark"
    pytester.makepyfile(test_inner=TWICE.format(sig=sig, mark=str(mark)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert mark.read_text() == "torn down", result.stdout.str()
