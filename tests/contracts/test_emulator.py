"""The orbctl emulator, run through its shims against real Docker containers running systemd,
and again on Incus LXC containers (ORBCTL_EMULATOR_SUBSTRATE=incus; skipped in one line where
Incus is unusable).

One machine (``web``, made with a user and cloud-init) serves the whole module on each
substrate; each has its own ORBCTL_EMULATOR_HOME and checks at the end that nothing of that
home is left behind (containers, networks, clone images; the Incus project).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path

import pytest
from emusubstrate import SUBSTRATES, clean, leftovers, substrate_env
from orbctl_emulator.shims import install_shims
from testenv import needs_docker

IMAGE = "debian:bookworm"
NOT_FOUND = "[-32098] machine not found: 'nope'"
CLOUD_CONFIG = """#cloud-config
write_files:
  - path: /etc/emulator-test/motd
    content: hello from cloud-init
    permissions: '0600'
runcmd:
  - echo "runcmd as $(id -un)" > /tmp/runcmd-ok
  - [sh, -c, "echo argv-form > /tmp/argv-ok"]
"""


pytestmark = needs_docker("the orbctl emulator tests", IMAGE)


class Emulator:
    """Runs ``orbctl``/``orb`` from the shims, with one emulator home."""

    def __init__(self, bin_dir: Path, home: Path, substrate: str) -> None:
        self.home, self.substrate = home, substrate
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORBCTL_EMULATOR_")}
        self.env.update({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ORBCTL_EMULATOR_HOME": str(home),
                         **substrate_env(substrate)})

    def __call__(self, *args: str, input: str | None = None, binary: str = "orbctl",
                 **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], capture_output=True, text=True, input=input,
                              env={**self.env, **env}, timeout=120, cwd="/")  # no -w: runs in "/"

    def ok(self, *args: str, **kwargs) -> str:
        proc = self(*args, **kwargs)
        assert proc.returncode == 0, proc
        return proc.stdout

    def sh(self, command: str, machine: str = "web", **kwargs) -> str:
        return self.ok("run", "-m", machine, "sh", "-c", command, **kwargs).strip()

    def names(self) -> list[str]:
        return [m["name"] for m in json.loads(self.ok("list", "-f", "json"))]

@pytest.fixture(scope="module", params=SUBSTRATES)
def orbctl(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("emulator")
    emulator = Emulator(install_shims(root / "bin"), root / "home", request.param)
    yield emulator
    emulator("delete", "-f", "-a")
    left = leftovers(request.param, root / "home")
    clean(request.param, root / "home", left)  # clean up anyway, then fail: a leak is a defect
    assert left == [], f"the emulator left {request.param} objects behind"


@pytest.fixture(scope="module")
def web(orbctl, tmp_path_factory):
    user_data = tmp_path_factory.mktemp("user-data") / "user-data"
    user_data.write_text(CLOUD_CONFIG)
    orbctl.ok("create", "-u", "deploy", "-c", str(user_data), "debian:12", "web")
    yield "web"
    orbctl.ok("delete", "-f", "web")


def test_version_and_status(orbctl):
    assert orbctl.ok("version").strip() == "Version: 2.2.3 (2020300)"
    assert (orbctl("status").stdout, orbctl("status").returncode) == ("Running\n", 0)
    for status, code in (("Stopped", 1), ("Starting", 2)):
        proc = orbctl("status", ORBCTL_EMULATOR_STATUS=status)
        assert (proc.stdout.strip(), proc.returncode) == (status, code)


def test_create_makes_the_user_and_runs_cloud_init_as_root(orbctl, web):
    who = orbctl.sh("id -un; echo $HOME; sudo -n true && echo sudo-ok")
    assert who.split() == ["deploy", "/home/deploy", "sudo-ok"]
    motd = orbctl.ok("run", "-m", web, "-u", "root", "sh", "-c",
                     "cat /etc/emulator-test/motd; echo; stat -c %a /etc/emulator-test/motd")
    assert motd.split() == ["hello", "from", "cloud-init", "600"]
    assert orbctl.sh("cat /tmp/runcmd-ok /tmp/argv-ok") == "runcmd as root\nargv-form"
    assert orbctl.sh("head -1 /var/lib/cloud/seed/nocloud/user-data") == "#cloud-config"
    assert json.loads(orbctl.sh("cat /run/cloud-init/result.json"))["v1"]["errors"] == []
    assert orbctl.sh("cloud-init status") == "status: done"
    assert orbctl.sh("hostname") == "web"
    assert "Cloud-init v. 22.4.2 finished at" in orbctl.ok("logs", web)


def test_list_shapes(orbctl, web):
    items = json.loads(orbctl.ok("list", "-f", "json"))
    assert [i["name"] for i in items] == ["web"]
    item = items[0]
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", item.pop("id"))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert item == {"name": "web", "image": {"distro": "debian", "version": "bookworm", "arch": arch,
                                             "variant": "default"},
                    "config": {"isolated": False, "forward_ssh_agent": False, "isolate_network": False,
                               "default_username": "deploy", "http_port": 0, "https_port": 0},
                    "builtin": False, "state": "running"}
    assert orbctl.ok("list", "-q") == "web\n"
    assert orbctl.ok("list", "-r", "-q") == "web\n"
    table = orbctl.ok("list").splitlines()
    assert table[0].split() == ["NAME", "STATE", "DISTRO", "VERSION", "ARCH"]
    assert table[1].split() == ["----", "-----", "------", "-------", "----"]  # #323
    assert table[2].split() == ["web", "running", "debian", "bookworm", arch]


def test_info_new_and_flat_shapes(orbctl, web):
    info = json.loads(orbctl.ok("info", web, "-f", "json"))
    listed = json.loads(orbctl.ok("list", "-f", "json"))[0]
    assert info["record"] == listed
    assert isinstance(info["disk_size"], int) and re.fullmatch(r"[\d.]+", info["ip4"])
    flat = json.loads(orbctl.ok("info", web, "-f", "json", ORBCTL_EMULATOR_INFO_SHAPE="flat"))
    assert "record" not in flat and flat["name"] == "web" and flat["id"] == listed["id"]


def test_run_without_workdir_runs_in_the_callers_directory_else_in_root(orbctl, web, tmp_path):
    """OrbStack runs in the caller's current directory (#1661), or in -w's; one the machine
    has not becomes / without a word (SRC ResolveSSHDir), and -w "" is the user's home."""
    assert subprocess.run(["orbctl", "run", "-m", web, "pwd"], capture_output=True, text=True, cwd="/var",
                          env=orbctl.env).stdout == "/var\n"
    lost = subprocess.run(["orbctl", "run", "-m", web, "pwd"], capture_output=True, text=True, cwd=tmp_path,
                          env=orbctl.env)
    assert (lost.returncode, lost.stdout, lost.stderr) == (0, "/\n", "")
    assert orbctl.ok("run", "-m", web, "-w", "/no/such/dir", "pwd") == "/\n"
    assert orbctl.ok("run", "-m", web, "-w", "", "pwd") == "/home/deploy\n"


