"""testinfra's ``orbstack://`` backend sends commands as testinfra's own backends do: encoded
with the machine's encoding (bytes as an SSH backend delivers them), run by ``/bin/sh -c`` with
stdin /dev/null, on every engine (Docker, the orbctl emulator, Incus, Podman).

The latin-1 machine is a plain Debian container on the machines' network (no systemd) whose locale is
``fr_FR.ISO-8859-1`` both for ``docker exec`` (its environment) and for SSH logins
(``/etc/default/locale``, read by sshd's PAM), with python3 for testinfra's encoding probe and
sshd for real ``paramiko://`` and ``ssh://`` backends to compare with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import paramiko
import pytest
import testinfra
from incusenv import incus_machine
from podmanenv import podman_machine
from testenv import unique

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.docker.commands import NETWORK, network_create
from pytest_orbstack.testinfra_backend import register, sh_c

LOCALE = "fr_FR.ISO-8859-1"
SETUP = f"""set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends locales python3-minimal openssh-server >/dev/null
sed -i 's/^# *fr_FR ISO-8859-1/fr_FR ISO-8859-1/' /etc/locale.gen
locale-gen >/dev/null
echo LANG={LOCALE} > /etc/default/locale
mkdir -p /root/.ssh /run/sshd
cat > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
/usr/sbin/sshd
"""


def docker(*args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


@pytest.fixture(scope="module")
def latin1(tmp_path_factory):
    """(container name, its IP, private key file): a latin-1 machine with sshd, removed after."""
    register()
    name = unique("latin1")
    key_file = tmp_path_factory.mktemp("ssh") / "id_rsa"
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(key_file))
    subprocess.run(network_create(), capture_output=True, timeout=60)  # fails if it exists
    try:
        docker("run", "-d", "--name", name, "--network", NETWORK, "-e", f"LANG={LOCALE}",
               "debian:bookworm", "sleep", "infinity")
        docker("exec", "-i", name, "sh", "-c", SETUP,
               input=f"{key.get_name()} {key.get_base64()}\n".encode())
        networks = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name))
        yield name, networks[NETWORK]["IPAddress"], str(key_file)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def ssh_hosts(ip: str, key_file: str) -> dict[str, testinfra.host.Host]:
    """testinfra's SSH backends as root on ``ip`` (``ssh://`` when the ssh client exists)."""
    hosts = {"paramiko": testinfra.get_host(f"paramiko://root@{ip}", ssh_identity_file=key_file)}
    if shutil.which("ssh"):  # no user config, no SendEnv (the local LANG); no lingering master
        hosts["ssh"] = testinfra.get_host(
            f"ssh://root@{ip}?controlpersist=0", ssh_identity_file=key_file, ssh_config="/dev/null",
            ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    return hosts


@pytest.fixture(scope="module")
def hosts(latin1):
    """``orbstack://`` (Docker engine) and the SSH backends, all on the latin-1 machine."""
    name, ip, key_file = latin1
    with warnings.catch_warnings():  # paramiko warns about the unknown host key
        warnings.simplefilter("ignore")
        yield {"orbstack": testinfra.get_host(f"orbstack://root@{name}", engine=get_backend("docker")),
               **ssh_hosts(ip, key_file)}


def test_non_ascii_command_arrives_as_over_ssh_on_a_latin1_machine(hosts):
    for label, host in hosts.items():
        assert host.backend.encoding == "ISO-8859-1", label
    orb = hosts["orbstack"]
    assert orb.run("printf %s 'é' | od -An -tx1").stdout_bytes == b" e9\n"
    assert orb.run("printf %s 'é'").stdout_bytes == b"\xe9"
    assert orb.run("printf %s 'é'").stdout == "é"
    commands = [("printf %s 'é' | od -An -tx1", ()), ("printf %s 'é'", ()),
                ("printf '%%s|' %s %s %s", ("a'b\\c%d\n\tz", "é", "ÿ\x7f")),
                ("test é = %s && echo same", ("é",))]
    for command, args in commands:
        results = {label: host.run(command, *args) for label, host in hosts.items()}
        expected = results.pop("orbstack")
        assert expected.rc == 0, expected.stderr
        for label, result in results.items():
            assert (result.rc, result.stdout_bytes, result.stderr_bytes) == (
                expected.rc, expected.stdout_bytes, expected.stderr_bytes), (label, command)
        assert expected.command == results["paramiko"].command  # testinfra's record: same bytes


def test_ascii_commands_go_out_verbatim_and_others_as_printf_escapes():
    assert sh_c(b"echo 'x' | cat") == "exec /bin/sh -c 'echo '\"'\"'x'\"'\"' | cat' </dev/null"
    assert sh_c("printf '%s\\n' é".encode("latin-1")) == (
        "exec /bin/sh -c \"$(printf 'printf \\047\\045s\\134n\\047 \\351')\" </dev/null")


@pytest.fixture(scope="module")
def machines(latin1, orb, orb_machine):
    """``orbstack://`` hosts on each engine: root on the Docker engine's latin-1 machine, the
    default user on a machine of the orbctl emulator (or the real orbctl)."""
    return {"docker": testinfra.get_host(f"orbstack://root@{latin1[0]}", engine=get_backend("docker")),
            "orbstack": testinfra.get_host(f"orbstack://{orb_machine}", engine=get_backend("orbstack"),
                                           default_user=True)}


def _runs_by_bin_sh_with_stdin_dev_null(host, engine: str) -> None:
    missing = host.run("no-such-command-here")
    assert missing.rc == 127, engine
    assert missing.stderr == "/bin/sh: 1: no-such-command-here: not found\n", engine
    assert host.run("echo $0").stdout == "/bin/sh\n", engine
    assert host.check_output("readlink /proc/self/fd/0") == "/dev/null", engine
    done = host.run("cat")
    assert (done.rc, done.stdout_bytes) == (0, b""), engine
    assert host.run("printf %%s %s", "é").stdout_bytes == "é".encode(host.backend.encoding), engine


def test_commands_run_by_bin_sh_with_stdin_dev_null_on_both_engines(machines):
    for engine, host in machines.items():
        _runs_by_bin_sh_with_stdin_dev_null(host, engine)


@pytest.mark.parametrize("kind", ["incus", "podman"])
def test_commands_run_by_bin_sh_with_stdin_dev_null_on_incus_and_podman(request, monkeypatch, kind):
    """The same on an Incus and a Podman machine (default user), also with one process per command."""
    engine, name = (incus_machine if kind == "incus" else podman_machine)(request, "ti")
    host = testinfra.get_host(f"orbstack://{name}", engine=engine, default_user=True)
    _runs_by_bin_sh_with_stdin_dev_null(host, kind)
    assert host.check_output("id -un") != "root"
    monkeypatch.setenv("PYTEST_ORBSTACK_SHELL", "off")
    _runs_by_bin_sh_with_stdin_dev_null(host, f"{kind}, one process per command")


def test_testinfra_modules_agree_across_orbstack_docker_and_ssh(latin1, hosts):
    """A few of testinfra's modules give the same answers through ``orbstack://``, testinfra's
    own ``docker://`` and ``paramiko://`` on one machine."""
    hosts = {**hosts, "docker": testinfra.get_host(f"docker://root@{latin1[0]}")}
    hosts["orbstack"].run("mkdir -p /srv/t && printf 'héllo\\n' > /srv/t/f && chmod 640 /srv/t/f")

    def answers(host):
        f = host.file("/srv/t/f")
        return {"info": (host.system_info.distribution, host.system_info.codename),
                "file": (f.exists, f.is_file, f.mode, f.user, f.content, f.content_string, f.size,
                         host.file("/srv/t").listdir()),
                "user": (host.user("root").home, host.user("root").shell, host.user("nobody").uid),
                "package": (host.package("openssh-server").is_installed,
                            host.package("openssh-server").version, host.package("nginx").is_installed),
                "group": host.group("root").gid,
                "exists": (host.exists("sh"), host.exists("no-such-command"))}

    results = {label: answers(host) for label, host in hosts.items()}
    expected = results.pop("orbstack")
    assert expected["file"][4:6] == (b"h\xe9llo\n", "héllo\n")  # written in latin-1
    for label, result in results.items():
        assert result == expected, label
