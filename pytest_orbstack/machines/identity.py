"""Identities that are the same in every process of a session (xdist workers agree on which
golden or session machine a test needs): deploy files by path and content, deploy callables by
what their code does, never by ``repr()`` (which carries memory addresses)."""

from __future__ import annotations

import hashlib
import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_orbstack.model.inputs import Deploy


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
    return f"{type(value).__module__}.{type(value).__qualname__}:{_stable(getattr(value, '__dict__', None))}"


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
    path = Path(os.fspath(deploy)).resolve()
    content = path.read_bytes() if path.is_file() else b""
    return f"{path}:{hashlib.sha1(content).hexdigest()[:10]}"
