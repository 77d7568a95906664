"""The golden cache (``--orbstack-cache``) on Docker, through inner pytest runs: a second run
clones from the cached golden machine (``created_by: cache``), a change of any input of its key
makes a new one, ``refresh`` replaces an entry, the age and count limits hold, a session killed
while making one leaves no entry to reuse, and under ``-n 2`` each key's golden machine is made
once. On Incus and OrbStack (whose entries are stopped machines, not images) the same first,
second, edited and refreshed runs. Each inner project is its own cache scope (its rootdir); its
entries are pruned at the end of each test."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest
from incusenv import incus, instances
from innerpytest import containers, run, sessions_of

from pytest_orbstack.model.names import project_tag

DEPLOY = '''
import os

from pyinfra import host
from pyinfra.operations import files, server

server.shell(name="slow", commands=[f"sleep {os.environ.get('SLEEP', '0')}"])
files.put(name="motd", src="files/motd", dest="/etc/motd", _sudo=True)
files.line(name="greeting", path="/etc/greeting", line=host.data.get("greeting"), _sudo=True)
'''
# the inner project's conftest: the engine's id of the base image as if it had been rebuilt
CONFTEST = '''
import os
from pytest_orbstack.backends.docker.cache import DockerCacheStore

if os.environ.get("FAKE_BASE"):
    real = DockerCacheStore.base_id
    DockerCacheStore.base_id = lambda self, image: real(self, image) + os.environ["FAKE_BASE"]
'''
TEST = '''
import os
import pytest

VARIANTS = {"plain": {}, "data": {"data": {"greeting": "yo"}}, "user": {"user": "alice"}, "resources": {"cpus": 1}}


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_machine(orbstack_machine, variant, n):
    args = VARIANTS[variant]
    machine = orbstack_machine(deploy="site/deploy.py", **args)
    assert machine.run("cat /etc/motd").stdout == os.environ.get("MOTD", "one\\n")
    greeting = args.get("data", {}).get("greeting") or os.environ.get("GREETING", "hello")
    assert machine.run("cat /etc/greeting").stdout.strip() == greeting
    if "user" in args:  # a clone's default user is its golden machine's
        assert machine.run("id -un", user=None).stdout.strip() == "alice"
'''
PLAIN = ("-k", "plain and 1")  # one test of the machine without arguments


def site_project(inner, monkeypatch, engine: str = "docker"):
    """An inner project whose golden machine deploys ``site/deploy.py``; its cache entries are
    removed at the end (by ``--orbstack-prune``, checked against the engine)."""
    monkeypatch.setenv("PYTEST_ORBSTACK_CACHE", "on")
    inner.makepyfile(conftest=CONFTEST, test_cached=TEST)
    site = inner.mkdir("site")
    (site / "deploy.py").write_text(DEPLOY)
    (site / "group_data").mkdir()
    (site / "group_data" / "all.py").write_text('greeting = "hello"\n')
    (site / "files").mkdir()
    (site / "files" / "motd").write_text("one\n")
    yield inner
    result = run(inner, "--orbstack-prune")
    assert entries(inner, engine) == [], result.stdout.str()


@pytest.fixture
def project(inner, monkeypatch):
    yield from site_project(inner, monkeypatch)


@pytest.fixture
def engine_project(engine_inner, engine, monkeypatch):
    """``project`` on the test's ``engine`` parameter."""
    yield from site_project(engine_inner, monkeypatch, engine)


@pytest.fixture
def incus_project(incus_inner, monkeypatch):
    yield from site_project(incus_inner, monkeypatch, "incus")


@pytest.fixture
def orbstack_project(inner, orbctl_env, monkeypatch, tmp_path):
    """``project`` on OrbStack through the orbctl emulator; afterwards no machine of its
    sessions is left there (the ``inner`` fixture looks at Docker's own machines only)."""
    for key in ("PATH", "ORBCTL_EMULATOR_HOME"):
        monkeypatch.setenv(key, orbctl_env[key])
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "orbstack")
    inner.makeini("[pytest]\norbstack_backend = orbstack\n")
    yield from site_project(inner, monkeypatch, "orbstack")
    prefixes = tuple(f"pto-{session}-" for session in sessions_of(tmp_path / "state"))
    assert prefixes and not [name for name in orbstack_machines() if name.startswith(prefixes)]


def orbstack_machines() -> list[str]:
    """The names ``orbctl list`` gives (the emulator's, on this process's PATH)."""
    return subprocess.run(["orbctl", "list", "-q"], capture_output=True, text=True, check=True).stdout.split()


