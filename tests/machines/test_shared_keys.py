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


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __reduce__(self):  # picklable by its value, as most slotted classes that care are
        return (Slotted, (self.value,))


def test_values_without_a_dict_are_keyed_by_what_they_hold_in_every_process():
    """Path, bytes, an IP address, a date, a ``__slots__`` object: two values, two keys (they
    all were keyed alike), the same in another process; also in a deploy callable's closure."""
    import datetime
    import ipaddress
    import subprocess
    import sys
    from pathlib import Path

    from pytest_orbstack.machines.shared import callable_key

    pairs = [(Path("good.conf"), Path("broken.conf")), (b"A", b"B"),
             (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2")),
             (datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)), (Slotted("a"), Slotted("b"))]
    for one, other in pairs:
        assert session_key({"data": {"conf": one}}) != session_key({"data": {"conf": other}}), one

    def deploy_with(value):
        def deploy():
            return value
        return deploy

    assert callable_key(deploy_with(Path("a"))) != callable_key(deploy_with(Path("b")))
    here = session_key({"data": {"conf": Path("good.conf"), "ip": ipaddress.ip_address("10.0.0.1")}})
    code = ("import ipaddress; from pathlib import Path; from pytest_orbstack.machines.shared import session_key; "
            "print(session_key({'data': {'conf': Path('good.conf'), 'ip': ipaddress.ip_address('10.0.0.1')}}))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there
