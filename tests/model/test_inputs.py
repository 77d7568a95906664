"""The one validation of machine inputs, the deploy identity and the report helpers: pure
functions, no engine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_orbstack.errors import InvalidInput, UnknownImage
from pytest_orbstack.facts import MachineStatus
from pytest_orbstack.machines.diagnostics import diagnostics_text
from pytest_orbstack.model.inputs import (
    check_cloud_init,
    check_deploy,
    check_user,
    image_codename,
    parse_image,
    resolve_path,
    search_dirs,
)
from pytest_orbstack.model.names import slug_name
from pytest_orbstack.model.results import DeployResult, OperationResult


def test_images_known_distros_and_releases():
    assert parse_image("debian:bookworm") == ("debian", "bookworm")
    assert parse_image("ubuntu") == ("ubuntu", None)
    assert image_codename("ubuntu:24.04") == ("ubuntu", "noble")
    assert image_codename("debian:13") == ("debian", "trixie")
    assert image_codename("debian") == ("debian", "bookworm")
    with pytest.raises(UnknownImage, match=r"unknown ubuntu version '99\.99' .* 24\.04 \(noble\)"):
        parse_image("ubuntu:99.99")
    with pytest.raises(UnknownImage, match="unknown image 'windows:11': OrbStack distros are"):
        parse_image("windows:11")
    assert isinstance(UnknownImage("x"), ValueError)


def test_users():
    assert check_user(None) is None and check_user("root") == "root" and check_user("deploy") == "deploy"
    for bad in ("Bad User", "9lives", "x" * 40, ""):
        with pytest.raises(InvalidInput, match="invalid user name"):
            check_user(bad)


def test_relative_paths_test_folder_first_then_rootdir(tmp_path, monkeypatch):
    test_dir, root = tmp_path / "tests" / "web", tmp_path
    test_dir.mkdir(parents=True)
    (root / "deploy.py").write_text("x = 1\n")
    dirs = search_dirs(test_dir, root, root)
    assert dirs == [test_dir, root]
    assert resolve_path("deploy.py", "deploy file", dirs) == root / "deploy.py"
    (test_dir / "deploy.py").write_text("x = 2\n")
    assert resolve_path("deploy.py", "deploy file", dirs) == test_dir / "deploy.py"
    with pytest.raises(InvalidInput, match=r"cloud-init user-data file not found: u\.yaml \(looked for "
                                           rf"{test_dir}/u\.yaml or {root}/u\.yaml\)"):
        check_cloud_init("u.yaml", dirs)
    with pytest.raises(InvalidInput, match=r"^deploy file not found: 'deploy.py ' \(looked for "):
        resolve_path("deploy.py ", "deploy file", dirs)  # a stray space is shown
    monkeypatch.chdir(test_dir)
    assert check_deploy("deploy.py") == str(test_dir / "deploy.py")  # outside pytest: the cwd


def test_deploy_files_must_compile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text("from pyinfra.operations import server\nserver.shell(\n")
    with pytest.raises(InvalidInput, match=r"^bad\.py:2: SyntaxError in deploy: "):
        check_deploy("bad.py")
    with pytest.raises(InvalidInput, match=r"use a deploy file path, a module\.function name or a callable"):
        check_deploy(42)  # type: ignore[arg-type]
    assert check_deploy(print) is print


def test_machine_names_keep_the_readable_start():
    name = slug_name("pto-ab12cd34", "tests/plugin/test_case2.py::test_a_rather_long_test_name[param]#0")
    assert name.startswith("pto-ab12cd34-test-case2-test-a-rather-long-test-")
    assert len(name) <= 63


def test_callable_keys_are_the_same_in_every_process(tmp_path):
    (tmp_path / "mydeploy.py").write_text(textwrap.dedent('''
        SETTINGS = {"port": 8080}
        def deploy():
            names = [p for p in ("a", "b")]
            def inner():
                return {k: v for k, v in SETTINGS.items()}
            return names, inner
        def make(port):
            def closure():
                return port
            return closure
    '''))
    script = ("import mydeploy; from pytest_orbstack.machines.shared import callable_key as k; "
              "print(k(mydeploy.deploy), k(mydeploy.make(1)), k(mydeploy.make(2)))")
    runs = {subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout for _ in range(3)}
    assert len(runs) == 1, runs  # stable across processes (comprehensions, nested functions)
    plain, one, two = runs.pop().split()
    assert plain.startswith("mydeploy.deploy:") and one != two  # closures over other values differ


def test_status_uses_the_machines_own_numbers():
    output = ["system=running", "failed=nginx.service", "uptime=42", "load=3",
              "host_load=5.1 4.0 3.2", "meminfo_total_kib=24000000", "meminfo_available_kib=20000000",
              "cgroup_used=104857600", "cgroup_limit=9223372036854771712", "disk_total_kib=100",
              "disk_used_kib=50", "os=Debian GNU/Linux 12 (bookworm)", "kernel=6.1", "arch=x86_64"]
    status = MachineStatus().process(output)
    assert status["uptime_seconds"] == 42 and status["load"] == 3 and status["host_load"] == [5.1, 4.0, 3.2]
    assert status["mem_used_kib"] == 102400 and status["memory_source"] == "cgroup"
    assert status["mem_total_kib"] == 24000000  # no limit: the kernel's total
    assert status["failed_units"] == ["nginx.service"]
    limited = MachineStatus().process([*output[:7], "cgroup_used=1048576", "cgroup_limit=536870912"])
    assert limited["mem_total_kib"] == 524288 and limited["mem_available_kib"] == 524288 - 1024


def _journal(*entries: tuple[str, str, str]) -> str:
    """``journalctl -o json`` lines of (identifier, priority, message), one second apart."""
    return "\n".join(json.dumps({"__REALTIME_TIMESTAMP": str((1796463000 + i) * 10**6), "SYSLOG_IDENTIFIER": ident,
                                 "_PID": "1", "PRIORITY": prio, "MESSAGE": message})
                      for i, (ident, prio, message) in enumerate(entries))


BOOT = [("systemd-journald", "6", "Journal started"), ("systemd", "6", "Reached target sysinit.target"),
        ("dbus-daemon", "4", "Failed to set fd limit to 65536: Operation not permitted"),  # noise: dropped
        ("systemd-resolved", "4", "Failed to read /etc/hosts"),
        ("systemd", "6", "Startup finished in 186ms.")]


def test_diagnostics_drop_boot_start_up_and_sudo_noise_and_keep_the_rest():
    journal = _journal(*BOOT,  # the golden machine's boot, then its deploy
                       ("sudo", "5", "dev : PWD=/home/dev ; USER=root ; COMMAND=/bin/sh -c true"),
                       ("sudo", "6", "pam_unix(sudo:session): session opened for user root"),
                       ("systemd-logind", "6", "New session 4 of user dev."),
                       ("systemd", "6", "Started nginx.service - A web server."),
                       *BOOT,  # a clone's own boot
                       ("nginx", "3", "bind() to 0.0.0.0:80 failed (98: Address already in use)"),
                       ("logger", "6", "binary \u00e9"))
    output = f"failed units: nginx.service\n--- journal of nginx.service\nt m nginx[9]: failed\n--- journal\n{journal}"
    report = diagnostics_text(output)
    head, title, *lines = report.split("\n--- journal (")[0], *report.split("\n--- journal (")[1].splitlines()
    assert head == "failed units: nginx.service\n--- journal of nginx.service\nt m nginx[9]: failed"
    assert title == "last 5 lines; boot start-up, sudo and session lines left out)"
    warning = "systemd-resolved[1]: Failed to read /etc/hosts"
    assert lines == [f"2026-12-05T09:30:03+0000 {warning}",  # a warning of the boot stays, dbus's noise not
                     "2026-12-05T09:30:08+0000 systemd[1]: Started nginx.service - A web server.",
                     f"2026-12-05T09:30:12+0000 {warning}",
                     "2026-12-05T09:30:14+0000 nginx[1]: bind() to 0.0.0.0:80 failed (98: Address already in use)",
                     "2026-12-05T09:30:15+0000 logger[1]: binary \u00e9"]
    no_failures = diagnostics_text(f"--- journal\n{_journal(*BOOT)}")
    assert no_failures.startswith("--- journal (last 1 lines") and "failed units" not in no_failures


def test_the_summary_line_of_apt_is_its_error_not_the_warnings_after_it():
    op = OperationResult("Update apt", changed=False, success=False, commands=["apt-get update"], stderr=(
        "E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)\n"
        "E: Unable to lock directory /var/lib/apt/lists/\n"
        "W: Problem unlinking the file /var/cache/apt/pkgcache.bin - RemoveCaches (13: Permission denied)\n"))
    assert op.last_error_line() == "E: Unable to lock directory /var/lib/apt/lists/"
    warned = OperationResult("x", False, False, stderr="Reading package lists...\nno such user\nN: a notice\n")
    assert warned.last_error_line() == "no such user"  # not a notice either
    assert OperationResult("x", False, False, stdout="W: only warnings\n").last_error_line() == "W: only warnings"


def test_deploy_headline_names_the_cause():
    op = OperationResult("Install nginx", changed=False, success=False, commands=["apt-get install nginx"],
                         stderr="E: Could not open lock file - Permission denied\n")
    result = DeployResult("deploy.py", [op])
    assert result.headline() == ("deploy deploy.py failed: operation 'Install nginx': "
                                 "E: Could not open lock file - Permission denied")
    assert "_sudo=True" in result.summary()  # the hint for the most common first mistake


def test_a_machine_dying_at_boot_names_the_inotify_limit_when_it_is_used_up(tmp_path, monkeypatch):
    from pytest_orbstack.backends.docker import host_limits
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    monkeypatch.setattr(host_limits, "LIMIT", limit)
    monkeypatch.setattr(host_limits, "inotify_in_use", lambda: 126)
    hint = host_limits.boot_failure_hint(None)
    assert "fs.inotify.max_user_instances = 128, 126 in use" in hint and "sysctl -w" in hint
    assert host_limits.boot_failure_hint("tcp://build-host:2376") == ""  # not this host's limit
    monkeypatch.setattr(host_limits, "inotify_in_use", lambda: 40)
    assert host_limits.boot_failure_hint(None) == ""  # plenty left: not the cause


def test_the_inotify_counter_counts_this_process_instances():
    import ctypes

    from pytest_orbstack.backends.docker.host_limits import inotify_in_use
    libc = ctypes.CDLL(None)
    before = inotify_in_use()
    fd = libc.inotify_init()
    try:
        assert fd >= 0 and inotify_in_use() >= before + 1
    finally:
        import os
        os.close(fd)


def test_a_full_engine_disk_is_named():
    import subprocess

    from pytest_orbstack.backends.docker.cli import DockerCLI
    proc = subprocess.CompletedProcess(["docker", "run", "-d", "x"], 125, "",
                                       "docker: Error response from daemon: mkdir /var/lib/docker/overlay2/"
                                       "abc-init: no space left on device.\n")
    error = DockerCLI().error(proc)
    assert str(error).startswith("docker run: the docker engine's disk is full (no space left on device)")


def test_a_refusal_is_named_by_its_reason_not_by_the_help_pointer_after_it():
    """docker ends a daemon's refusal with "Run 'docker run --help' ...": the error line is the
    refusal (as seen when the host's docker0 bridge was gone)."""
    import subprocess

    from pytest_orbstack.backends.docker.cli import DockerCLI
    proc = subprocess.CompletedProcess(["docker", "run", "-d", "x"], 125, "",
                                       "docker: Error response from daemon: failed to create endpoint x on network "
                                       "bridge: could not find bridge docker0.\n\nRun 'docker run --help' for more "
                                       "information\n")
    assert str(DockerCLI().error(proc)) == ("docker run: docker: Error response from daemon: failed to create "
                                           "endpoint x on network bridge: could not find bridge docker0.")


def test_a_command_without_a_timeout_runs_to_its_end():
    """``timeout=None`` (pyinfra's ``_timeout`` unset) means no limit, with or without stdin:
    not a huge number, which poll() refuses ("timeout is too large")."""
    from pytest_orbstack.backends.process import run
    assert run(["true"], timeout=None).returncode == 0
    assert run(["cat"], timeout=None, input=b"stdin").stdout == b"stdin"


def test_engine_timeout_is_one_setting(monkeypatch):
    from pytest_orbstack.settings import call_timeout
    assert call_timeout() == 120
    monkeypatch.setenv("PYTEST_ORBSTACK_ENGINE_TIMEOUT", "7.5")
    assert call_timeout() == 7.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("PYTEST_ORBSTACK_ENGINE_TIMEOUT", bad)
        with pytest.raises(InvalidInput, match=f"PYTEST_ORBSTACK_ENGINE_TIMEOUT='{bad}': expected a number"):
            call_timeout()


def test_a_deploy_functions_folder_is_where_the_cli_would_run_it(tmp_path, monkeypatch):
    """``pyinfra INV tasks.web.install`` runs from the folder ``tasks`` is imported from, also
    for a function wrapped by pyinfra's ``@deploy`` (whose wrapper lives in pyinfra/api)."""
    from pyinfra.operations import server

    from pytest_orbstack.model.deploy_refs import function_folder, resolve_function

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "fold_web.py").write_text(
        "from pyinfra.api import deploy\n\n@deploy()\ndef install():\n    pass\n")
    install = resolve_function("tasks.fold_web.install", [tmp_path])
    assert function_folder(install) == tmp_path.resolve()
    assert install.__module__ == "tasks.fold_web" and str(tmp_path) not in sys.path
    monkeypatch.chdir(tmp_path / "tasks")
    assert function_folder(server.shell) == tmp_path / "tasks"  # an installed one: the cwd
    assert function_folder(lambda: None) == Path(__file__).parent  # a test module's: its folder
    sys.modules.pop("tasks.fold_web"), sys.modules.pop("tasks")


def test_a_groups_results_have_no_truth_value():
    """``assert group.apply(..., check=False)`` passed on failed deploys (red team 2, finding 11)."""
    from pytest_orbstack.model.results import GroupResults
    failed = DeployResult("deploy.py", [OperationResult("x", changed=False, success=False)])
    results = GroupResults(web=failed, db=failed)
    with pytest.raises(TypeError, match=r"assert all\(r.success for r in results.values\(\)\)"):
        assert results
    assert not any(r.success for r in results.values()) and list(results) == ["web", "db"]
