"""scripts/dev.sh's set-up steps, run against stub commands on a PATH of our own.

Every command the script may change the machine with (apt-get, dockerd, docker, debootstrap,
python3, sudo) is a shell stub that appends its argv to a calls file and keeps its "state"
(daemon running, images present, packages installed) as files in a directory of this test.
The few harmless real tools the script needs (mktemp, tar, find, ...) are linked in beside
them; nothing else is on PATH. So these tests prove which branch runs when — apt install,
dockerd start, base-image build, virtualenv creation, or nothing at all — in seconds, without
the real apt, dockerd or images. The real build is exercised by .ci/run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from testenv import terminal_signals

ROOT = Path(__file__).resolve().parents[2]
DEV_SH = ROOT / "scripts" / "dev.sh"
BASH = shutil.which("bash") or "/bin/bash"

# Real tools the script (and the stubs) use; linked into the test's PATH.
TOOLS = ("bash", "sh", "env", "id", "mktemp", "find", "head", "tail", "tar", "seq", "sleep", "rm",
         "mkdir", "cat", "touch", "dirname", "cp", "nohup", "chmod", "tr", "sed", "flock")

# One write per call (a line built first, then one printf): the dockerd stub runs in the
# background while the script polls `docker info`, and pieces written separately interleave.
RECORD = """\
line=${0##*/}; for a in "$@"; do line="$line$(printf '\\t%s' "$a")"; done
printf '%s\\n' "$line" >>"$STUB_STATE/calls"
"""

STUBS = {
    # Installing a package makes its commands appear on PATH (they wait in $STUB_PKGS).
    "apt-get": """
[ "$1" = update ] && exit 0
for a in "$@"; do
  case $a in
    docker.io) cp "$STUB_PKGS/docker" "$STUB_PKGS/dockerd" "$STUB_BIN/" ;;
    debootstrap) cp "$STUB_PKGS/debootstrap" "$STUB_BIN/" ;;
    python3-venv) touch "$STUB_STATE/python3-venv" ;;
  esac
done
""",
    "sudo": 'exec "$@"\n',
    "dockerd": """
sleep "${STUB_DOCKERD_DELAY:-0}"
touch "$STUB_STATE/docker-running"
""",
    "docker": """
if [ ! -e "$STUB_STATE/docker-running" ]; then
  echo "Cannot connect to the Docker daemon" >&2; exit 1
fi
image() { printf '%s' "$STUB_STATE/images/"; printf '%s' "$1" | tr ':/' '__'; }
case $1 in
  info) exit 0 ;;
  image) [ "$2" = inspect ] && [ -e "$(image "$3")" ] ;;
  run) [ -e "$(image "$5")" ] ;;     # run --rm --entrypoint /bin/sh IMAGE -c 'test -x systemd'
  import)
    for a in "$@"; do tag=$a; done
    cat >"$STUB_STATE/imported.tar"
    touch "$(image "$tag")" ;;
  save)   # docker save of an imported image: manifest.json naming its one layer, the tree's tar
    [ -e "$(image "$2")" ] || exit 1
    d=$(mktemp -d "$STUB_STATE/save.XXXXXX"); mkdir -p "$d/tree/sbin" "$d/out/0a1b"
    echo systemd >"$d/tree/sbin/init"; tar -C "$d/tree" -cf "$d/out/0a1b/layer.tar" .
    printf '[{"Config":"c.json","RepoTags":["%s"],"Layers":["0a1b/layer.tar"]}]' "$2" >"$d/out/manifest.json"
    tar -C "$d/out" -c manifest.json 0a1b; rm -rf "$d" ;;
  *) echo "docker stub: unexpected $*" >&2; exit 1 ;;
esac
""",
    # Rootful Podman: images under $STUB_STATE/podman-images; `run` is podman_image_ok's probe.
    "podman": """
image() { printf '%s' "$STUB_STATE/podman-images/"; printf '%s' "$1" | tr ':/' '__'; }
mkdir -p "$STUB_STATE/podman-images"
case $1 in
  image) [ "$2" = exists ] && [ -e "$(image "$3")" ] ;;
  --log-level=error) [ -e "$(image "${10}")" ] ;;   # run --rm --ulimit X --ulimit Y --entrypoint /bin/sh IMAGE
  import)
    for a in "$@"; do source=$tag; tag=$a; done
    [ "$source" = - ] && source=/dev/stdin
    cat "$source" >"$STUB_STATE/podman-imported.tar"
    touch "$(image "$tag")" ;;
  *) echo "podman stub: unexpected $*" >&2; exit 1 ;;