def test_version_knob_gates_clone_isolated_and_delete_by_id(orbctl, web):
    assert orbctl.ok("version", ORBCTL_EMULATOR_VERSION="1.7.2").strip() == "Version: 1.7.2 (1070200)"
    old = orbctl("clone", web, "web-old", ORBCTL_EMULATOR_VERSION="1.11.3")
    assert (old.returncode, old.stderr.splitlines()[0]) == (1, 'Error: unknown command "clone" for "orbctl"')
    flag = orbctl("create", "--isolated", "debian", "iso", ORBCTL_EMULATOR_VERSION="2.0.5")
    assert flag.stderr.splitlines()[:2] == ["Error: unknown flag: --isolated", "Usage:"]
    ulid = json.loads(orbctl.ok("info", web, "-f", "json"))["record"]["id"]
    panic = orbctl("delete", "-f", ulid)  # 2.2.1-2.2.3 (billystar, garm-provider-orbstack, firmament)
    assert panic.returncode == 2 and "scon/cmd/scli/cmd/delete.go:141" in panic.stderr
    assert panic.stderr.startswith("panic: runtime error: invalid memory address or nil pointer dereference "
                                   "[recovered, repanicked]\n")
    assert orbctl.names() == ["web"]


def test_run_passes_exit_code_stdin_user_and_workdir(orbctl, web):
    assert orbctl("run", "-m", web, "sh", "-c", "exit 7").returncode == 7
    assert orbctl.ok("run", "-m", web, "cat", input="line 1\nline 2\n") == "line 1\nline 2\n"
    assert orbctl.ok("run", "-m", web, "-u", "root", "-w", "/tmp", "sh", "-c", "id -un; pwd").split() \
        == ["root", "/tmp"]
    assert orbctl.ok("run", "-m", web, "echo", "-u", "x").strip() == "-u x"  # flags end at the command
    assert orbctl.ok("run", "-m", web, "-s", "echo $HOME").strip() == "/home/deploy"
    assert orbctl.ok("-m", web, "whoami", binary="orb").strip() == "deploy"  # orb ARGS == run ARGS
    assert orbctl.ok("list", "-q", binary="orb") == "web\n"
    assert orbctl("run", "-x", "true").stderr.strip() == "Error: unknown flag -x"  # SRC cmd/run.go
    assert orbctl("run", "-m").stderr.strip() == "Error: missing value for flag -m"
    assert orbctl.ok("run", "--machine=" + web, "-user=root", "--bogus=1", "id", "-un").strip() == "root"


