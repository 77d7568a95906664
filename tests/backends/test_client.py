"""The typed OrbStack client against orbctl (the emulator here, on Docker and on Incus LXC
containers; real OrbStack with PYTEST_ORBSTACK_REAL=1): lifecycle, both info shapes, both
config-get forms, typed errors carrying orbctl's stderr. The ORBCTL_EMULATOR_* knobs are
ignored by a real orbctl."""

from __future__ import annotations

import pytest
from testenv import REAL, unique

from pytest_orbstack.backends.orbstack.client import Orbctl
from pytest_orbstack.errors import InvalidName, MachineExists, MachineNotFound, UnknownConfigKey, UnknownImage


@pytest.fixture(scope="module", params=["docker", "incus"])
def orb_machine(request, orb):
    """A running machine for the module, on each substrate of the emulator (the Incus one
    skipped in one line where Incus is unusable)."""
    if request.param == "incus":
        request.getfixturevalue("orbctl_on_incus")
    name = unique("e2e")
    orb.create("debian:bookworm", name)
    yield name
    orb.delete(name)


def test_lifecycle_clone_rename_and_info_shapes(orb, orb_machine):
    info = orb.info(orb_machine)
    assert info.machine.running and info.ip4 and info.machine.image.version == "bookworm"
    flat = Orbctl(env={"ORBCTL_EMULATOR_INFO_SHAPE": "flat"}).info(orb_machine)
    assert (flat.name, flat.ip4) == (orb_machine, info.ip4)

    copy, renamed = unique("cl"), unique("rn")
    orb.clone(orb_machine, copy)
    try:
        clone = orb.info(copy)
        assert clone.machine.state == "stopped" and clone.ip4 is None
        orb.start(copy)
        assert orb.run(copy, "hostname").stdout.strip() == copy
        orb.stop(copy)
        orb.rename(copy, renamed)
        names = {m.name for m in orb.list()}
        assert renamed in names and copy not in names
    finally:
        for name in {m.name for m in orb.list()} & {copy, renamed}:
            orb.delete(name)
    assert "Version" not in orb.version() and orb.version()[0].isdigit()
    assert isinstance(orb.logs(orb_machine), str)


@pytest.mark.skipif(REAL, reason="changes OrbStack's own settings")
def test_config_get_both_forms_and_set(orb):
    before = orb.config_get("memory_mib")
    assert Orbctl(env={"ORBCTL_EMULATOR_CONFIG_GET_STYLE": "keyvalue"}).config_get("memory_mib") == before
    orb.config_set("memory_mib", "6144")
    assert orb.config_show()["memory_mib"] == "6144"
    orb.config_set("memory_mib", before)


def test_typed_errors_carry_orbctl_stderr(orb, orb_machine):
    with pytest.raises(MachineNotFound) as exc:
        orb.info("ghost-vm")
    assert "[-32098] machine not found: 'ghost-vm'" in exc.value.stderr
    with pytest.raises(MachineExists):
        orb.create("debian:bookworm", orb_machine)
    with pytest.raises(UnknownConfigKey, match="Unknown configuration key: bogus"):
        orb.config_set("bogus", "1")
    with pytest.raises(UnknownImage, match="image not found"):  # removed upstream (#2075, #2152)
        orb.create("ubuntu:20.04", unique("old"))
    with pytest.raises(InvalidName):
        orb.create("debian:bookworm", "under_score")
