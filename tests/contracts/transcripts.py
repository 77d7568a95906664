"""Recorded observations of real OrbStack (``orbstack/*.yaml``), loaded for the replay suites.

One file per observation. Fields:

- ``source``: public URL it comes from; ``shows``: what exactly the source shows;
- ``orbstack_version``, ``argv``, ``stdin``, ``stdout``, ``stderr``, ``exit``: as observed;
  any of them may be ``unknown`` when the source does not show it (never filled in);
- ``match``: how to compare: ``exact`` (text equal once trailing newlines are stripped, as a
  shell's ``$(...)`` capture strips them), ``substring`` (the recorded text occurs in the
  output) or ``json-shape`` (stdout is a structure whose leaves are type names ``str``,
  ``int``, ``bool`` or ``=literal``; extra keys are allowed);
- ``values``: what the source showed for each ``{placeholder}`` in argv and texts (machine
  names, users, ids, addresses, the Mac's architecture), so a refresh can scrub them;
- ``setup``/``cwd``/``kind``: commands run first, the caller's directory, ``dns`` for a name
  lookup inside a machine;
- ``client``: what the client must make of it (``none (reason)`` when it never reads it);
- ``emulator``: how the emulator replays it (substitutes and the fields it compares).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "orbstack"
UNKNOWN = "unknown"
FIELDS = ("source", "shows", "orbstack_version", "argv", "stdin", "stdout", "stderr", "exit", "match")
MATCHES = ("exact", "substring", "json-shape")


def load_all() -> dict[str, dict[str, Any]]:
    """Every transcript by id (its file name), checked for the mandatory fields."""
    found = {}
    for path in sorted(HERE.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        missing = [f for f in FIELDS if f not in data]
        assert not missing, f"{path.name}: missing {missing}"
        assert data["match"] in MATCHES, f"{path.name}: match must be one of {MATCHES}"
        assert str(data["source"]).startswith("https://"), f"{path.name}: source must be a URL"
        found[path.stem] = data
    return found


def known(value: object) -> bool:
    return value != UNKNOWN


def fill(value: Any, values: dict[str, str]) -> Any:
    """``value`` with ``{name}`` placeholders replaced (in strings, lists and dicts)."""
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m[1], m[0])), value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    return value


def sample(shape: Any) -> Any:
    """A JSON document of ``shape`` (type names become neutral values, ``=x`` becomes x)."""
    if isinstance(shape, dict):
        return {k: sample(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [sample(v) for v in shape]
    if isinstance(shape, str) and shape.startswith("="):
        return shape[1:]
    return {"str": "x", "int": 0, "bool": False}.get(shape, shape)


def shape_errors(shape: Any, doc: Any, where: str = "$") -> list[str]:
    """Where ``doc`` departs from ``shape`` (empty when it conforms)."""
    if isinstance(shape, dict):
        if not isinstance(doc, dict):
            return [f"{where}: expected an object, got {doc!r}"]
        return [e for k, v in shape.items()
                for e in (shape_errors(v, doc[k], f"{where}.{k}") if k in doc else [f"{where}.{k}: missing"])]
    if isinstance(shape, list):
        if not isinstance(doc, list):
            return [f"{where}: expected an array, got {doc!r}"]
        return [e for i, item in enumerate(doc) for e in shape_errors(shape[0], item, f"{where}[{i}]")]
    if isinstance(shape, str) and shape.startswith("="):
        return [] if doc == shape[1:] else [f"{where}: expected {shape[1:]!r}, got {doc!r}"]
    kinds = {"str": str, "int": int, "bool": bool}
    ok = isinstance(doc, kinds[shape]) and not (shape == "int" and isinstance(doc, bool))
    return [] if ok else [f"{where}: expected {shape}, got {doc!r}"]


def matches(match: str, expected: Any, actual: str) -> bool:
    """Compare one recorded output with an actual one as ``match`` says."""
    if match == "json-shape":
        return not shape_errors(expected, json.loads(actual))
    if match == "substring":
        return str(expected).rstrip("\n") in actual
    return actual.rstrip("\n") == str(expected).rstrip("\n")