def test_push_and_pull_copy_as_the_default_user_before_2_2_3(orbctl, web, tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("some notes\n")
    src.chmod(0o640)
    old = {"ORBCTL_EMULATOR_VERSION": "2.2.2"}
    orbctl.ok("push", "-m", web, str(src), **old)
    orbctl.ok("push", "-m", web, str(src), "copy.txt", **old)
    assert orbctl.sh("stat -c '%U %a' ~/notes.txt; cat ~/copy.txt", **old) == "deploy 640\nsome notes"
    denied = orbctl("push", "-m", web, str(src), "/root/notes.txt", **old)  # #407, before 2.2.3
    assert denied.returncode == 1
    assert denied.stderr.strip() == "cp: cannot create regular file '/root/notes.txt': Permission denied"
    orbctl.ok("push", "-m", web, str(src), "/root/notes.txt")  # "Fixed in v2.2.3" (#407)
    missing = orbctl("push", "-m", web, str(tmp_path / "nope.yaml"))
    assert missing.stderr.strip() == f"cp: cannot stat '/mnt/mac{tmp_path}/nope.yaml': No such file or directory"
    out = tmp_path / "out"
    out.mkdir()
    orbctl.ok("pull", "-m", web, "copy.txt", str(out))
    orbctl.ok("pull", "-m", web, "/etc/hostname", str(out / "hostname"))
    assert (out / "copy.txt").read_text() == "some notes\n" and (out / "hostname").read_text() == "web\n"
    missing = orbctl("pull", "-m", web, "/nonexistent", str(out))
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    secret = orbctl("pull", "-m", web, "/etc/shadow", str(out))
    assert secret.returncode == 1 and "Permission denied" in secret.stderr


def test_clone_is_stopped_then_resolves_by_name_and_rename_moves_it(orbctl, web):
    orbctl.ok("clone", web, "web-copy")
    assert [(m["name"], m["state"]) for m in json.loads(orbctl.ok("list", "-f", "json"))] == \
        [("web", "running"), ("web-copy", "stopped")]
    assert "ip4" not in json.loads(orbctl.ok("info", "web-copy", "-f", "json"))
    orbctl.ok("start", "web-copy")
    orbctl.ok("start", "web-copy")  # idempotent
    assert orbctl.sh("hostname", machine="web-copy") == "web-copy"
    web_ip = json.loads(orbctl.ok("info", web, "-f", "json"))["ip4"]
    relay = orbctl.sh("getent hosts web.orb.local", machine="web-copy").split()[0]
    # a per-machine relay address, not ip4 (#2676, #2057); on Incus the bridge's DNS gives ip4
    assert (relay != web_ip) == (orbctl.substrate == "docker")
    assert orbctl.sh("getent hosts web", machine="web-copy").split()[0] == web_ip
    orbctl.ok("rename", "web-copy", "web-copy")  # the same name: nothing to do (SRC rename.go)
    orbctl.ok("rename", "web-copy", "web-b")
    assert orbctl.names() == ["web", "web-b"]
    assert orbctl.sh("hostname; cat /etc/hostname; grep ^127.0.1.1 /etc/hosts", machine="web-b").split() == \
        ["web-b", "web-b", "127.0.1.1", "web-b"]  # SRC rename.go: the hostname follows
    orbctl.ok("stop", "web-b")
    orbctl.ok("rename", "web-b", "web-c")  # a stopped machine: the files, then the next boot
    assert orbctl.sh("hostname", machine="web-c") == "web-c"  # run starts it (SRC scon/ssh.go)
    orbctl.ok("rename", "web-c", "web-b")
    if orbctl.substrate == "docker":  # Incus renames only stopped instances: its DNS follows at the next start
        assert orbctl.sh("getent hosts web-b.orb.local >/dev/null && echo ok") == "ok"
    assert orbctl("run", "-m", web, "getent", "hosts", "web-copy.orb.local").returncode == 2
    assert orbctl("info", "web-copy").stderr.strip() == "[-32098] machine not found: 'web-copy'"
    orbctl.ok("delete", "-f", "web-b")
    assert orbctl.names() == ["web"]


def test_config_show_get_set(orbctl, web):
    lines = orbctl.ok("config", "show").splitlines()
    assert lines == sorted(lines) and "machine.web.username: deploy" in lines
    assert "network.subnet4: 192.168.138.0/23" in lines and "memory_mib: 8192" in lines
    assert orbctl.ok("config", "get", "cpu") == "8\n"
    assert orbctl.ok("config", "get", "cpu", ORBCTL_EMULATOR_CONFIG_GET_STYLE="keyvalue") == "cpu: 8\n"
    orbctl.ok("config", "set", "rosetta", "false")
    assert orbctl.ok("config", "get", "rosetta") == "false\n"
    unknown = orbctl("config", "get", "no.such.key")
    assert (unknown.returncode, unknown.stderr) == (1, "Unknown configuration key: no.such.key\n")
    assert orbctl("config", "set", "machine.nope.username", "x").stderr.strip() == NOT_FOUND
    assert orbctl("config", "set", "machine.web.colour", "x").stderr.strip() == \
        "Unknown machine config key: machine.web.colour"  # SRC cmd/config_set.go
    bad = {("rosetta", "maybe"): 'strconv.ParseBool: parsing "maybe": invalid syntax',
           ("memory_mib", "8G"): 'strconv.ParseUint: parsing "8G": invalid syntax'}
    for (key, value), text in bad.items():
        proc = orbctl("config", "set", key, value)
        assert (proc.returncode, proc.stderr) == (1, text + "\n")
    orbctl.ok("config", "set", "rosetta", "T")  # Go's ParseBool
    assert orbctl.ok("config", "get", "rosetta") == "true\n"
    orbctl.ok("config", "set", "machine.web.username", "root")  # the record only (SRC config_set.go)
    try:
        assert orbctl.sh("id -un; echo $HOME") == "root\n/root"
        assert json.loads(orbctl.ok("list", "-f", "json"))[0]["config"]["default_username"] == "root"
    finally:
        orbctl.ok("config", "set", "machine.web.username", "deploy")


def test_create_errors_leave_nothing_behind(orbctl, web):
    other_arch = "arm64" if platform.machine() in ("x86_64", "amd64") else "amd64"
    host = "amd64" if other_arch == "arm64" else "arm64"
    cases = {
        ("debian", "my_vm"): "[-32098] create 'my_vm': invalid machine name 'my_vm'\n",
        ("debian", "docker"): "[-32098] create 'docker': invalid machine name 'docker'\n",
        ("plan9", "my_vm"): "Error: invalid distro: plan9\nUsage:\n  orbctl create [flags]",
        ("debian:11", "old"): f"[-32098] create 'old': make rootfs: image not found: {{debian bullseye {host} ",
        ("ubuntu:20.04", "focal"): "[-32098] create 'focal': make rootfs: image not found: {ubuntu focal",
        ("debian:12", "web"): "[-32098] create 'web': machine already exists: 'web'",
        ("-a", other_arch, "debian", "foreign"): "[-32098] create 'foreign': unsupported architecture",
        ("debian", "x" * 65): f"[-32098] create '{'x' * 65}': start: configure LXC: configure LXC: set lxc.uts.name",
    }
    for args, message in cases.items():
        proc = orbctl("create", *args)
        assert proc.returncode == 1 and proc.stderr.startswith(message), (args, proc.stderr)
    slow = orbctl("create", "debian", "slow", ORBCTL_EMULATOR_BOOT_TIMEOUT="0")
    assert (slow.returncode, slow.stderr) == (
        1, "[-32098] create 'slow': setup: machine didn't start in 30s (missing IP address)\n")
    assert orbctl.names() == ["web"]


def test_unknown_machine_command_and_docker(orbctl, web, tmp_path):
    for args in (("info", "nope"), ("delete", "-f", "nope"),
                 ("start", "nope"), ("stop", "nope"), ("clone", "nope", "n2"), ("rename", "nope", "n2"),
                 ("default", "nope")):
        proc = orbctl(*args)
        assert (proc.returncode, proc.stderr.strip()) == (1, NOT_FOUND), args
    for args in (("run", "-m", "nope", "echo", "ran"), ("push", "-m", "nope", __file__),
                 ("pull", "-m", "nope", "/etc/hostname", str(tmp_path))):  # (SRC: over SSH, whose
        proc = orbctl(*args)  # server tells only a terminal)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", ""), args
    logs = orbctl("logs", "nope")  # logs prints errors on stdout and exits 0 (SRC cmd/logs.go)
    assert (logs.returncode, logs.stdout.strip(), logs.stderr) == (0, NOT_FOUND, "")
    bogus = orbctl("frobnicate")
    assert bogus.returncode == 1 and bogus.stderr.startswith('Error: unknown command "frobnicate"')
    down = orbctl("list", **{f"ORBCTL_EMULATOR_{orbctl.substrate.upper()}": str(tmp_path / "engine")})
    assert down.returncode == 1 and down.stderr.startswith(f"{orbctl.substrate.capitalize()} is unavailable:")
    assert len(down.stderr.splitlines()) == 1


def test_stop_without_name_stops_everything_and_start_is_idempotent(orbctl, web):
    assert orbctl.ok("default").strip() == "web"
    orbctl.ok("stop", web)
    orbctl.ok("stop", web)
    assert json.loads(orbctl.ok("list", "-f", "json"))[0]["state"] == "stopped"
    assert orbctl.ok("list", "-r", "-f", "json") == "[]\n"
    orbctl.ok("restart", web)
    orbctl.ok("stop")  # what real OrbStack does: everything stops
    status = orbctl("status")
    assert (status.returncode, status.stdout, orbctl.ok("list", "-r", "-q")) == (1, "Stopped\n", "")
    orbctl.ok("start")
    assert orbctl("status").returncode == 0
    orbctl.ok("start", web)
    assert orbctl.sh("systemctl is-system-running") in ("running", "degraded")


def test_failing_cloud_init_does_not_fail_create(orbctl, web, tmp_path):
    script = tmp_path / "user-data"
    script.write_text("#!/bin/sh\necho script ran as $(id -un)\nexit 3\n")
    orbctl.ok("create", "-c", str(script), "debian", "ci-fail")
    try:
        logs = orbctl.ok("logs", "ci-fail")
        assert "script ran as root" in logs and "Failed to run module scripts-user" in logs
        status = orbctl("run", "-m", "ci-fail", "cloud-init", "status")
        assert (status.returncode, status.stdout) == (1, "status: error\n")
    finally:
        orbctl.ok("delete", "-f", "ci-fail")


def test_root_has_every_capability_unless_the_machine_is_isolated(orbctl, web):
    """SRC scon/start.go: machines drop no capability (iptables works, containerlab#2304);
    isolated ones run in a user namespace that restricts them."""
    net_admin = 1 << 12  # CAP_NET_ADMIN in /proc/self/status CapEff

    def effective(machine: str) -> int:
        status = orbctl.ok("run", "-m", machine, "-u", "root", "cat", "/proc/self/status")
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    assert effective(web) & net_admin
    orbctl.ok("create", "--isolated", "debian", "iso")
    try:
        if orbctl.substrate == "incus":  # LXC: root's capabilities are those of its own user namespace
            assert orbctl.sh("cat /proc/self/uid_map", machine="iso").split()[:2] != ["0", "0"]
            return
        assert not effective("iso") & net_admin
    finally:
        orbctl.ok("delete", "-f", "iso")


def test_machines_look_like_orbstacks_lxc_machines(orbctl, web):
    """SRC scon/start.go (container=lxc, /tmp tmpfs, proc:rw sys:rw, /dev/net/tun, /dev/fuse),
    scon/agent/setup.go (the default user), lxc-ci debian.yaml (the default image's packages)."""
    env = orbctl.sh("systemd-detect-virt -c; findmnt -no FSTYPE /tmp; "
                    "findmnt -no OPTIONS /sys | cut -d, -f1; "
                    "sudo sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward' && echo proc-sys-rw; "
                    "test -c /dev/net/tun && test -c /dev/fuse && echo devices")
    assert env.split() == ["lxc", "tmpfs", "rw", "proc-sys-rw", "devices"]
    user = orbctl.sh("id -u; id -g; id -nG; sudo cat /etc/sudoers.d/orbstack; echo; "
                     "sudo ls /etc/sudoers.d | tr '\n' ' '")
    uid, gid, groups, sudoers, files = user.split("\n")
    assert uid == gid == str(os.getuid() if os.getuid() >= 500 else 501)
    assert set(groups.split()) == {"deploy", "adm", "sudo", "video", "staff", "orbstack"}
    assert sudoers == "deploy ALL=(ALL) NOPASSWD:ALL"
    assert set(files.split()) - {"90-cloud-init-users"} == {"README", "orbstack"}  # (web has cloud-init)
    tools = orbctl.sh("for t in curl vim ssh sudo dhclient locale-gen ip ping; do command -v $t >/dev/null || "
                      "echo missing $t; done; grep ^LANG= /etc/default/locale; "
                      "systemctl is-enabled systemd-resolved; true")
    assert tools.split() == ["LANG=en_US.UTF-8", "masked"]
    named = orbctl("create", "-u", "Jane.Doe", "debian", "named")  # SRC normalizeUserAndGroupNames
    try:
        assert named.returncode == 0, named.stderr
        assert orbctl.sh("id -un", machine="named") == "jane_doe"
        assert json.loads(orbctl.ok("info", "named", "-f", "json"))["record"]["config"]["default_username"] \
            == "Jane.Doe"
    finally:
        orbctl.ok("delete", "-f", "named")
