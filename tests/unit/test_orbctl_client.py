"""The OrbStack client builds the documented argv and parses the documented outputs.

A recorder stands in for subprocess.run so each test states exactly which command the client
sends and what orbctl answered (samples from shared/orbstack-cli-facts.md).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from pytest_orbstack import orbctl as orbctl_mod
from pytest_orbstack.errors import (
    CommandTimeout,
    EngineUnavailable,
    InvalidName,
    MachineExists,
    MachineNotFound,
    UnknownConfigKey,
    UnknownImage,
)
from pytest_orbstack.orbctl import Orbctl, parse_config, parse_config_value, parse_info

LIST_ITEM = {"id": "01K2G8TY5GM9C3CN95KCB4ZG8B", "name": "web",
             "image": {"distro": "ubuntu", "version": "jammy", "arch": "arm64", "variant": "default"},
             "config": {"isolated": False, "default_username": "ubuntu"},
             "builtin": False, "state": "running"}
INFO_NEW = {"record": LIST_ITEM, "disk_size": 962924544, "ip4": "192.168.139.76",
            "ip6": "fd07:b51a:cc66:0:b476:dbff:fe73:161e"}


class Recorder:
    def __init__(self, monkeypatch):
        self.calls: list[list[str]] = []
        self.answers: list[tuple[int, str, str]] = []
        monkeypatch.setattr(orbctl_mod.subprocess, "run", self)

    def answer(self, rc=0, stdout="", stderr=""):
        self.answers.append((rc, stdout, stderr))
        return self

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        rc, out, err = self.answers.pop(0) if self.answers else (0, "", "")
        if isinstance(rc, BaseException):
            raise rc
        return subprocess.CompletedProcess(argv, rc, out.encode(), err.encode())


@pytest.fixture
def rec(monkeypatch):
    return Recorder(monkeypatch)


def test_list_parses_items_and_sends_json_flag(rec):
    rec.answer(stdout=json.dumps([LIST_ITEM]))
    machines = Orbctl().list()
    assert rec.calls == [["orbctl", "list", "-f", "json"]]
    assert machines[0].name == "web" and machines[0].running
    assert machines[0].image.version == "jammy" and machines[0].default_username == "ubuntu"


def test_list_of_nothing_is_empty(rec):
    rec.answer(stdout="[]\n")
    assert Orbctl().list() == []


def test_info_parses_new_shape():
    info = parse_info(INFO_NEW)
    assert (info.name, info.ip4, info.disk_size) == ("web", "192.168.139.76", 962924544)
    assert info.ip6.startswith("fd07:") and info.domain == "web.orb.local"


def test_info_parses_old_flat_shape_without_addresses():
    flat = {**LIST_ITEM, "state": "stopped"}
    info = parse_info(flat)
    assert info.name == "web" and info.ip4 is None and info.disk_size is None
    assert info.machine.state == "stopped"


def test_create_sends_flags_before_image_then_name(rec, tmp_path):
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\n")
    rec.answer().answer(stdout=json.dumps(INFO_NEW))
    Orbctl().create("ubuntu:24.04", "web", arch="arm64", user="deploy", user_data=user_data)
    assert rec.calls[0] == ["orbctl", "create", "-a", "arm64", "-u", "deploy", "-c",
                            str(user_data), "ubuntu:24.04", "web"]
    assert rec.calls[1] == ["orbctl", "info", "web", "-f", "json"]


def test_create_retries_once_a_transient_start_failure_that_left_nothing(rec):
    transient = "[-32098] create 'web': setup: machine didn't start in 30s (missing IP address)"
    rec.answer(1, "", transient).answer(1, "", "[-32098] machine not found: 'web'")
    rec.answer().answer(stdout=json.dumps(INFO_NEW))
    assert Orbctl().create("debian", "web").name == "web"
    assert [c[1] for c in rec.calls] == ["create", "info", "create", "info"]


def test_create_that_hangs_after_succeeding_is_accepted(rec):
    rec.answer(subprocess.TimeoutExpired(["orbctl"], 5)).answer(stdout=json.dumps(INFO_NEW))
    rec.answer(stdout=json.dumps(INFO_NEW))
    assert Orbctl().create("ubuntu", "web", timeout=5).ip4 == "192.168.139.76"


def test_errors_become_typed_with_stderr(rec):
    rec.answer(1, "", "[-32098] machine not found: 'nope'")
    with pytest.raises(MachineNotFound) as exc:
        Orbctl().info("nope")
    assert "machine not found: 'nope'" in str(exc.value) and exc.value.stderr
    rec.answer(1, "", "[-32098] create 'web': machine already exists: 'web'")
    with pytest.raises(MachineExists):
        Orbctl().create("debian:bookworm", "web")
    rec.answer(1, "", "Unknown configuration key: nope")
    with pytest.raises(UnknownConfigKey, match="Unknown configuration key: nope"):
        Orbctl().config_set("nope", "1")


@pytest.mark.parametrize("bad", ["", "a", "_web", "web_1", "has space", "docker", "Default",
                                 "-web", "x" * 64, "wéb"])
def test_bad_names_are_refused_before_any_call(rec, bad):
    with pytest.raises(InvalidName, match="invalid machine name"):
        Orbctl().create("debian", bad)
    assert rec.calls == []


def test_unknown_distro_is_refused_before_any_call(rec):
    with pytest.raises(UnknownImage, match="unknown image 'windows:11'"):
        Orbctl().create("windows:11", "web")
    assert rec.calls == []


def test_delete_is_by_name_and_forced(rec):
    Orbctl().delete("a1")
    assert rec.calls == [["orbctl", "delete", "-f", "a1"]]


def test_builtin_records_are_never_listed(rec):
    rec.answer(stdout=json.dumps([LIST_ITEM, {**LIST_ITEM, "name": "docker", "builtin": True}]))
    assert [m.name for m in Orbctl().list()] == ["web"]


def test_a_custom_binary_runs_the_builders_argv(rec):
    Orbctl("/opt/orb/bin/orbctl").stop("web")
    assert rec.calls == [["/opt/orb/bin/orbctl", "stop", "web"]]


def test_missing_binary_is_engine_unavailable(rec):
    rec.answer(FileNotFoundError("orbctl"))
    with pytest.raises(EngineUnavailable, match="not found on PATH"):
        Orbctl().list()


def test_timeout_is_typed(rec):
    rec.answer(subprocess.TimeoutExpired(["orbctl"], 3))
    with pytest.raises(CommandTimeout, match="did not finish"):
        Orbctl().start("web")


def test_config_show_and_both_get_forms(rec):
    rec.answer(stdout="cpu: 8\nmemory_mib: 8192\nnetwork.subnet4: 192.168.138.0/23\n")
    assert Orbctl().config_show()["network.subnet4"] == "192.168.138.0/23"
    assert parse_config("a: b\nbad line\n") == {"a": "b"}
    assert parse_config_value("memory_mib", "8192\n") == "8192"
    assert parse_config_value("memory_mib", "memory_mib: 8192\n") == "8192"


def test_version_parses(rec):
    rec.answer(stdout="Version: 2.2.3 (2020300)\nCommit: abc\n")
    assert Orbctl().version() == "2.2.3"


def test_run_argv_wraps_in_sh_c_with_flags_first():
    argv = Orbctl().run_argv("web", "echo 'it''s'", user="root", workdir="/tmp")
    assert argv == ["orbctl", "run", "-m", "web", "-u", "root", "-w", "/tmp", "sh", "-c",
                    "echo 'it''s'"]
