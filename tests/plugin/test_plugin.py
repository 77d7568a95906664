"""The pytest plugin, run as users run it: inner pytest sessions (pytester, subprocesses) on
the docker backend, checked from outside against the engine itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from innerpytest import containers, run, sessions_of, start, wait_for

FAILING_DEPLOY = '''
from pyinfra.operations import server
server.shell(name="Prepare", commands=["true"])
server.shell(name="Fail on purpose", commands=["echo 'oops: the disk is full' >&2; exit 3"])
'''

DRIFTING_DEPLOY = '''
import time
from io import StringIO
from pyinfra.operations import files, server
files.put(name="Write a timestamp", src=StringIO(str(time.time())), dest="/tmp/stamp")
files.line(path="/tmp/counter", line=f"run {time.time()}")
files.directory(name="Steady directory", path="/tmp/steady")
server.shell(name="Always runs", commands=["true"])
'''


def test_keep_policies_and_prune(inner):
    inner.makepyfile(test_keep='''
        def test_passes(orbstack_machine):
            assert orbstack_machine().run("true").succeeded

        def test_fails(orbstack_machine):
            orbstack_machine()
            assert False, "on purpose"
    ''')
    never = run(inner, "--orbstack-keep=never", "--orbstack-timings=never.json")
    never.assert_outcomes(passed=1, failed=1)
    outcomes = {m["name"]: m["outcome"] for m in json.loads((inner.path / "never.json").read_text())["machines"]}
    assert sorted(outcomes.values()) == ["deleted", "deleted"]
    out = never.stdout.str()  # diagnostics attached to the failure: the journal (no unit failed)
    assert "orbstack machine: pto-" in out and "--- journal (last " in out
    assert "failed units:" not in out

    failed = run(inner, "--orbstack-keep=failed", "--orbstack-timings=failed.json")
    machines = json.loads((inner.path / "failed.json").read_text())["machines"]
    kept = [m["name"] for m in machines if m["outcome"] == "kept"]
    assert len(kept) == 1 and "test-fails" in kept[0]
    assert set(kept) <= containers()
    failed.stdout.fnmatch_lines(["kept 1 machine(s); log in with:", f"  docker exec -it {kept[0]} bash -l"])

    always = run(inner, "--orbstack-keep", "--orbstack-timings=always.json")
    kept += [m["name"] for m in json.loads((inner.path / "always.json").read_text())["machines"]]
    assert len(kept) == 3 and set(kept) <= containers()
    always.stdout.fnmatch_lines(["kept 2 machine(s); log in with:"])

    pruned = run(inner, "--orbstack-prune")
    assert pruned.ret == 0
    assert not set(kept) & containers()


def test_a_bare_keep_or_prune_flag_then_a_path_runs_only_that_path(inner, monkeypatch):
    """``--orbstack-keep tests/x.py`` is the bare flag (keep=always), then a test path, however
    the plugin is loaded and wherever the flag comes from; its own values still bind to it."""
    inner.makepyfile(test_one="def test_one(orbstack_machine):\n    orbstack_machine()\n",
                     test_two="def test_two():\n    pass\n")
    kept = run(inner, "--orbstack-keep", "test_one.py")
    kept.assert_outcomes(passed=1)  # test_two.py is not collected
    kept.stdout.fnmatch_lines(["kept 1 machine(s); log in with:"])
    pruned = run(inner, "--orbstack-prune", "test_one.py")
    assert pruned.ret == 0
    pruned.stdout.fnmatch_lines(["orbstack: pruned 1 machine(s) of this project*pto-*-test-one-*"])
    failed = run(inner, "--orbstack-keep", "failed", "test_one.py")  # a value: keep only failures
    failed.assert_outcomes(passed=1)
    assert "kept" not in failed.stdout.str()
    plugin = ["-p", "pytest_orbstack.plugin"]  # loaded by name, not by its entry point
    for autoload, how in ((True, ["-n", "2"]), (False, plugin), (False, [*plugin, "-p", "xdist", "-n", "2"])):
        with monkeypatch.context() as env:
            env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "" if autoload else "1")
            run(inner, *how, "--orbstack-keep", "test_two.py").assert_outcomes(passed=1)
    monkeypatch.setenv("PYTEST_ADDOPTS", "--orbstack-keep")  # the flag last in addopts
    run(inner, "test_two.py").assert_outcomes(passed=1)
    inner.makeini("[pytest]\norbstack_backend = docker\naddopts = --orbstack-keep\n")
    run(inner, "test_two.py").assert_outcomes(passed=1)


def test_sigkill_leaves_nothing_after_the_next_session_or_prune(inner, monkeypatch):
    inner.makepyfile(test_hang='''
        import os, time
        def test_hang(orbstack_machine):
            m = orbstack_machine()
            with open(os.environ["NAME_FILE"] + ".tmp", "w") as f:
                f.write(m.name)
            os.rename(os.environ["NAME_FILE"] + ".tmp", os.environ["NAME_FILE"])
            time.sleep(300)
    ''', test_other='''
        def test_other(orbstack_machine):
            orbstack_machine()
    ''')
    for how in ("next session", "prune"):
        name_file = inner.path / f"name-{how.replace(' ', '-')}"
        monkeypatch.setenv("NAME_FILE", str(name_file))
        proc = start(inner, "test_hang.py")
        try:
            name = wait_for(name_file)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert name in containers()  # leaked by the kill, for now
        if how == "next session":
            run(inner, "test_other.py").assert_outcomes(passed=1)
        else:
            assert run(inner, "--orbstack-prune").ret == 0
        assert name not in containers()


@pytest.mark.parametrize("sig, keep", [(signal.SIGTERM, "never"), (signal.SIGINT, "never"),
                                       (signal.SIGINT, "always")],
                         ids=["SIGTERM", "Ctrl-C", "Ctrl-C-keep"])
def test_terminating_signals_tear_down(inner, monkeypatch, sig, keep):
    inner.makepyfile(test_hang='''
        import os, time
        def test_hang(orbstack_machine):
            m = orbstack_machine()
            open(os.environ["NAME_FILE"], "w").write(m.name)
            time.sleep(300)
    ''')
    name_file = inner.path / "name"
    monkeypatch.setenv("NAME_FILE", str(name_file))
    proc = start(inner, "test_hang.py", f"--orbstack-keep={keep}")
    name = wait_for(name_file)
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "Traceback" not in out, out
    if keep == "always":
        assert name in containers(), out
        assert f"docker exec -it {name} bash -l" in out
        assert run(inner, "--orbstack-prune").ret == 0
    assert name not in containers(), out


def test_concurrent_sessions_do_not_touch_each_other(inner, monkeypatch):
    inner.makepyfile(test_pair='''
        import os, time
        def test_pair(orbstack_machine):
            m = orbstack_machine()
            open(os.environ["NAME_FILE"], "w").write(m.name)
            time.sleep(8)  # the other session starts (and prunes) meanwhile
            assert m.run("true").succeeded
            assert m.info.machine.running
    ''')
    procs = []
    for i in (1, 2):
        monkeypatch.setenv("NAME_FILE", str(inner.path / f"name{i}"))
        procs.append(start(inner, "test_pair.py"))
        time.sleep(1)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    names = {(inner.path / f"name{i}").read_text() for i in (1, 2)}
    assert len(names) == 2 and not names & containers()


def test_xdist_session_machine_is_created_once(inner, monkeypatch):
    inner.makepyfile(test_shared='''
        import os, pytest
        @pytest.mark.parametrize("i", range(6))
        def test_no_machine(i):
            pass

        @pytest.mark.parametrize("i", range(4))
        def test_uses_shared(orbstack_session_machine, i):
            m = orbstack_session_machine()
            path = os.path.join(os.environ["OUT_DIR"], f"{i}-{os.environ.get('PYTEST_XDIST_WORKER')}")
            open(path, "w").write(m.name + " " + m.info.machine.id)
    ''')
    out_dir = inner.path / "out"
    out_dir.mkdir()
    monkeypatch.setenv("OUT_DIR", str(out_dir))
    # --dist each: both workers run every test, so both surely ask for the shared machine
    result = run(inner, "-n", "2", "--dist", "each", "--orbstack-timings=t.json")
    result.assert_outcomes(passed=20)
    seen = {p.read_text() for p in out_dir.iterdir()}
    workers = {p.name.split("-", 1)[1] for p in out_dir.iterdir()}
    assert len(seen) == 1, seen
    assert workers == {"gw0", "gw1"} and len(list(out_dir.iterdir())) == 8
    records = json.loads((inner.path / "t.json").read_text())["machines"]
    shared = [r for r in records if r["kind"] == "shared"]
    assert len(shared) == 1 and shared[0]["outcome"] == "deleted" and "create" in shared[0]["phases"]


def test_failing_deploy_names_the_operation_and_its_stderr(inner):
    inner.makefile(".py", fail_deploy=FAILING_DEPLOY)
    inner.makepyfile(test_deploy='''
        def test_deploy(orbstack_machine):
            orbstack_machine(deploy="fail_deploy.py", clone=False)
    ''')
    result = run(inner)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FAILED Fail on purpose*", "*oops: the disk is full*"])
    assert "Traceback" not in result.stdout.str()


def test_non_idempotent_deploy_lists_the_operations(inner):
    """The failure names each operation as pyinfra prints it (an unnamed one with its
    arguments) and the commands it ran the second time; ``allow_changes`` exempts operations
    by name pattern; ``server.shell`` (declared non-idempotent by pyinfra) never counts."""
    inner.makefile(".py", drift_deploy=DRIFTING_DEPLOY)
    inner.makepyfile(test_drift='''
        import pytest

        def test_drift(orbstack_machine):
            orbstack_machine().apply("drift_deploy.py", check_idempotent=True)

        @pytest.mark.orbstack(deploy="drift_deploy.py", check_idempotent=True, clone=False,
                              allow_changes=["Write a timestamp", "files.line (path=/tmp/counter*"])
        def test_exempted(orbstack):
            assert len(orbstack.deploys) == 2  # converged and checked in two applies
    ''')
    result = run(inner)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*is not idempotent on pto-*: 2 operation(s) changed on the second run:",
        "*  Write a timestamp",
        "*    $ *",
        "*  files.line (path=/tmp/counter, line=run *)",
        "*    $ *",
        "*exempt an operation that must change every time with allow_changes=*",
    ])
    failure = result.stdout.str().split("is not idempotent")[1].split("exempt an operation")[0]
    assert "Always runs" not in failure and "Steady directory" not in failure


def test_marker_ini_module_machine_and_diagnostics(inner, tmp_path):
    inner.makeini("[pytest]\norbstack_backend = docker\norbstack_user = alice\n")
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nwrite_files:\n  - path: /etc/from-cloud-init\n    content: hi\n")
    inner.makepyfile(test_features=f'''
        import pytest

        def test_module_machine_is_shared_in_module(orbstack_module_machine):
            m = orbstack_module_machine()
            m.run("touch /tmp/marker-from-first-test")

        def test_module_machine_again(orbstack_module_machine):
            pass

        @pytest.mark.orbstack(cloud_init={str(user_data)!r})
        def test_marker_and_ini(orbstack):
            assert orbstack.run("id -un", user=None).stdout.strip() == "alice"
            assert orbstack.host.file("/etc/from-cloud-init").content_string.strip() == "hi"
            assert orbstack.info.machine.default_username == "alice"
            net = orbstack.network()
            assert net["ip4"] == orbstack.ip4 and net["domain"] == orbstack.domain
            status = orbstack.status()
            assert status["system"] in ("running", "degraded")
            assert orbstack.logs(lines=5)
            assert isinstance(orbstack.console_log(), str)
            assert orbstack.connectivity(orbstack.domain, method="tcp", port=1, timeout=2)["reachable"] is False
    ''')
    result = run(inner, "-v", "--orbstack-timings=t.json")
    result.assert_outcomes(passed=3)
    records = json.loads((inner.path / "t.json").read_text())["machines"]
    assert len(records) == 2, records  # one module machine for two tests, one marker machine
    result.stdout.fnmatch_lines(["orbstack: create pto-*", "orbstack: teardown pto-*"])


def test_bad_input_fails_with_one_clear_line(inner, monkeypatch):
    inner.makepyfile(test_bad='''
        def test_unknown_distro(orbstack_machine):
            orbstack_machine(image="windows:11")

        def test_image_not_available(orbstack_machine):
            orbstack_machine(image="debian:buster")

        def test_missing_deploy_file(orbstack_machine):
            orbstack_machine(deploy="no/such/deploy.py", clone=False)
    ''')
    result = run(inner)
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "pytest-orbstack: unknown image 'windows:11'" in out
    assert "pytest-orbstack: image 'debian:buster' is not available to docker" in out
    assert "pytest-orbstack: deploy file not found:" in out
    assert "Traceback" not in out and "During handling" not in out
    with monkeypatch.context() as m:
        m.setenv("PATH", "/nonexistent")
        missing = run(inner, "--orbstack-backend=orbstack", "-k", "unknown_distro")
    assert "pytest-orbstack: 'orbctl' not found on PATH" in missing.stdout.str()


def test_xdist_one_golden_for_a_callable_deploy_checked_in_the_engine(inner, tmp_path):
    """A deploy function with a comprehension and a nested function has the same identity in
    every worker: under -n 2 the engine creates exactly one golden machine."""
    inner.makeconftest('''
        def web_deploy():
            from pyinfra.operations import files
            paths = [f"/srv/{name}" for name in ("a", "b")]
            def make(path):
                files.directory(name=f"make {path}", path=path, _sudo=True)
            for path in paths:
                make(path)
    ''')
    inner.makepyfile(**{f"test_golden{i}": '''
        from conftest import web_deploy
        def test_a(orbstack_machine):
            assert orbstack_machine(deploy=web_deploy).host.file("/srv/b").is_directory
        def test_b(orbstack_machine):
            assert orbstack_machine(deploy=web_deploy).host.file("/srv/a").is_directory
    ''' for i in (1, 2)})
    since = subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout.strip()
    result = run(inner, "-n", "2")
    result.assert_outcomes(passed=4)
    until = str(int(subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout) + 1)
    events = subprocess.run(["docker", "events", "--since", since, "--until", until, "--filter", "type=container",
                             "--filter", "event=create", "--format", "{{.Actor.Attributes.name}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    prefixes = tuple(f"pto-{sid}-golden-" for sid in sessions_of(tmp_path / "state"))
    goldens = [name for name in events if name.startswith(prefixes)]
    assert len(goldens) == 1, events


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_deploy_in_the_test_body_is_reported(inner, tmp_path, workers):
    """An apply in a test body shows in the ``-v`` lines (with what changed), the machines
    table's deploy column and, per operation, in ``--orbstack-timings``."""
    inner.makefile(".py", small_deploy="from pyinfra.operations import files\n"
                   "files.directory(name='Make a folder', path='/srv/x', _sudo=True)\n")
    inner.makepyfile(test_body='''
        def test_body(orbstack_machine):
            assert orbstack_machine().apply("small_deploy.py").changed
    ''')
    timings = tmp_path / "timings.json"
    result = run(inner, "-v", f"--orbstack-timings={timings}", *workers)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*orbstack: deploy pto-*: small_deploy.py: 1 operations, 1 changed (*s)",
                                 "*orbstack:   changed: Make a folder"])
    result.stdout.re_match_lines([r"pto-\S+-test-body-test-body-0-\S+ +test +debian:bookworm +\d+\.\ds +- +\d+\.\ds"])
    (machine,) = json.loads(timings.read_text())["machines"]
    (deploy,) = machine["deploys"]
    assert deploy["deploy"] == "small_deploy.py" and deploy["success"]
    assert [(op["name"], op["changed"]) for op in deploy["operations"]] == [("Make a folder", True)]
    assert deploy["operations"][0]["duration"] > 0


