"""SIGTERM and SIGHUP (a terminal closed, an SSH session dropped, a CI runner cancelling) end
the session as Ctrl-C does: the first one raises ``KeyboardInterrupt`` in the main thread, so
fixtures and the session's sweep still tear down (SIGKILL cannot be caught: the watcher reaps
then). Later ones are ignored while that teardown runs.

The kernel gives a signal sent to the process to any of its threads that does not block it
(Linux passes over the main thread when that one has a signal pending already, such as the
SIGCHLD of an engine client that the same signal just ended). CPython runs Python handlers in
the main thread only, and only once that thread is back in Python code, so a signal taken by
another thread (a spare clone's) would wait until the test's blocking call returns (a
``time.sleep(120)``: two minutes). So the C handler's wakeup file descriptor
(:func:`signal.set_wakeup_fd`) is read by a daemon thread; when the handler has not run within
:data:`GRACE` seconds of a SIGTERM or SIGHUP, that thread sends the signal on to the main
thread itself (:func:`signal.pthread_kill`), which interrupts the call. Installed once per
process, and not when something else uses the wakeup descriptor already.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

GRACE = 0.1  # seconds the main thread has to run the handler before the signal is sent to it
ENDING = (signal.SIGTERM, signal.SIGHUP)
_interrupted = threading.Event()
_installed = threading.Event()


def _handler(signum: int, frame: Any) -> None:
    if _interrupted.is_set():
        return  # the session is ending already: its teardown must not be cut short
    _interrupted.set()
    raise KeyboardInterrupt(f"signal {signum}")


def _forward(read_fd: int, main: int) -> None:
    """Until the descriptor closes: each SIGTERM/SIGHUP the handler did not take within
    :data:`GRACE`, sent on to thread ``main`` (whose own delivery comes back here: resent until
    it is taken)."""
    while data := os.read(read_fd, 64):
        for signum in {s for s in ENDING if s in data}:
            if not _interrupted.wait(GRACE):
                signal.pthread_kill(main, signum)


def install() -> None:
    """Make SIGTERM and SIGHUP end the session (see the module's text); from the main thread
    (elsewhere, nothing is done: Python allows handlers there only)."""
    if _installed.is_set() or threading.current_thread() is not threading.main_thread():
        return
    for signum in ENDING:
        signal.signal(signum, _handler)
    _installed.set()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if previous != -1:  # someone else's: put it back
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    threading.Thread(target=_forward, args=(read_fd, threading.main_thread().ident),
                     name="pytest-orbstack signals", daemon=True).start()