esac
""",
    "debootstrap": """
for a in "$@"; do rootfs=$a; done
mode=$(cat "$STUB_STATE/debootstrap-mode" 2>/dev/null || echo ok)
mkdir -p "$rootfs/sbin" && echo systemd >"$rootfs/sbin/init"
echo "I: Retrieving InRelease"
case $mode in
  fail) echo "E: Couldn't download packages: systemd"; exit 1 ;;
  hang) touch "$STUB_STATE/debootstrap-started"; exec sleep 60 ;;
esac
echo "I: Base system installed successfully."
""",
    # python3 -c 'import venv, ensurepip' answers whether python3-venv is "installed";
    # python3 -m venv DIR makes a virtualenv whose pip and pytest are stubs too.
    "python3": """
case $1 in
  -c) [ -e "$STUB_STATE/python3-venv" ] ;;
  -m) [ "$2" = venv ] || exit 1
      mkdir -p "$3/bin"
      cp "$STUB_PKGS/pip" "$STUB_PKGS/pytest" "$3/bin/" ;;
  *) exit 1 ;;
esac
""",
    "pip": "",
    "pytest": 'pwd >"$STUB_STATE/pytest-cwd"\n',
}


def write_stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + RECORD + body)
    path.chmod(0o755)


@dataclass
class Machine:
    """A stubbed machine: what is installed, running and built lives in files under tmp_path."""

    tmp: Path
    bin: Path
    pkgs: Path
    state: Path
    venv: Path
    logs: Path
    scratch: Path
    sysctl: Path

    @property
    def inotify_limit(self) -> Path:
        return self.sysctl / "fs" / "inotify" / "max_user_instances"

    # --- arranging the machine -----------------------------------------------------------
    def install(self, *commands: str) -> None:
        for name in commands:
            shutil.copy(self.pkgs / name, self.bin / name)

    def docker_running(self) -> None:
        (self.state / "docker-running").touch()

    def python_venv(self) -> None:
        (self.state / "python3-venv").touch()

    def image(self, tag: str = "debian:bookworm") -> None:
        (self.state / "images" / tag.replace(":", "_").replace("/", "_")).touch()

    def has_image(self, tag: str) -> bool:
        return (self.state / "images" / tag.replace(":", "_").replace("/", "_")).exists()

    def made_venv(self) -> None:
        (self.venv / "bin").mkdir(parents=True)
        for name in ("pip", "pytest"):
            shutil.copy(self.pkgs / name, self.venv / "bin" / name)
        (self.venv / ".pytest-orbstack-installed").touch()

    def everything(self) -> None:
        self.install("docker", "dockerd", "debootstrap")
        self.python_venv()
        self.docker_running()
        self.image()
        self.made_venv()

    # --- running the script --------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": str(self.bin),
            "HOME": str(self.tmp / "home"),
            "LANG": "C",
            "STUB_STATE": str(self.state),
            "STUB_PKGS": str(self.pkgs),
            "STUB_BIN": str(self.bin),
            "PYTEST_ORBSTACK_VENV": str(self.venv),
            "PYTEST_ORBSTACK_LOG_DIR": str(self.logs),
            "PYTEST_ORBSTACK_SCRATCH_DIR": str(self.scratch),
            "PYTEST_ORBSTACK_SYSCTL_DIR": str(self.sysctl),
            "PYTEST_ORBSTACK_INCUS": "off",  # the Incus set-up has stubs of its own: not here
            "PYTEST_ORBSTACK_PODMAN": "off",  # nor the Podman one
        }
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        (self.state / "calls").write_text("")
        return subprocess.run([BASH, str(DEV_SH), *args], env=self.env(**extra), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def calls(self, name: str | None = None) -> list[list[str]]:
        """Recorded argv lists (command name first), in order; only `name`'s when given."""
        lines = (self.state / "calls").read_text().splitlines()
        argvs = [line.split("\t") for line in lines]
        return [argv for argv in argvs if name is None or argv[0] == name]

    def installs(self) -> list[list[str]]:
        return [argv for argv in self.calls("apt-get") if "install" in argv]

    def changes(self) -> list[list[str]]:
        """Every recorded call that changes something (anything but read-only probes)."""
        probes = ({"info"}, {"image", "inspect"}, {"--entrypoint"}, {"save"}, {"image", "exists"}, {"--version"})
        changing = []
        for argv in self.calls():
            name, args = argv[0], set(argv[1:])
            if name in ("docker", "podman") and any(probe <= args for probe in probes):
                continue
            if name == "python3" and argv[1:2] == ["-c"]:
                continue
            changing.append(argv)
        return changing


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    """A bare machine: no docker, no dockerd, no debootstrap, no python3-venv, no venv."""
    m = Machine(tmp=tmp_path, bin=tmp_path / "bin", pkgs=tmp_path / "pkgs", state=tmp_path / "state",
                venv=tmp_path / "venv", logs=tmp_path / "log", scratch=tmp_path / "scratch",
                sysctl=tmp_path / "sysctl")
    m.inotify_limit.parent.mkdir(parents=True)
    m.inotify_limit.write_text("1024\n")  # already raised, unless a test says otherwise
    for d in (m.bin, m.pkgs, m.state / "images", m.logs, m.scratch, tmp_path / "home"):
        d.mkdir(parents=True)
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real, f"{tool} is needed to run these tests"
        (m.bin / tool).symlink_to(real)
    for name, body in STUBS.items():
        write_stub(m.pkgs / name, body)
    m.install("apt-get", "sudo", "python3")
    return m


