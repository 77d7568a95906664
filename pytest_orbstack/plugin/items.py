"""What pytest's items say about the machines they will ask for: whether the next test likely
asks for the same machines as this one (the guess a spare clone is made on)."""

from __future__ import annotations

from typing import Any

import pytest


def same_machines(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Whether ``nextitem`` will likely ask for the machines ``item`` asked for, with the same
    arguments: another run of the same test function, or a test whose ``orbstack`` fixture has
    the same closest marker; with the same image in a platform matrix, and not marked skip."""
    if nextitem is None or any(nextitem.iter_markers("skip")) or any(nextitem.iter_markers("skipif")):
        return False
    if _param(item, "_orbstack_image") != _param(nextitem, "_orbstack_image"):
        return False
    if "orbstack" in getattr(item, "fixturenames", ()) and "orbstack" in getattr(nextitem, "fixturenames", ()):
        return _marker(item) == _marker(nextitem)
    function = getattr(item, "function", None)
    return function is not None and function is getattr(nextitem, "function", None)


def _param(item: pytest.Item, name: str) -> Any:
    return getattr(getattr(item, "callspec", None), "params", {}).get(name)


def _marker(item: pytest.Item) -> tuple[Any, Any] | None:
    marker = item.get_closest_marker("orbstack")
    return None if marker is None else (marker.args, marker.kwargs)
