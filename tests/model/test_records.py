"""A machine's record as JSON: the keys ``--orbstack-timings`` (and the records xdist workers
send) have always had, whatever the attributes are called."""

from __future__ import annotations

from pytest_orbstack.model.records import MachineRecord


def test_the_json_keeps_kind_for_the_role_and_role_for_the_group_alias():
    record = MachineRecord("pto-1-web", "debian:bookworm", "docker", "golden", alias="web")
    data = record.as_json()
    assert (data["kind"], data["role"]) == ("golden", "web")
    assert "alias" not in data
    assert list(data)[:4] == ["name", "image", "backend", "kind"]
    assert MachineRecord.from_json(data) == record
