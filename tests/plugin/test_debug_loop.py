"""The debug loop: keep the machine of a failing test, see it with ``--orbstack-list``, fix the
deploy, rerun with ``--orbstack-reuse``: the kept machine is used (nothing is created), the fixed
deploy is applied to it, the test passes; ``--orbstack-prune`` ends it (the first loop on docker,
podman and incus; the second on docker)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from incusenv import instances
from innerpytest import run, sessions_of

DEPLOY = "from pyinfra.operations import files\nfiles.line(name='motd', path='/etc/motd', line='{}', _sudo=True)\n"
MOTD_TEST = '''
    import pytest

    @pytest.mark.orbstack(deploy="deploy.py")
    def test_motd(orbstack):
        assert "version 2" in orbstack.host.file("/etc/motd").content_string
'''


LOGIN = {"docker": "docker exec -it {} bash -l", "podman": "podman exec -it {} bash -l",
         "incus": "incus exec {} -- bash -l"}  # the login line each engine's kept machine shows


@contextlib.contextmanager
def creations(engine: str) -> Iterator[list[str]]:
    """A list that holds, once the block ends, the names of the machines ``engine`` announced
    created during it (docker, podman: their events; incus: incusd's lifecycle monitor)."""
    created: list[str] = []
    if engine == "incus":
        monitor = subprocess.Popen(["incus", "monitor", "--type=lifecycle", "-f", "json"], stdout=subprocess.PIPE,
                                   text=True)
        try:
            time.sleep(0.5)  # (the monitor is subscribed)
            yield created
        finally:
            monitor.terminate()
        events = [json.loads(line)["metadata"] for line in monitor.communicate()[0].splitlines() if line.strip()]
        created += [e["name"] for e in events if e.get("action") == "instance-created"]
        return
    since = int(time.time())
    yield created
    name = "{{.Name}}" if engine == "podman" else "{{.Actor.Attributes.name}}"
    out = subprocess.run([engine, "events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter",
                          "type=container", "--filter", "event=create", "--format", name],
                         capture_output=True, text=True, check=True)
    created += out.stdout.split()


def image_session(tool: str, image: str) -> str:
    return subprocess.run([tool, "image", "inspect", "-f", '{{index .Config.Labels "pytest-orbstack.session"}}',
                           image], capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("engine", ["docker", "podman", "incus"])
def test_keep_fix_reuse(engine_inner, engine, tmp_path):
    inner = engine_inner
    inner.makefile(".py", deploy=DEPLOY.format("version 1"))
    inner.makepyfile(test_motd=MOTD_TEST)
    first = run(inner, "--orbstack-keep=failed")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["kept 1 machine(s); log in with:", "  " + LOGIN[engine].format("pto-*"),
                                "rerun the tests on them: pytest --orbstack-reuse *-p no:cacheprovider"])
    kept = first.stdout.str().split(LOGIN[engine].split("{}")[0])[1].split()[0]

    listed = run(inner, "--orbstack-list")
    listed.stdout.fnmatch_lines([f"{kept} *debian:bookworm *test_motd.py::test_motd#0",
                                 "* " + LOGIN[engine].format(kept)])

    inner.makefile(".py", deploy=DEPLOY.format("version 2"))  # the fix
    with creations(engine) as created:
        second = run(inner, "--orbstack-reuse", "-v")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines([f"orbstack: reusing kept {kept} (debian:bookworm)",
                                 f"orbstack: deploy {kept}: deploy.py: 1 operations, 1 changed*"])
    second.stdout.fnmatch_lines(["1 test machine(s) reused (--orbstack-reuse): not a clean run; "
                                 "rerun without it before trusting a pass"])
    reuse_session = sessions_of(tmp_path / "state")[-1]
    assert not [n for n in created if n.startswith(f"pto-{reuse_session}")], created  # no machine, no golden

    run(inner, "--orbstack-list").stdout.fnmatch_lines([f"{kept} *test_motd.py::test_motd#0"])
    pruned = run(inner, "--orbstack-prune")
    pruned.stdout.fnmatch_lines([f"orbstack: pruned 1 machine(s) of this project*{kept}*"])
    run(inner, "--orbstack-list").stdout.fnmatch_lines(["orbstack: no kept machines in this project*"])
    sessions = set(sessions_of(tmp_path / "state"))
    assert len(sessions) == 2  # --orbstack-list and --orbstack-prune open none
    if engine == "incus":
        assert kept not in instances()
        return
    images = subprocess.run([engine, "images", "-q", "--filter", "label=pytest-orbstack.session"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not [i for i in images if image_session(engine, i) in sessions]  # the golden's snapshot went too


def test_list_ages_from_creation_and_skips_machines_gone_and_names_shared_machines_plainly(inner):
    """``--orbstack-list`` shows a machine's age since it was made (not since a reuse kept it
    again), leaves out a kept machine deleted from outside (``--orbstack-reuse`` makes a new
    one for its test), and names golden and session machines in words, as timings do."""
    inner.makefile(".py", deploy=DEPLOY.format("hello"))
    inner.makepyfile(test_age='''
        import pytest

        @pytest.mark.orbstack(deploy="deploy.py")
        def test_clone(orbstack):
            assert orbstack.host.file("/etc/motd").contains("hello")

        def test_plain(orbstack_machine):
            orbstack_machine()

        def test_shared(orbstack_session_machine):
            orbstack_session_machine(deploy="deploy.py")
    ''')
    first = run(inner, "--orbstack-keep", "--orbstack-timings=first.json")
    first.assert_outcomes(passed=3)
    records = json.loads((inner.path / "first.json").read_text())["machines"]
    shown = {r["kind"]: r["test"] for r in records}
    assert shown["golden"] == "golden machine of debian:bookworm with deploy deploy.py"
    assert shown["shared"] == "session machine of debian:bookworm with deploy deploy.py"
    assert "Resources(" not in json.dumps(records) and "('" not in json.dumps(records)
    plain = next(r["name"] for r in records if r["test"].endswith("test_plain#0"))
    time.sleep(4)
    run(inner, "--orbstack-reuse", "-k", "test_clone").assert_outcomes(passed=1, deselected=2)
    subprocess.run(["docker", "rm", "-f", plain], capture_output=True, check=True)

    listed = run(inner, "--orbstack-list").stdout.str()
    assert plain not in listed
    lines = {line.split()[0]: line.split() for line in listed.splitlines()[1:] if line.startswith("pto-")}
    assert len(lines) == 2  # the clone and the session machine
    clone = next(words for words in lines.values() if words[-1].endswith("test_clone#0"))
    assert clone[1].endswith("s") and int(clone[1][:-1]) >= 4  # made 4 s before it was kept again
    assert any("session machine of debian:bookworm" in " ".join(w) for w in lines.values())

    again = run(inner, "--orbstack-reuse", "-v", "-k", "test_plain")
    again.assert_outcomes(passed=1, deselected=2)
    assert "reusing kept" not in again.stdout.str()  # its machine is gone: a new one
    run(inner, "--orbstack-prune").stdout.fnmatch_lines(["orbstack: pruned 3 machine(s) of this project*"])


def test_reuse_makes_a_new_machine_for_a_test_that_now_asks_for_another(inner):
    """A kept machine is reused only by a test asking for the same machine (image, user,
    resources, cloud-init): a marker changed since gets a new machine, saying why."""
    test = '''
        import pytest

        @pytest.mark.orbstack(user="{}")
        def test_who(orbstack):
            assert orbstack.run("id -un", user=None).stdout.strip() == "{}"
    '''
    inner.makepyfile(test_who=test.format("alice", "alice"))
    first = run(inner, "--orbstack-keep")
    first.assert_outcomes(passed=1)
    kept = first.stdout.str().split("docker exec -it ")[1].split()[0]
    inner.makepyfile(test_who=test.format("bob", "bob"))
    second = run(inner, "--orbstack-reuse", "-v")
    second.assert_outcomes(passed=1)  # on a new machine: the kept one's default user is alice
    second.stdout.fnmatch_lines([f"orbstack: not reusing kept {kept} (debian:bookworm, user=alice): "
                                 "the test asks for debian:bookworm, user=bob"])
    assert f"reusing kept {kept} (" not in second.stdout.str().replace("not reusing", "")
    run(inner, "--orbstack-prune").stdout.fnmatch_lines(["orbstack: pruned 2 machine(s) of this project*"])