def assert_no_scratch_left(m: Machine) -> None:
    assert list(m.scratch.iterdir()) == [], "the debootstrap tree was left behind"


def test_bare_machine_installs_starts_builds_and_makes_the_venv(machine: Machine) -> None:
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr

    # One apt-get install with the three packages (an apt-get update may come before it).
    installs = machine.installs()
    assert len(installs) == 1
    assert {"docker.io", "debootstrap", "python3-venv"} <= set(installs[0])
    assert "-y" in installs[0]
    assert machine.calls("apt-get")[-1] == installs[0]

    # dockerd started once, logging where we said.
    assert machine.calls("dockerd") == [["dockerd"]]
    assert (machine.logs / "pytest-orbstack-dockerd.log").exists()

    # The base image built from a debootstrap tree (bookworm, with systemd) and imported with
    # CMD /sbin/init; the tree itself is gone afterwards, and no failure log is kept.
    (deboot,) = machine.calls("debootstrap")
    assert "bookworm" in deboot and "--variant=minbase" in deboot
    packages = (ROOT / "pytest_orbstack" / "backends" / "debian-base-packages").read_text().strip()
    assert f"--include={packages}" in deboot and "systemd" in packages.split(",")  # the one list
    rootfs = Path(deboot[-1])
    assert rootfs.is_relative_to(machine.scratch)
    assert not rootfs.exists()
    assert_no_scratch_left(machine)
    (imp,) = [argv for argv in machine.calls("docker") if argv[1] == "import"]
    assert imp[1:] == ["import", "--change", 'CMD ["/sbin/init"]', "-", "debian:bookworm"]
    with tarfile.open(machine.state / "imported.tar") as tar:
        assert "./sbin/init" in tar.getnames()
    assert not (machine.logs / "pytest-orbstack-debootstrap.log").exists()

    # The virtualenv made and the package installed editable with its test extras.
    assert machine.calls("python3")[-1] == ["python3", "-m", "venv", str(machine.venv)]
    assert ["pip", "install", "-q", "-e", f"{ROOT}[test]"] in machine.calls("pip")
    assert (machine.venv / ".pytest-orbstack-installed").exists()

    # Order: packages, then dockerd, then the build, then the venv.
    names = [argv[0] for argv in machine.changes()]
    assert names.index("apt-get") < names.index("dockerd") < names.index("debootstrap") \
        < names.index("python3") < names.index("pip")


def test_everything_present_changes_nothing(machine: Machine) -> None:
    machine.everything()
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    assert machine.changes() == []
    # It did look: the daemon was asked, and the image's systemd checked.
    docker = machine.calls("docker")
    assert ["docker", "info"] in docker
    assert ["docker", "image", "inspect", "debian:bookworm"] in docker
    assert any("--entrypoint" in argv and "debian:bookworm" in argv for argv in docker)
    assert result.stderr == ""


def test_missing_commands_are_installed_only_those(machine: Machine) -> None:
    machine.everything()
    (machine.bin / "dockerd").unlink()
    (machine.bin / "debootstrap").unlink()
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    (install,) = machine.installs()
    assert {"docker.io", "debootstrap"} <= set(install)
    assert "python3-venv" not in install
    assert [argv[0] for argv in machine.changes() if argv[0] != "apt-get"] == []