FIREWALL_DEPLOY = '''
from pyinfra.operations import apt, server
apt.packages(name="nftables", packages=["nftables"], update=True, cache_time=3600, _sudo=True)
server.shell(name="drop 9999", _sudo=True, commands=[
    "nft add table inet pto", "nft add chain inet pto input '{ type filter hook input priority 0; }'",
    "nft add rule inet pto input tcp dport 9999 drop"])
'''


def test_capabilities_let_a_firewall_deploy_run(inner):
    """``capabilities=["NET_ADMIN"]`` lets nftables work on Docker (clones inherit it);
    without it the same deploy fails with the kernel's refusal."""
    inner.makefile(".py", firewall=FIREWALL_DEPLOY)
    inner.makepyfile(test_fw='''
        import pytest

        @pytest.mark.orbstack(deploy="firewall.py", capabilities=["NET_ADMIN"])
        def test_cloned_firewall_machine(orbstack):
            assert orbstack.run("nft add table inet again").rc == 0  # the clone has it too

        def test_fresh_firewall_machine(orbstack_machine):
            machine = orbstack_machine(deploy="firewall.py", capabilities=["cap_net_admin"], clone=False)
            assert "dport 9999 drop" in machine.run("nft list ruleset").stdout

        def test_without_the_capability(orbstack_machine):
            result = orbstack_machine().apply("firewall.py", check=False)
            assert [op.name for op in result.failed] == ["drop 9999"]
            assert "Operation not permitted" in result.failed[0].stderr
    ''')
    result = run(inner, "-n", "2")
    result.assert_outcomes(passed=3)


