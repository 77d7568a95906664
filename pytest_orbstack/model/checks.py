"""What the machine facts and :class:`~pytest_orbstack.machines.machine.Machine`'s diagnostics return:
values whose truth is the check's answer, or that refuse a truth value where none is honest, and
whose repr says why, so that ``assert machine.connectivity(...)`` fails with the reason.

* :class:`Reachability` (a read-only mapping): ``Machine.connectivity()``, the
  ``Connectivity`` fact's dict; true iff the target answered.
* :class:`Resolution` (a list of addresses): the ``DnsLookup`` fact's answer; true iff the name
  resolved.
* :class:`Record` (a read-only mapping): ``Machine.status()`` and ``Machine.network()``; it has
  no truth value (it would always be true): ``bool()`` raises TypeError naming a field to compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

HTTP_STATUS = re.compile(r"^HTTP(?:/[\d.]+)? (\d{3})\b")
REASON_CHARS = 160


def reason_text(detail: str, limit: int = REASON_CHARS) -> str:
    """The informative lines of a check's output, on one line: the last two that are not
    empty, an HTTP status line or ping's banner and statistics header; cut to ``limit``."""
    lines = [line.strip() for line in detail.splitlines()]
    kept = [line for line in lines if line and not HTTP_STATUS.match(line)
            and not line.startswith(("PING ", "---"))]
    text = "; ".join(kept[-2:])
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Fields(Mapping[str, Any]):
    """A fact's fields, read-only: ``fields["ip4"]``, ``fields.get(...)``, ``dict(fields)``
    (plain data, e.g. for JSON), equal to a dict with the same items."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Reachability(Fields):
    """``Machine.connectivity()``: :class:`~pytest_orbstack.facts.Connectivity`'s dict, read-only
    (``reachable``, ``target``, ``method``, ``port``, ``timeout``, ``status``: the HTTP status
    code or None, ``rc``: the check's exit code, ``detail``: its output).

    Its truth is ``reachable``; its repr names the method, target and port, and when the target
    was not reached the exit code and the check's own message:
    ``<tcp db.orb.local:3306 unreachable: exit 1: bash: connect: Connection refused; ...>``."""

    def __bool__(self) -> bool:
        return bool(self.get("reachable"))

    def where(self) -> str:
        """``method target[:port]`` as the check was asked."""
        target, port, method = self.get("target"), self.get("port"), self.get("method")
        if method == "http":
            shown = target if "://" in str(target) else f"{target}:{port or 80}"
        else:
            shown = f"{target}:{port}" if port else str(target)
        return f"{method} {shown}"

    def why(self) -> str:
        """Why it is unreachable: the exit code and the check's message ("" when reached)."""
        if self:
            return ""
        rc, timeout = self.get("rc"), self.get("timeout")
        if rc == 124:
            return f"timed out after {timeout} s (exit 124)"
        status = self.get("status")
        message = reason_text(str(self.get("detail") or "")) or "no output"
        if rc == 0 and not status:
            return f"no HTTP status line in the answer: {message}"
        return f"exit {rc}: {message}"

    def __repr__(self) -> str:
        if self:
            status = self.get("status")
            return f"<{self.where()} reachable{f': HTTP {status}' if status else ''}>"
        return f"<{self.where()} unreachable: {self.why()}>"

    __str__ = __repr__


class Resolution(list[str]):
    """:class:`~pytest_orbstack.facts.DnsLookup`'s answer: the addresses ``hostname`` resolves
    to (a list, equal to a plain list of the same addresses), ``hostname``, and ``reason``: why
    it does not resolve ("" when it does). Its truth is whether it resolved; its repr is
    ``<dns db.orb.local: ['172.18.0.3']>`` or ``<dns nosuch: does not resolve (...)>``."""

    def __init__(self, addresses: Iterable[str] = (), hostname: str = "", reason: str = "") -> None:
        super().__init__(addresses)
        self.hostname = hostname
        self.reason = reason

    def __repr__(self) -> str:
        if self:
            return f"<dns {self.hostname}: {list(self)!r}>"
        return f"<dns {self.hostname}: does not resolve ({self.reason or 'no address'})>"

    __str__ = __repr__


class Record(Fields):
    """A fact's fields (:class:`Fields`) with no truth value, since it would always be true:
    ``bool(record)`` (``assert machine.status()``) raises TypeError saying which field to
    compare instead."""

    def __init__(self, name: str, data: Mapping[str, Any], hint: str) -> None:
        super().__init__(data)
        self._name = name
        self._hint = hint

    def __bool__(self) -> bool:
        __tracebackhide__ = True
        raise TypeError(f"{self._name} has no truth value (it is always there): compare a field, "
                        f"e.g. {self._hint}")

    def __repr__(self) -> str:
        return f"{self._name}: {self._data!r}"
