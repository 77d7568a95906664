"""Clones started early: while a test runs, the machines the next tests (up to :data:`DEPTH`)
will likely ask for are cloned from the same golden machine, each in a background thread, so
that each test finds its machine booted.

A spare is only a guess about a next test (the plugin's ``marker.same_machines``), checked
when it is taken: the asker's golden machine must be the one it was cloned from, else it is deleted and the
asker's machine is made as usual. A spare no test took is deleted when the test it was made
for ends (``plugin.pytest_runtest_protocol``, whether or not that test set its fixtures up),
and every spare when the session ends (:meth:`Spares.delete_all`; an interrupted session does not
wait for a clone under way). Its name is recorded in the session before its clone starts, so a
killed session's reap finds it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import MachineError, MachineExists
from pytest_orbstack.model.types import MachineInfo

DEPTH = 2  # how many of the next tests' machines are cloned ahead, where the order is known:
# with tests shorter than a clone's boot, one spare is still booting when its test starts; two
# in flight keep the engine busy while a test runs (bench/run.py rows 8 and 9)


@dataclass
class _Spare:
    golden: str
    key: str  # the key it was made for: ``<test key>#<machine in the test>``
    done: threading.Event = field(default_factory=threading.Event)
    info: MachineInfo | None = None  # set when the clone succeeded
    error: BaseException | None = None


class Spares:
    """The spare clones of one process, by machine name (used from the main thread only; each
    clone runs in a thread of its own)."""

    def __init__(self, backend: Backend, forget: Callable[[str], None],
                 progress: Callable[[str], None]) -> None:
        self.backend = backend
        self._forget = forget  # drops a name from the session's record
        self._progress = progress
        self._spares: dict[str, _Spare] = {}

    def start(self, name: str, golden: str, key: str, labels: dict[str, str]) -> None:
        """Clone ``golden`` to ``name`` (the machine of ``key``) in a daemon thread. A spare of
        that name from another golden machine (guessed two tests ago, before the test between
        switched golden) is deleted first: it would hold that golden's cache entry in use."""
        if name in self._spares and self._spares[name].golden == golden:
            return
        if name in self._spares:
            self._discard(name, self._settle(name), forget=False)
        spare = _Spare(golden, key)

        def clone() -> None:
            try:
                spare.info = self.backend.clone(golden, name, labels=labels, frozen_source=True)
            except BaseException as exc:  # told, and cleaned up, by whoever settles it
                spare.error = exc
            finally:
                spare.done.set()
        threading.Thread(target=clone, name=f"pytest-orbstack spare {name}", daemon=True).start()
        self._spares[name] = spare  # only once its thread runs: a listed spare always ends

    def take(self, name: str, golden: str | None) -> MachineInfo | None:
        """The spare ``name`` once booted, if it was cloned from ``golden``; otherwise None,
        and a spare of that name (another golden's, or ``golden`` None: the asker wants no
        clone) is deleted first, so the name is free (it stays recorded: the asker uses it)."""
        spare = self._settle(name)
        if spare is None:
            return None
        if spare.info is not None and spare.golden == golden:
            return spare.info
        self._discard(name, spare, forget=False)
        return None

    def unclaimed(self, test: str) -> None:
        """Delete the spares made for the test keyed ``test`` (now over) that it did not take."""
        for name in [n for n, spare in self._spares.items() if spare.key.startswith(f"{test}#")]:
            self._discard(name, self._settle(name))

    def delete_all(self, wait: bool = True) -> None:
        """Delete every spare (the session is ending): each clone still running is waited for,
        unless ``wait`` is false (an interrupted session: Ctrl-C, SIGTERM, a closed terminal).
        Such a clone stays recorded; the session's reap deletes its machine if made already,
        the watcher's late reaps if its engine call makes it later."""
        for name in list(self._spares):
            if wait or self._spares[name].done.is_set():
                self._discard(name, self._settle(name))

    def _settle(self, name: str) -> _Spare | None:
        """Wait for the clone of ``name`` (each engine call in it has its own time limit), then
        forget it: whoever waited owns the machine from here."""
        spare = self._spares.get(name)
        if spare is not None:
            spare.done.wait()
            del self._spares[name]
        return spare

    def _discard(self, name: str, spare: _Spare | None, forget: bool = True) -> None:
        if spare is None or isinstance(spare.error, MachineExists):
            return  # the name is another machine's
        if spare.error is not None:
            self._progress(f"orbstack: spare clone {name} failed: {spare.error}")
        try:
            self.backend.delete_if_exists(name)  # (a failed clone may have left its machine)
            if forget:
                self._forget(name)
        except MachineError:
            pass  # still recorded: the session's reap tries again