def entries(inner, engine: str = "docker") -> list[str]:
    """The project's cache entries on the engine (Docker and Podman: image ids; Incus and OrbStack:
    machine names)."""
    tag = project_tag(getpass.getuser(), str(inner.path))
    if engine == "orbstack":
        return sorted(name for name in orbstack_machines() if name.startswith("pto-cache-") and f"-{tag}-" in name)
    if engine == "incus":
        out = incus("list", "user.pytest-orbstack=cache", f"user.pytest-orbstack.project={tag}", "-f", "csv",
                    "-c", "n")
        assert out.returncode == 0, out.stderr
        return sorted(out.stdout.split())
    out = subprocess.run([engine, "images", "-q", "--no-trunc", "--filter", "label=pytest-orbstack.cache",
                          "--filter", f"label=pytest-orbstack.project={tag}"], capture_output=True, text=True)
    return sorted(set(out.stdout.split()))


def made_by(inner, *args: str, **env: str) -> list[str]:
    """Run the inner tests (``env`` set for the run); the ``created_by`` of its golden machines."""
    return made_and_said(inner, *args, **env)[0]


def made_and_said(inner, *args: str, **env: str) -> tuple[list[str], str]:
    """:func:`made_by`, and what the run printed."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = run(inner, "--orbstack-timings=timings.json", "--junitxml=junit.xml", *args)
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert result.ret == 0, result.stdout.str()
    records = json.loads((inner.path / "timings.json").read_text())["machines"]
    tests = {r["created_by"] for r in records if r["kind"] == "test"}
    goldens = [r["created_by"] for r in records if r["kind"] == "golden"]
    assert ("cache" in tests) == (set(goldens) == {"cache"}), records  # clones of a cached golden say so
    junit = {p.get("value") for p in ElementTree.parse(inner.path / "junit.xml").iter("property")
             if p.get("name") == "orbstack.created_by"}
    assert junit == tests, (junit, tests)
    return goldens, result.stdout.str()


PUT = '''from io import StringIO

from pyinfra.operations import files


def out(value):
    files.put(name="result", src=StringIO(value.strip() + "\\n"), dest="/etc/result", _sudo=True)
'''
READERS = {  # deploy folder -> its deploy, which writes /etc/result from one input outside its folder
    "d_env": PUT + 'import os\nout(os.environ.get("APP_MODE", "GOOD"))\n',
    "d_outside": PUT + 'import os\nhere = os.path.dirname(os.path.abspath(__file__))\n'
                       'out(open(os.path.join(here, "../shared/snippet.txt")).read())\n',
    "d_include": 'from pyinfra import local\nlocal.include("../shared/tasks.py")\n',
    "d_symlink": 'from pyinfra.operations import files\n'
                 'files.template(name="result", src="templates/x.j2", dest="/etc/result", _sudo=True)\n',
    "d_lib": PUT + "import helperlib\nout(helperlib.MODE)\n",
}
READERS_TEST = '''
import os

import helperlib  # loaded before any deploy: the deploy's own import finds it in sys.modules
import pytest


@pytest.mark.parametrize("folder", ["d_env", "d_outside", "d_include", "d_symlink", "d_lib"])
def test_result(orbstack_machine, folder):
    machine = orbstack_machine(deploy=f"{folder}/deploy.py")
    assert machine.run("cat /etc/result").stdout.strip() == os.environ.get("EXPECT", "GOOD")
'''


@pytest.fixture
def readers(inner, monkeypatch):
    """An inner project of the five :data:`READERS` deploys and what they read in ``shared/``
    and the rootdir (all saying GOOD); its cache entries are pruned at the end."""
    monkeypatch.setenv("PYTEST_ORBSTACK_CACHE", "on")
    monkeypatch.delenv("APP_MODE", raising=False)
    inner.makepyfile(test_readers=READERS_TEST, helperlib='MODE = "GOOD"\n')
    shared = inner.mkdir("shared")
    (shared / "snippet.txt").write_text("GOOD\n")
    (shared / "tasks.py").write_text(PUT + 'out("GOOD")\n')
    (shared / "tmpl").mkdir()
    (shared / "tmpl" / "x.j2").write_text("GOOD\n")
    for folder, deploy in READERS.items():
        inner.mkdir(folder).joinpath("deploy.py").write_text(deploy)
    (inner.path / "d_symlink" / "templates").symlink_to("../shared/tmpl")
    yield inner
    result = run(inner, "--orbstack-prune")
    assert entries(inner) == [], result.stdout.str()


def test_what_a_deploy_reads_outside_its_folder_is_in_the_key(readers):
    """Each of five inputs outside the deploy's folder (an environment variable, a file it
    opens, a file it ``local.include``s, a ``templates`` symbolic link's target, a module of
    the rootdir already imported by the test module) changed: its golden machine is made anew
    (the run says which input changed) and the test sees the new value; unchanged, a run
    clones from the cache."""
    assert made_by(readers, "-n", "2") == ["operations.machine"] * 5
    assert made_by(readers, "-n", "2") == ["cache"] * 5
    shared = readers.path / "shared"
    changes = {  # folder -> (the change, the environment of the run, what the run says changed)
        "d_env": (None, {"APP_MODE": "BAD"}, "environment variable APP_MODE changed"),
        "d_outside": (lambda: edit(shared / "snippet.txt", "BAD\n"), {}, "snippet.txt changed"),
        "d_include": (lambda: edit(shared / "tasks.py", PUT + 'out("BAD")\n'), {}, "tasks.py changed"),
        "d_symlink": (lambda: edit(shared / "tmpl" / "x.j2", "BAD\n"), {}, None),  # in the folder's digest
        "d_lib": (lambda: edit(readers.path / "helperlib.py", 'MODE = "BAD"\n'), {}, "helperlib.py changed"),
    }
    stale = {}  # each change tried, whatever the others did
    for folder, (change, env, said) in changes.items():
        undo = change() if change else None
        try:
            goldens, out = made_and_said(readers, "-v", "-k", folder, EXPECT="BAD", **env)
            assert goldens == ["operations.machine"], "a stale hit"
            assert said is None or said in out, out
        except AssertionError as exc:
            stale[folder] = str(exc)[:300]
        finally:
            if undo:
                undo()
    assert not stale, f"stale hits: {stale}"


def edit(path, text: str):
    """Write ``text`` to ``path``; returns a function that puts the old content back."""
    old = path.read_text()
    path.write_text(text)
    return lambda: path.write_text(old)


def test_a_second_run_clones_from_the_cache_and_each_key_input_makes_a_new_one(project):
    """Four keys (no arguments, ``data=``, user, resources), two tests each, under ``-n 2``:
    each golden machine is made once and cached, then the next run clones from each; editing
    a file of the deploy's folder, or a new base image, makes the plain one anew."""
    site = project.path / "site"
    assert made_by(project, "-n", "2") == ["operations.machine"] * 4
    assert len(entries(project)) == 4
    assert made_by(project, "-n", "2") == ["cache"] * 4
    listed = run(project, "--orbstack-list").stdout.str()
    assert "debian:bookworm site/deploy.py" in listed and "pytest-orbstack-cache:" in listed, listed
    changes = {  # input -> (how it changes, the environment of the run)
        "deploy file": (lambda: edit(site / "deploy.py", DEPLOY + "\n# changed\n"), {}),
        "a file it ships": (lambda: edit(site / "files" / "motd", "two\n"), {"MOTD": "two\n"}),
        "group_data": (lambda: edit(site / "group_data" / "all.py", 'greeting = "hi"\n'), {"GREETING": "hi"}),
        "base image id": (None, {"FAKE_BASE": "-new"}),
    }
    for what, (change, env) in changes.items():
        undo = change() if change else None
        try:
            assert made_by(project, *PLAIN, **env) == ["operations.machine"], f"{what}: a stale hit"
        finally:
            if undo:
                undo()
    assert made_by(project, *PLAIN) == ["cache"]  # the first entry is still there (10 at most)
    a_refresh_replaces_its_entry(project, "docker")


