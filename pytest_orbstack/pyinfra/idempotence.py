"""What an operation touched, read in the machine with pyinfra facts right before it changed
something and right after, for the idempotence check's report (:class:`Differ`).

What an operation touches comes from pyinfra's own objects, never from its printed output: the
command generator pyinfra makes for each operation closes over the operation function and the
arguments it was called with, bound here to the function's signature:

* ``files.put``/``template``/``download`` (``dest``), ``files.line``/``replace``/``block``/
  ``file``/``directory``/``link`` (``path``): that path (facts ``File``, ``FileContents`` up to
  :data:`MAX_CONTENT` bytes, else ``Sha1File``; ``Directory``; ``Link``);
* ``apt``/``dnf``/``yum``/``zypper``/``apk`` ``packages``, ``deb``, ``rpm``, ``upgrade``,
  ``dist_upgrade``: the installed packages (``DebPackages``, ``RpmPackages``, ``ApkPackages``);
* ``systemd.service``, ``server.service``: the unit (:class:`UnitState`).

Other operations (``server.shell``, custom ones) are reported with their commands only.
Snapshots cost nothing for operations that change nothing: the first one is taken when the
operation yields its first command, before that command runs.
"""

from __future__ import annotations

import functools
import inspect
import posixpath
from collections.abc import Callable, Iterator
from typing import Any

from pyinfra.api import FactBase, State
from pyinfra.api.operation import get_operation_name_from_func
from pyinfra.facts.apk import ApkPackages
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory, File, FileContents, Link, Sha1File
from pyinfra.facts.rpm import RpmPackages

from pytest_orbstack.model.differences import Snapshot, difference

MAX_CONTENT = 256 * 1024
PATH_ARGS = {"files.put": "dest", "files.template": "dest", "files.download": "dest", "files.line": "path",
             "files.replace": "path", "files.block": "path", "files.file": "path",
             "files.directory": "path", "files.link": "path"}
PATH_FACTS: dict[str, type[FactBase]] = {"files.directory": Directory, "files.link": Link}
PACKAGE_FACTS: dict[str, type[FactBase]] = {"apt": DebPackages, "dnf": RpmPackages, "yum": RpmPackages,
                                            "zypper": RpmPackages, "apk": ApkPackages}
PACKAGE_OPS = ("packages", "deb", "rpm", "upgrade", "dist_upgrade")
SERVICE_OPS = ("systemd.service", "server.service")


class UnitState(FactBase):
    """A systemd unit's state: ``{"state": "active/running", "enabled": "enabled", "pid":
    "123", "since": "Sun 2026-12-06 04:01:02 UTC"}`` (empty without systemd)."""

    default = dict

    def command(self, unit: str) -> str:
        from shlex import quote
        return ("command -v systemctl >/dev/null 2>&1 || exit 0; systemctl show --property "
                f"ActiveState,SubState,UnitFileState,MainPID,ActiveEnterTimestamp -- {quote(unit)}")

    def process(self, output: list[str]) -> dict[str, str]:
        shown = dict(line.split("=", 1) for line in output if "=" in line)
        return {"state": f"{shown.get('ActiveState', '')}/{shown.get('SubState', '')}",
                "enabled": shown.get("UnitFileState", ""), "pid": shown.get("MainPID", ""),
                "since": shown.get("ActiveEnterTimestamp", "")}


def op_call(op_data: Any) -> tuple[str, dict[str, Any]] | None:
    """The operation's name as pyinfra makes it (``files.put``) and its arguments by name,
    from the closure of its command generator; None for anything else."""
    try:
        nonlocals = inspect.getclosurevars(inspect.unwrap(op_data.command_generator)).nonlocals
        func = nonlocals["func"]
        bound = inspect.signature(func).bind_partial(*nonlocals["args"], **nonlocals["kwargs"])
    except (TypeError, ValueError, KeyError):
        return None
    return get_operation_name_from_func(func), dict(bound.arguments)


