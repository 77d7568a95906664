"""Where the lines pytest-orbstack tells the user go (:class:`Notices`): an engine's notices and
the machines' progress lines, written past pytest's output capture or held for an xdist worker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


class Notices:
    """Where the lines pytest-orbstack tells the user go: an engine's notices (an image built on
    first use, for a minute) and, with ``verbose`` (``-v``), the machines' progress lines.

    A line is written at once to ``reporter()`` (a terminal reporter: ``write``,
    ``write_line``; None: not shown) inside ``capture()``'s ``global_and_fixture_disabled()``
    (None: no capture), so a test's output capture does not swallow it; the plugin hands pytest's
    own objects, so no call goes back up into the plugin. With ``held`` (an xdist worker) lines
    are kept in that list instead, for the plugin to send with the next test report."""

    def __init__(self, reporter: Callable[[], Any] = lambda: None, capture: Callable[[], Any] = lambda: None,
                 *, verbose: bool = False, held: list[str] | None = None) -> None:
        self.reporter, self.capture = reporter, capture
        self.verbose = verbose
        self.held = held

    def progress(self, line: str) -> None:
        """A ``-v`` progress line (see :meth:`notice`)."""
        if self.verbose:
            self.notice(line)

    def notice(self, line: str) -> None:
        """A line shown even without ``-v``: written at once, or held."""
        if self.held is not None:
            self.held.append(line)
        else:
            self.write(line)

    def write(self, line: str) -> None:
        """``line`` on a line of its own, also after the progress letters xdist writes without
        ``-v`` (pytest's ``ensure_newline`` knows only its own test file prefix)."""
        reporter = self.reporter()
        if reporter is None:
            return
        if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0) and not reporter.currentfspath:
            reporter.write("\n")
        capture = self.capture()
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)
