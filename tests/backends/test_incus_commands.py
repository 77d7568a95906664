"""The incus argv builders and IncusCLI address a remote (``REMOTE:NAME``) and a cluster member
(``--target``); pure, no daemon. The real remote and cluster: test_incus_remote.py, test_incus_cluster.py."""

from __future__ import annotations

import pytest

from pytest_orbstack import settings
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.backends.incus.cli import IncusCLI
from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.facts import OrbStackMachine, OrbStackMachines


def test_names_and_queries_on_a_remote():
    assert cmd.at("r", "m") == "r:m" and cmd.at("", "m") == "m"
    assert cmd.info("m", "r") == ["incus", "query", "r:/1.0/instances/m?recursion=1"]
    assert cmd.info("m") == ["incus", "query", "/1.0/instances/m?recursion=1"]
    assert cmd.list_machines("r") == ["incus", "list", "r:", "--format", "json", "user.pytest-orbstack=1"]
    assert cmd.list_machines() == ["incus", "list", "--format", "json", "user.pytest-orbstack=1"]
    assert cmd.storage_driver("default", "r")[-1] == "r:/1.0/storage-pools/default"


def test_target_pins_launch_and_copy_to_a_member():
    assert cmd.launch("r:m", "r:img", {})[-2:] == ["r:img", "r:m"]
    assert cmd.launch("r:m", "r:img", {}, target="m2")[-2:] == ["--target", "m2"]
    assert cmd.copy("r:g", "r:c", {}, "snap", "m1") == ["incus", "copy", "r:g/snap", "r:c", "--target", "m1"]


def test_the_backend_reads_remote_and_target_from_its_environment():
    backend = IncusBackend(env={"PYTEST_ORBSTACK_INCUS_REMOTE": "r", "PYTEST_ORBSTACK_INCUS_TARGET": "m2"})
    assert (backend.cli.remote, backend.cli.target) == ("r", "m2")
    assert backend.exec_argv("mm", "true", user="root")[:4] == ["incus", "exec", "-T", "r:mm"]
    assert backend.login_command("mm") == "incus exec r:mm -- bash -l"
    assert backend.env is not None and backend.env["PYTEST_ORBSTACK_INCUS_REMOTE"] == "r"
    assert (IncusCLI(remote="").remote, IncusCLI(target="").target) == ("", None)


def test_facts_ask_the_remote(monkeypatch):
    monkeypatch.setenv("PYTEST_ORBSTACK_INCUS_REMOTE", "r")
    assert "incus list r: --format json" in OrbStackMachines().command(engine="incus")
    assert "incus query 'r:/1.0/instances/mm?recursion=1'" in OrbStackMachine().command("mm", engine="incus")


@pytest.mark.parametrize("value", ["r:", "https://x:8443", "-r", "a b"])
def test_a_bad_remote_or_member_name_is_one_line(monkeypatch, value):
    monkeypatch.setenv("PYTEST_ORBSTACK_INCUS_REMOTE", value)
    with pytest.raises(InvalidInput, match=r"^PYTEST_ORBSTACK_INCUS_REMOTE=.*expected the name of an Incus remote"):
        settings.incus_remote()
    monkeypatch.setenv("PYTEST_ORBSTACK_INCUS_TARGET", value)
    with pytest.raises(InvalidInput, match=r"^PYTEST_ORBSTACK_INCUS_TARGET="):
        settings.incus_target()