def touched(name: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    """What operation ``name`` called with ``args`` changes: ``(kind, what)`` pairs (see the
    module docstring)."""
    module, _, op = name.partition(".")
    path = args.get(PATH_ARGS.get(name, ""))
    if isinstance(path, str):
        if name == "files.put" and path.endswith("/") and isinstance(args.get("src"), str):
            path = posixpath.join(path, posixpath.basename(args["src"]))  # as files.put does
        return [("file", path)]
    if module in PACKAGE_FACTS and op in PACKAGE_OPS:
        return [("packages", module)]
    if name in SERVICE_OPS and isinstance(args.get("service"), str):
        return [("service", args["service"])]
    return []


def _file(host: Any, path: str, fact: type[FactBase]) -> Snapshot:
    info = host.get_fact(fact, path=path)
    if not info:
        return {"state": "absent" if info is None else "not a regular file"}
    kinds: dict[type[FactBase], str] = {Directory: "directory", Link: f"link -> {info.get('link_target', '?')}"}
    snapshot: dict[str, Any] = {"state": kinds.get(fact, "file"), "mode": str(info.get("mode", "")),
                                "owner": f"{info.get('user')}:{info.get('group')}"}
    if fact is File:
        small = isinstance(info.get("size"), int) and info["size"] <= MAX_CONTENT
        snapshot["lines"] = host.get_fact(FileContents, path=path) if small else None
        snapshot["sha1"] = None if small else host.get_fact(Sha1File, path=path)
    return snapshot


def snapshot(host: Any, name: str, kind: str, what: str) -> Snapshot:
    """``what`` (of ``kind``) as operation ``name`` left it, read with facts on ``host`` (as the
    operation's own facts run: its ``_sudo`` etc.)."""
    if kind == "file":
        return _file(host, what, PATH_FACTS.get(name, File))
    if kind == "packages":
        return {"versions": host.get_fact(PACKAGE_FACTS[what])}
    return host.get_fact(UnitState, unit=what)


class Differ:
    """Watches a loaded deploy's operations as they run: for each one that changes something
    it knows (:func:`touched`), a snapshot before its first command and after its last, and
    the difference as lines, into ``differences[(host name, op hash)]``."""

    def __init__(self, differences: dict[tuple[str, str], list[str]]) -> None:
        self.differences = differences

    def watch(self, state: State) -> None:
        """Wrap the command generator of every operation of ``state`` that touches something
        known (pyinfra calls it once per attempt as the operation runs)."""
        for host, ops in state.ops.items():
            for op_hash, op_data in ops.items():
                call = op_call(op_data)
                targets = touched(*call) if call is not None else []
                if targets:
                    op_data.command_generator = self._watched(host, op_hash, call[0], targets,  # type: ignore[index]
                                                              op_data.command_generator)

    @staticmethod
    def _read(host: Any, name: str, targets: list[tuple[str, str]], arguments: Any) -> list[Snapshot | None]:
        """Snapshots of ``targets``, the facts run with the operation's global ``arguments``
        (its ``_sudo``...: pyinfra clears them from the host once its last command ran)."""
        snapshots: list[Snapshot | None] = []
        previous, host.current_op_global_arguments = host.current_op_global_arguments, arguments
        try:
            for kind, what in targets:
                try:
                    snapshots.append(snapshot(host, name, kind, what))
                except Exception:  # a snapshot never fails the deploy: the report says it is missing
                    snapshots.append(None)
        finally:
            host.current_op_global_arguments = previous
        return snapshots

    def _watched(self, host: Any, op_hash: str, name: str, targets: list[tuple[str, str]],
                 commands: Callable[[], Iterator[Any]]) -> Callable[[], Iterator[Any]]:
        before: list[list[Snapshot | None]] = []
        arguments: list[Any] = []

        @functools.wraps(commands)  # pyinfra's own, for who reads the operation from it
        def watched() -> Iterator[Any]:
            for command in commands():
                if not before:
                    arguments.append(host.current_op_global_arguments)
                    before.append(self._read(host, name, targets, arguments[0]))
                yield command
            if before:
                after = self._read(host, name, targets, arguments[0])
                self.differences[(host.name, op_hash)] = [
                    line for (kind, what), old, new in zip(targets, before[0], after, strict=True)
                    for line in difference(kind, what, old, new)]

        return watched