def test_docker_not_answering_starts_dockerd_and_waits(machine: Machine) -> None:
    machine.everything()
    (machine.state / "docker-running").unlink()
    result = machine.run("setup", STUB_DOCKERD_DELAY="1")
    assert result.returncode == 0, result.stderr
    assert "starting dockerd" in result.stderr
    assert machine.calls("dockerd") == [["dockerd"]]
    # Asked before starting it, then polled until it answered (it took a second).
    infos = [argv for argv in machine.calls("docker") if argv[1:] == ["info"]]
    assert len(infos) >= 2
    assert machine.calls()[-1][0] != "dockerd"
    assert machine.installs() == []
    assert machine.calls("debootstrap") == []


def test_docker_host_not_answering_is_an_error_not_a_local_dockerd(machine: Machine) -> None:
    machine.everything()
    (machine.state / "docker-running").unlink()
    result = machine.run("setup", DOCKER_HOST="tcp://127.0.0.1:9")
    assert result.returncode != 0
    assert "DOCKER_HOST=tcp://127.0.0.1:9 does not answer" in result.stderr
    assert machine.calls("dockerd") == []


@pytest.mark.parametrize("stale", [False, True], ids=["no-stamp", "stamp-older-than-pyproject"])
def test_venv_is_made_when_its_stamp_is_missing_or_stale(machine: Machine, stale: bool) -> None:
    machine.everything()
    stamp = machine.venv / ".pytest-orbstack-installed"
    if stale:
        old = (ROOT / "pyproject.toml").stat().st_mtime - 3600
        os.utime(stamp, (old, old))
    else:
        stamp.unlink()
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    assert [argv for argv in machine.changes() if argv[0] != "pip"] == [
        ["python3", "-m", "venv", str(machine.venv)]]
    assert ["pip", "install", "-q", "-e", f"{ROOT}[test]"] in machine.calls("pip")
    assert stamp.stat().st_mtime > (ROOT / "pyproject.toml").stat().st_mtime


def test_image_without_systemd_is_rebuilt(machine: Machine) -> None:
    machine.everything()
    # `docker image inspect` finds it but the systemd probe (docker run) fails: a registry image.
    real_docker = (machine.bin / "docker").read_text()
    (machine.bin / "docker").write_text(real_docker.replace('run) [ -e "$(image "$5")" ]', "run) false"))
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    assert len(machine.calls("debootstrap")) == 1
    assert [argv[1] for argv in machine.changes()] == ["--variant=minbase", "import"]


def test_base_image_subcommand_builds_the_overridden_tag_and_no_venv(machine: Machine) -> None:
    machine.image("debian:bookworm")
    result = machine.run("base-image", PYTEST_ORBSTACK_BASE_IMAGE="pytest-orbstack-ci-base:abc123")
    assert result.returncode == 0, result.stderr
    assert "building pytest-orbstack-ci-base:abc123" in result.stderr
    (install,) = machine.installs()
    assert {"docker.io", "debootstrap"} <= set(install)
    assert "python3-venv" not in install
    assert machine.calls("dockerd") == [["dockerd"]]
    (imp,) = [argv for argv in machine.calls("docker") if argv[1] == "import"]
    assert imp[-1] == "pytest-orbstack-ci-base:abc123"
    assert machine.has_image("pytest-orbstack-ci-base:abc123")
    # No virtualenv: python3 is not even asked.
    assert machine.calls("python3") == [] and machine.calls("pip") == []
    assert not machine.venv.exists()
    assert_no_scratch_left(machine)
    # Again: everything there, nothing done.
    result = machine.run("base-image", PYTEST_ORBSTACK_BASE_IMAGE="pytest-orbstack-ci-base:abc123")
    assert result.returncode == 0, result.stderr
    assert machine.changes() == []


def podman_imports(m: Machine) -> list[list[str]]:
    return [argv for argv in m.calls("podman") if argv[1] == "import"]


def test_podman_image_is_the_layer_of_dockers_base_image_when_docker_has_it(machine: Machine) -> None:
    machine.everything()
    machine.install("podman")
    result = machine.run("podman")
    assert result.returncode == 0, result.stderr
    assert "importing debian:bookworm from Docker's debian:bookworm" in result.stderr
    assert machine.calls("debootstrap") == []  # no second debootstrap of the same tree
    (imp,) = podman_imports(machine)
    assert imp[1:4] == ["import", "-q", "--change"] and imp[4] == 'CMD ["/sbin/init"]'
    assert imp[5].endswith("/0a1b/layer.tar") and imp[6] == "debian:bookworm"
    with tarfile.open(machine.state / "podman-imported.tar") as tar:
        assert "./sbin/init" in tar.getnames()
    assert_no_scratch_left(machine)  # the saved image is removed
    # Again: the image is there, nothing is done.
    result = machine.run("podman")
    assert result.returncode == 0, result.stderr
    assert machine.changes() == []


