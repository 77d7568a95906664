"""Machines shared across the processes of a session: golden machines (one per image, deploy and
arguments, cloned for each test) and session machines (one per set of arguments).

Their keys are the same in every process (xdist workers agree on which machine a test needs):
deploy files by path and content, deploy callables by what their code does, never by
``repr()`` (which carries memory addresses). Each key has one record in a folder shared by all
workers, written under that key's own file lock, so exactly one worker makes each machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.errors import MachineError, SharedMachineError, report_sections
from pytest_orbstack.model.inputs import Deploy, DeployFile
from pytest_orbstack.model.results import DeployError
from pytest_orbstack.model.types import NO_RESOURCES


def _stable(value: Any) -> Any:
    """A JSON-able stand-in for ``value`` that is the same in every process (no addresses)."""
    if callable(value):
        return callable_key(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_stable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    state = getattr(value, "__dict__", None)
    return f"{kind}:{_stable(state) if state is not None else _held(value)}"


def _held(value: Any) -> str:
    """What an object without a ``__dict__`` holds (``Path``, ``bytes``, ``IPv4Address``, a
    date, a ``__slots__`` class): its ``repr`` when that carries no memory address, else its
    pickle's digest; else that ``repr`` (different in each process: a golden machine of its
    own, never another value's)."""
    text = repr(value)
    if " at 0x" not in text:
        return text
    try:
        return "pickle:" + hashlib.sha1(pickle.dumps(value, protocol=4)).hexdigest()
    except Exception:  # any object may refuse pickling, in any way
        return text


def _code_digest(code: types.CodeType) -> str:
    """A hash of what a code object does, descending into nested code objects (functions,
    comprehensions), whose ``repr`` would carry memory addresses."""
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_code_digest(const) if isinstance(const, types.CodeType) else repr(const))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def callable_key(func: Callable[..., Any]) -> str:
    """The identity of a deploy callable, equal in every process that imports it:
    ``module.qualname:<hash>`` of its code (nested functions and comprehensions included),
    closure values and defaults."""
    code = getattr(func, "__code__", None)
    cells = [c.cell_contents for c in (getattr(func, "__closure__", None) or ())]
    body = _code_digest(code) if code is not None else ""
    extra = json.dumps([_stable(cells), _stable(getattr(func, "__defaults__", None))],
                       sort_keys=True, default=str)
    digest = hashlib.sha1(f"{body}|{extra}".encode()).hexdigest()[:10]
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(type(func)))}:{digest}"


def deploy_key(deploy: Deploy | None) -> str:
    """A stable identity for a deploy: file path + content hash, or :func:`callable_key`."""
    if deploy is None:
        return ""
    if callable(deploy):
        return callable_key(deploy)
    if isinstance(deploy, DeployFile):  # checked: path and digest of what was read then
        return f"{deploy}:{deploy.digest}"
    path = Path(os.fspath(deploy)).resolve()
    content = path.read_bytes() if path.is_file() else b""
    return f"{path}:{hashlib.sha1(content).hexdigest()[:10]}"


def golden_args(keywords: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The machine and the apply arguments a golden machine is made with, and keyed by, taken
    from checked ``keywords`` (one left out has its default): the lifecycle making the machine
    and the collection grouping its tests (shards, the xdist scheduler) agree through this."""
    return (dict(user=keywords.get("user"), resources=keywords.get("resources", NO_RESOURCES),
                 allow_stale=keywords.get("allow_stale", ())),
            dict(data=keywords.get("data"), check_idempotent=keywords.get("check_idempotent", False),
                 allow_changes=keywords.get("allow_changes", ()), check_dry_run=keywords.get("check_dry_run", False)))


def golden_key(image: str, deploy: Deploy, machine_args: dict[str, Any], apply_args: dict[str, Any]) -> str:
    """The key of the golden machine of (image, deploy, machine and apply arguments); values
    JSON has no form for (resources, a host data object) by :func:`_stable`, never by ``str()``
    (an object's default one carries its address: each xdist worker would make its own golden)."""
    args = json.dumps([machine_args, apply_args], sort_keys=True, default=_stable)
    return f"golden:{image}:{deploy_key(deploy)}:{args}"


def session_key(kwargs: dict[str, Any]) -> str:
    """The key of the session machine made with the (checked) factory keywords ``kwargs``."""
    identity = {k: callable_key(v) if callable(v) else v for k, v in kwargs.items()}
    return "session:" + json.dumps(identity, sort_keys=True, default=_stable)


class SharedMachines:
    """The records of a session's shared machines, one JSON file per key in ``folder``:
    ``{}`` until made, then ``name``, ``image`` and the machine's ``record``, or the ``error``
    its making raised (with the report ``sections`` and the ``asker``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _entry(self, key: str) -> Iterator[dict[str, Any]]:
        """The record of ``key``, under that key's own lock: two golden machines with
        different deploys are made at the same time."""
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        path = self.folder / f"{digest}.json"
        with FileLock(str(self.folder / f"{digest}.lock"), timeout=settings.GOLDEN_LOCK_WAIT):
            entry = json.loads(path.read_text()) if path.exists() else {}
            yield entry
            path.write_text(json.dumps(entry))

    @contextmanager
    def claim(self, key: str, what: str, asker: str) -> Iterator[dict[str, Any]]:
        """The record of ``key``, under its lock: empty when no process made the machine yet;
        then the block makes it and fills in ``name``, ``image`` and ``record`` (the machine's
        record as JSON). A making that failed is recorded and not retried: the test that asked
        first (``asker``) gets the whole error, every later asker one line naming the cause and
        that test (:meth:`.SharedMachineError.of`; ``what`` names the machine)."""
        with self._entry(key) as entry:
            made_now = not entry
            try:
                yield entry
            except (MachineError, DeployError) as exc:
                if not made_now:
                    raise
                entry.update(error=str(exc), sections=report_sections(exc), asker=asker)
            except Exception as exc:
                if not made_now:
                    raise
                entry.update(error=f"{type(exc).__name__}: {exc}", asker=asker)
        if "error" in entry:
            raise SharedMachineError.of(entry, what, made_now)

    def take_all(self) -> Iterator[dict[str, Any]]:
        """Every record of a machine that was made, each forgotten as it is taken."""
        for path in sorted(self.folder.glob("*.json")):
            entry = json.loads(path.read_text())
            path.unlink()
            if "name" in entry:
                yield entry
