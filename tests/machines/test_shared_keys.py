"""Golden and session keys are the same in every process: values JSON has no form for are
keyed by what they hold, never by their default ``str()`` (which carries a memory address)."""

from __future__ import annotations

from pytest_orbstack.machines.shared import golden_key, session_key
from pytest_orbstack.model.types import Resources


class Setting:
    def __init__(self, value: str) -> None:
        self.value = value


def test_an_object_in_host_data_is_keyed_by_its_content_not_its_address():
    def key(value: str) -> str:
        return golden_key("debian:bookworm", "deploy.py", {"resources": Resources(cpus=1)},
                          {"data": {"setting": Setting(value)}})

    assert key("a") == key("a")  # two objects, two addresses: one key
    assert key("a") != key("b")
    assert "0x" not in key("a")
    assert "cpus" in key("a")


def test_session_keys_too():
    assert session_key({"data": Setting("a")}) == session_key({"data": Setting("a")})
    assert session_key({"data": Setting("a")}) != session_key({"data": Setting("b")})