def test_the_oldest_entries_go_beyond_the_count_and_none_is_used_past_the_age(project):
    project.makeini("[pytest]\norbstack_backend = docker\norbstack_cache_max_count = 2\n")
    assert sorted(made_by(project, "-k", "1 and not resources")) == ["operations.machine"] * 3
    assert len(entries(project)) == 2  # the oldest of three went
    project.makeini("[pytest]\norbstack_backend = docker\norbstack_cache_max_age = 0.001\n")  # 3.6 s
    time.sleep(4)
    assert made_by(project, *PLAIN) == ["operations.machine"]  # older than the age: made anew ...
    assert len(entries(project)) == 1  # ... and the expired ones removed


def test_a_session_killed_while_making_its_golden_machine_leaves_no_entry(project, tmp_path):
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={project.path / 'basetemp'}", *PLAIN]
    env = {**os.environ, "SLEEP": "600"}
    proc = subprocess.Popen(argv, cwd=project.path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(_sleeping(name) for s in sessions_of(tmp_path / "state") for name in containers(s)):
        assert proc.poll() is None and time.monotonic() < deadline, "the golden machine's deploy never ran"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 120  # the watcher reaps the killed session's machines
    while any(containers(s) for s in sessions_of(tmp_path / "state")):
        assert time.monotonic() < deadline, "the killed session's machines were not reaped"
        time.sleep(1)
    assert entries(project) == []
    assert made_by(project, *PLAIN) == ["operations.machine"]


def _sleeping(name: str) -> bool:
    """Whether the deploy's ``sleep 600`` runs in machine ``name``."""
    ps = subprocess.run(["docker", "exec", name, "pgrep", "-f", "sleep 600"], capture_output=True)
    return ps.returncode == 0


def an_edit_makes_a_third_entry(project, engine: str) -> None:
    """After two entries: editing the deploy makes the plain golden machine anew, a third entry."""
    undo = edit(project.path / "site" / "deploy.py", DEPLOY + "\n# changed\n")
    try:
        assert made_by(project, *PLAIN) == ["operations.machine"], "a stale hit"
    finally:
        undo()
    assert len(entries(project, engine)) == 3


def a_refresh_replaces_its_entry(project, engine: str) -> None:
    """``--orbstack-cache=refresh`` makes the plain golden machine anew and its entry replaces the
    one of the same key (the count stays); the next run clones from the new one."""
    before = entries(project, engine)
    assert made_by(project, *PLAIN, "--orbstack-cache=refresh") == ["operations.machine"]
    after = entries(project, engine)
    assert len(after) == len(before) and after != before, (before, after)
    assert made_by(project, *PLAIN) == ["cache"]


@pytest.mark.parametrize("engine", ["podman"])
def test_on_podman_a_second_run_clones_the_entry_and_a_refresh_replaces_it(engine_project):
    """Podman lists an entry as ``localhost/pytest-orbstack-cache:...``: the entry a run has
    just published stays (it was taken for the entry it replaces and removed at once, so the
    run's own tests failed on "image not known"), the next run clones from it, an edit makes a
    second entry and a refresh replaces its own."""
    assert made_by(engine_project, *PLAIN) == ["operations.machine"]
    assert len(entries(engine_project, "podman")) == 1
    assert made_by(engine_project, *PLAIN) == ["cache"]
    undo = edit(engine_project.path / "site" / "deploy.py", DEPLOY + "\n# changed\n")
    try:
        assert made_by(engine_project, *PLAIN) == ["operations.machine"], "a stale hit"
    finally:
        undo()
    assert len(entries(engine_project, "podman")) == 2
    a_refresh_replaces_its_entry(engine_project, "podman")


def test_on_incus_a_second_run_copies_the_stopped_entry_and_an_edit_makes_a_new_one(incus_project):
    """Two keys (no arguments; user ``alice``) under ``-n 2``: each golden machine is made once
    and becomes a stopped entry that is no machine (not in ``incus list user.pytest-orbstack=1``);
    the next run clones from each (the clone's user is the golden machine's); editing the
    deploy makes the plain one anew."""
    two = ("-n", "2", "-k", "1 and (plain or user)")
    assert made_by(incus_project, *two) == ["operations.machine"] * 2
    made = entries(incus_project, "incus")
    assert len(made) == 2 and all(name.startswith("pto-cache-") for name in made), made
    assert not set(made) & instances()  # an entry is not a machine: no reap, no list takes it
    states = incus("list", "user.pytest-orbstack=cache", "-f", "csv", "-c", "ns").stdout
    assert all(f"{name},STOPPED" in states for name in made), states
    assert made_by(incus_project, *two) == ["cache"] * 2
    listed = run(incus_project, "--orbstack-list").stdout.str()
    assert "debian:bookworm site/deploy.py" in listed and made[0] in listed, listed
    an_edit_makes_a_third_entry(incus_project, "incus")
    a_refresh_replaces_its_entry(incus_project, "incus")


def test_on_orbstack_a_second_run_clones_the_stopped_entry_and_an_edit_makes_a_new_one(orbstack_project):
    """Through the orbctl emulator, two keys (no arguments; user ``alice``) under ``-n 2``: each
    golden machine is made once and becomes a stopped machine named as an entry; the next run
    clones from each (the clone's default user is the golden machine's); editing the deploy
    makes the plain one anew; ``--orbstack-list`` shows the entries."""
    two = ("-n", "2", "-k", "1 and (plain or user)")
    assert made_by(orbstack_project, *two) == ["operations.machine"] * 2
    made = entries(orbstack_project, "orbstack")
    assert len(made) == 2, made
    listed = json.loads(subprocess.run(["orbctl", "list", "-f", "json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert {m["name"]: m["state"] for m in listed if m["name"] in made} == dict.fromkeys(made, "stopped")
    assert made_by(orbstack_project, *two) == ["cache"] * 2
    listed_text = run(orbstack_project, "--orbstack-list").stdout.str()
    assert made[0] in listed_text and "debian:bookworm (a stopped machine)" in listed_text, listed_text
    an_edit_makes_a_third_entry(orbstack_project, "orbstack")
    a_refresh_replaces_its_entry(orbstack_project, "orbstack")