@pytest.mark.parametrize("docker", ["no base image", "not running"])
def test_podman_image_is_built_when_docker_cannot_give_it(machine: Machine, docker: str) -> None:
    machine.install("docker", "debootstrap", "podman")
    if docker == "no base image":
        machine.docker_running()
    result = machine.run("podman")
    assert result.returncode == 0, result.stderr
    assert len(machine.calls("debootstrap")) == 1
    (imp,) = podman_imports(machine)
    assert imp[-2:] == ["-", "debian:bookworm"]
    with tarfile.open(machine.state / "podman-imported.tar") as tar:
        assert "./sbin/init" in tar.getnames()
    assert_no_scratch_left(machine)


def test_failed_debootstrap_keeps_only_its_log_and_stops(machine: Machine) -> None:
    machine.everything()
    (machine.state / "images" / "debian_bookworm").unlink()
    (machine.state / "debootstrap-mode").write_text("fail")
    result = machine.run("test")
    assert result.returncode != 0
    assert "E: Couldn't download packages: systemd" in result.stderr   # the log's tail, shown
    kept = machine.logs / "pytest-orbstack-debootstrap.log"
    assert "E: Couldn't download packages: systemd" in kept.read_text()
    assert str(kept) in result.stderr
    assert_no_scratch_left(machine)
    assert not Path(machine.calls("debootstrap")[0][-1]).exists()
    assert [argv for argv in machine.calls("docker") if argv[1] == "import"] == []
    assert machine.calls("pytest") == []    # set-up failed: the suite does not run

    # The next successful build removes the stale failure log.
    (machine.state / "debootstrap-mode").write_text("ok")
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    assert not kept.exists()
    assert_no_scratch_left(machine)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_interrupted_build_leaves_no_tree(machine: Machine, sig: signal.Signals) -> None:
    machine.everything()
    (machine.state / "images" / "debian_bookworm").unlink()
    (machine.state / "debootstrap-mode").write_text("hang")
    (machine.state / "calls").write_text("")
    # Its own process group, signalled as a whole, as Ctrl-C or a CI timeout does.
    proc = subprocess.Popen([BASH, str(DEV_SH), "setup"], env=machine.env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=terminal_signals)
    try:
        deadline = time.monotonic() + 20
        while not (machine.state / "debootstrap-started").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "debootstrap stub never started"
            time.sleep(0.05)
        assert len(list(machine.scratch.iterdir())) == 1    # the tree being built
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=20) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    # The build's subshell may finish its clean-up a moment after the script's main shell.
    deadline = time.monotonic() + 10
    while list(machine.scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_no_scratch_left(machine)
    assert not machine.has_image("debian:bookworm")
    assert machine.calls("python3")[-1:] != [["python3", "-m", "venv", str(machine.venv)]]


@pytest.mark.parametrize("command", ["example", "test"])
def test_bare_machine_passes_the_first_time_and_the_second(machine: Machine, command: str) -> None:
    """Regression: a RETURN trap set while building the base image fired again when the next
    function returned, and `set -u` failed the first run ("rootfs: unbound variable")."""
    first = machine.run(command, "-k", "nginx")
    assert first.returncode == 0, first.stderr
    assert "unbound variable" not in first.stderr
    assert len(machine.calls("debootstrap")) == 1          # the build branch was taken
    assert machine.has_image("debian:bookworm")
    assert (machine.state / "pytest-cwd").read_text().strip() == str(
        ROOT / "examples" if command == "example" else ROOT)
    expected = ["-p", "no:cacheprovider", "-k", "nginx"] if command == "example" else ["-n", "2", "-k", "nginx"]
    assert machine.calls("pytest") == [["pytest", *expected]]
    assert_no_scratch_left(machine)

    second = machine.run(command, "-k", "nginx")
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert [argv[0] for argv in machine.changes()] == ["pytest"]


def test_unknown_command_is_a_usage_error(machine: Machine) -> None:
    result = machine.run("bogus")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert machine.calls() == []


def test_a_low_inotify_limit_is_raised_for_systemd_machines(machine: Machine) -> None:
    machine.everything()
    machine.inotify_limit.write_text("128\n")
    result = machine.run("setup")
    assert result.returncode == 0, result.stderr
    assert "raising fs.inotify.max_user_instances from 128 to 1024" in result.stderr
    assert machine.inotify_limit.read_text().strip() == "1024"
    again = machine.run("setup")  # idempotent: nothing said the second time
    assert "inotify" not in again.stderr
