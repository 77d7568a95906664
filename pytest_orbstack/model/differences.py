"""What an operation changed, for a person: the lines the idempotence check's report shows
under each operation that changed on the second run.

The inputs are snapshots of what the operation touches, taken in the machine right before its
first command on the second run and right after its last (:mod:`pytest_orbstack.pyinfra.idempotence`),
as plain dicts by kind:

* ``file``: ``state`` (``file``, ``directory``, ``link -> TARGET``, ``absent``, ``not a regular
  file``), ``mode``, ``owner`` (``user:group``), ``lines`` (the content, or None when it is too
  large or not a regular file) and ``sha1``;
* ``packages``: ``versions``, each installed package's version(s);
* ``service``: ``state`` (``active/running``), ``enabled``, ``pid``, ``since``.

Plain data, no pyinfra import. Long diffs are cut (:data:`MAX_DIFF_LINES` per file,
:data:`MAX_PACKAGE_LINES` packages).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

MAX_DIFF_LINES = 30
MAX_PACKAGE_LINES = 10

Snapshot = Mapping[str, Any]


def _cut(lines: list[str], limit: int, what: str) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"... {len(lines) - limit} more {what} not shown"]


def file_difference(path: str, before: Snapshot, after: Snapshot) -> list[str]:
    """``path``'s change: its state, mode and owner when they differ, its content as a unified
    diff (before the second run against after it), or its checksums when it is too large."""
    out = [f"{path}: {label} {before.get(key) or '-'} -> {after.get(key) or '-'}"
           for key, label in (("state", "state"), ("mode", "mode"), ("owner", "owner"))
           if before.get(key) != after.get(key)]
    old, new = before.get("lines"), after.get("lines")
    if (old is not None or new is not None) and old != new:
        diff = list(difflib.unified_diff(old or [], new or [], f"{path} (before the second run)",
                                         f"{path} (after it)", n=1, lineterm=""))
        out += _cut(diff, MAX_DIFF_LINES, "diff lines")
    elif before.get("sha1") != after.get("sha1"):
        out.append(f"{path}: content changed (sha1 {before.get('sha1') or '-'} -> "
                   f"{after.get('sha1') or '-'}; too large or not text: not shown)")
    return out or [f"{path}: no difference (rewritten with the same content, mode and owner)"]


def _version(versions: Mapping[str, Any], name: str) -> str:
    found = versions.get(name)
    return ", ".join(sorted(found)) if found else "(not installed)"


def package_difference(before: Snapshot, after: Snapshot) -> list[str]:
    """Each package whose installed version(s) differ: ``package NAME: OLD -> NEW``."""
    old, new = before.get("versions") or {}, after.get("versions") or {}
    lines = [f"package {name}: {_version(old, name)} -> {_version(new, name)}"
             for name in sorted({*old, *new}) if _version(old, name) != _version(new, name)]
    return _cut(lines, MAX_PACKAGE_LINES, "packages") or ["packages: no installed version changed"]


def _service_text(snapshot: Snapshot) -> str:
    parts = [snapshot.get("state") or "unknown", snapshot.get("enabled") or ""]
    if snapshot.get("pid") not in (None, "", "0"):
        parts.append(f"pid {snapshot['pid']}")
    if snapshot.get("since"):
        parts.append(f"since {snapshot['since']}")
    return ", ".join(part for part in parts if part)


def service_difference(unit: str, before: Snapshot, after: Snapshot) -> list[str]:
    """The service's state before and after: ``service nginx: active/running, enabled, pid 12,
    since ... -> ...`` (a restart shows as a new pid and start time)."""
    old, new = _service_text(before), _service_text(after)
    return [f"service {unit}: {old} -> {new}" if old != new else f"service {unit}: {old} (no difference)"]


def difference(kind: str, what: str, before: Snapshot | None, after: Snapshot | None) -> list[str]:
    """The lines saying what changed in ``what`` (a path, a package manager or a unit, by
    ``kind``); one line saying why when a snapshot is missing."""
    if after is None:
        return [f"{what}: not read after the operation (it failed)"]
    if before is None:
        return [f"{what}: not read before the operation"]
    if kind == "file":
        return file_difference(what, before, after)
    if kind == "packages":
        return package_difference(before, after)
    return service_difference(what, before, after)
