"""The OrbStack client builds the documented argv and parses the documented outputs.

A recorder stands in for subprocess.run so each test states exactly which command the client
sends and what orbctl answered. Answers recorded from real OrbStack, with their sources, are
replayed by tests/contracts/test_client_contracts.py; the samples here exercise the logic.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from pytest_orbstack.backends.orbstack import client as orbctl_mod
from pytest_orbstack.backends.orbstack.backend import OrbStackBackend
from pytest_orbstack.backends.orbstack.client import Orbctl, parse_config, parse_config_value, parse_info
from pytest_orbstack.errors import (
    CommandTimeout,
    EngineUnavailable,
    InvalidName,
    MachineError,
    MachineExists,
    MachineNotFound,
    UnknownConfigKey,
    UnknownImage,
)

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
    monkeypatch.setattr(orbctl_mod, "_VERSIONS", {})
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
                                 "-web", "x" * 65, "wéb"])
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
    assert argv == ["orbctl", "run", "-m", "web", "-u", "root", "-w", "/", "sh", "-c",
                    "cd /tmp || exit 126; echo 'it''s'"]  # a missing -w directory would be /


def test_every_run_names_a_linux_directory_home_by_default():
    """Without -w orbctl run starts in the Mac's current directory (OrbStack #1661)."""
    argv = Orbctl().run_argv("web", "touch x")
    assert argv == ["orbctl", "run", "-m", "web", "-w", "/", "sh", "-c", "cd ~ 2>/dev/null; touch x"]


def test_clone_needs_orbstack_2_and_the_version_is_asked_once(rec):
    rec.answer(stdout="Version: 1.7.2 (1070200)\nCommit: abc (v1.7.2)\n")
    with pytest.raises(EngineUnavailable, match=r"clone needs OrbStack 2\.0\.0 or newer, this one is 1\.7\.2"):
        Orbctl().clone("golden", "copy")
    with pytest.raises(EngineUnavailable):
        Orbctl().clone("golden", "copy")
    assert rec.calls == [["orbctl", "version"]]


def test_clone_on_a_new_orbstack_runs(rec):
    rec.answer(stdout="Version: 2.2.3 (2020300)\n").answer()
    Orbctl().clone("golden", "copy")
    assert rec.calls == [["orbctl", "version"], ["orbctl", "clone", "golden", "copy"]]
    assert Orbctl().supports("resources") and len(rec.calls) == 2


@pytest.mark.parametrize("stderr, cls, hint", [
    ("[-32098] create 'w': make rootfs: download metadata: GET download status: 404 Not Found",
     EngineUnavailable, "could not download"),
    ("[-32098] create 'w': setup: machine crashed on startup", MachineError, "crashed while booting"),
    ("[-32098] create 'w': make rootfs: image not found: {nixos 25.05 arm64 default}", UnknownImage,
     "no such image"),
])
def test_known_failure_texts_are_classified_and_explained(stderr, cls, hint):
    error = orbctl_mod.classify(["orbctl", "create", "debian", "w"], 1, stderr)
    assert type(error) is cls and hint in str(error) and str(error).startswith("orbctl create: [-32098]")


def test_backend_refuses_distros_without_systemd_before_any_call(rec):
    with pytest.raises(UnknownImage, match="alpine machines run OpenRC or runit"):
        OrbStackBackend().create("a1", "alpine:3.20")
    assert rec.calls == []


def test_backend_reports_a_provisioning_machine_that_answers_as_running(rec):
    provisioning = {**INFO_NEW, "record": {**LIST_ITEM, "state": "provisioning"}}
    rec.answer(stdout=json.dumps(provisioning)).answer(0)
    assert OrbStackBackend().info("web").machine.running
    assert rec.calls[1][:5] == ["orbctl", "run", "-m", "web", "-u"]
    rec.answer(stdout=json.dumps(provisioning)).answer(1)
    assert OrbStackBackend().info("web").machine.state == "provisioning"


def test_backend_uploads_over_stdin_never_push(monkeypatch):
    sent = []
    monkeypatch.setattr(orbctl_mod.subprocess, "run", lambda argv, **kw: sent.append((argv, kw))
                        or subprocess.CompletedProcess(argv, 0, b"", b""))
    OrbStackBackend().put("web", b"data", "/etc/motd", user="root")
    (argv, kwargs), = sent
    assert argv[:2] == ["orbctl", "run"] and "push" not in argv and kwargs["input"] == b"data"
    assert argv[-1] == "cd ~ 2>/dev/null; cat > /etc/motd"


def test_logs_error_printed_on_stdout_with_exit_0_is_raised(rec):
    """OrbStack's logs prints its error on stdout and exits 0 (SRC cmd/logs.go)."""
    rec.answer(stdout="[-32098] machine not found: 'web'\n")
    with pytest.raises(MachineNotFound, match="machine not found: 'web'"):
        Orbctl().logs("web")
    rec.answer(stdout="[  OK  ] Started systemd-journald.service\n[-32098] in a log line\n")
    assert Orbctl().logs("web").startswith("[  OK  ]")


def test_resource_limits_need_orbstack_2_2_0(rec):
    """#789: per-machine limits were released in 2.2.0."""
    rec.answer(stdout="Version: 2.2.0 (2020000)\n")
    assert Orbctl().supports("resources")
    orbctl_mod._VERSIONS.clear()
    rec.answer(stdout="Version: 2.1.3 (2010300)\n")
    assert not Orbctl().supports("resources")