def test_junit_xml_names_each_tests_machines(inner, tmp_path):
    """``--junitxml`` carries, per test, its machines' name, image, engine and phase timings
    (under xdist too), so a CI dashboard shows which machine a failure ran on."""
    import xml.etree.ElementTree as ET
    inner.makepyfile(test_junit='''
        def test_fails(orbstack_machine):
            orbstack_machine()
            assert False

        def test_none():
            pass

        def test_group(orbstack_machines):
            orbstack_machines({"web": {}, "db": {}})
    ''')
    junit = tmp_path / "junit.xml"
    run(inner, f"--junitxml={junit}", "-n", "2").assert_outcomes(failed=1, passed=2)
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_fails"].iter("property")}
    assert props["orbstack.machine"].startswith("pto-") and "test-fails" in props["orbstack.machine"]
    assert props["orbstack.image"] == "debian:bookworm" and props["orbstack.engine"] == "docker"
    assert props["orbstack.outcome"] == "deleted"
    assert float(props["orbstack.create_seconds"]) > 0 and float(props["orbstack.teardown_seconds"]) > 0
    assert list(cases["test_none"].iter("property")) == []
    group = {p.get("name"): p.get("value") for p in cases["test_group"].iter("property")}
    for role in ("web", "db"):  # each machine of a group under its role
        assert f"-test-group-{role}-" in group[f"orbstack.{role}.machine"]
        assert group[f"orbstack.{role}.image"] == "debian:bookworm"
        assert group[f"orbstack.{role}.outcome"] == "deleted"
        assert float(group[f"orbstack.{role}.create_seconds"]) > 0
    assert not [name for name in group if name.count(".") < 2]  # no role-less name to mix them up
