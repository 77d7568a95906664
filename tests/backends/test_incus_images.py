"""The Incus engine's images and cloud-init against the real Incus daemon (no mocks).

The cloud variant (``pytest-orbstack/debian/bookworm/cloud``) is a cache image: the first test
that needs it builds it (from the plain image when it is there, else with its own debootstrap)
and it stays. The offline build of another suite imports throwaway aliases and removes them.
Every machine is ``ptimg-``; the finalizer deletes them.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest
from incusenv import incus, made_names, why_no_incus

from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus import rootfs
from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.backends.incus.cli import IncusCLI
from pytest_orbstack.backends.incus.images import has_image, image_ref
from pytest_orbstack.errors import UnknownImage

REASON = why_no_incus()
incus_only = pytest.mark.skipif(REASON is not None, reason=REASON or "")

WRITES_AND_ADDS = """#cloud-config
users:
  - default
  - name: alice
    shell: /bin/bash
write_files:
  - path: /etc/pytest-orbstack-cloud
    content: "made by <cloud-init> & 'user-data'\\n"
runcmd:
  - [sh, -c, "echo ran > /run/runcmd-ran"]
"""
BROKEN = """#cloud-config
write_files:
  - path: /etc/before-the-failure
    content: "yes\\n"
runcmd:
  - [sh, -c, "exit 3"]
"""


def test_images_are_named_as_linuxcontainers_names_them():
    assert cmd.image_alias("debian:12") == "pytest-orbstack/debian/bookworm"
    assert cmd.image_alias("debian:bookworm", cloud=True) == "pytest-orbstack/debian/bookworm/cloud"
    assert cmd.image_alias("debian:trixie") == cmd.image_alias("debian:13") == "pytest-orbstack/debian/trixie"
    assert cmd.remote_image("debian:13", cloud=True) == "images:debian/trixie/cloud"
    assert cmd.remote_image("ubuntu:24.04") == "images:ubuntu/noble"


def test_only_the_cloud_variant_seeds_cloud_init_and_only_on_create():
    plain, plain_templates = rootfs.metadata("debian", "trixie", cloud=False)
    cloud, cloud_templates = rootfs.metadata("debian", "trixie", cloud=True)
    assert set(json.loads(plain)["templates"]) == {"/etc/hostname", "/etc/hosts"}
    seeded = json.loads(cloud)["templates"]
    user_data = seeded[f"{rootfs.SEED}/user-data"]
    assert user_data["when"] == ["create"]  # copies keep the seed and instance-id: no second run
    assert user_data["properties"]["default"].startswith("#cloud-config")
    assert 'config_get("cloud-init.user-data"' in cloud_templates[user_data["template"]]
    assert json.loads(cloud)["properties"]["variant"] == "cloud"
    assert "cloud-meta-data.tpl" not in plain_templates


@pytest.fixture(scope="module")
def new_name():
    """Makes unique ``ptimg-`` names; everything made under them is removed at the end."""
    yield from made_names("ptimg")


@incus_only
def test_an_image_nobody_has_or_can_build_is_one_line():
    with pytest.raises(UnknownImage) as caught:
        image_ref(IncusCLI(), "ubuntu:22.04", cloud=True)
    message = str(caught.value)
    assert message.startswith("image 'ubuntu:22.04' is not available to Incus: no image "
                              "pytest-orbstack/ubuntu/jammy/cloud here, images:ubuntu/jammy/cloud failed (")
    assert "\n" not in message


@incus_only
def test_user_data_runs_through_the_images_own_cloud_init(tmp_path, new_name):
    told: list[str] = []
    backend = IncusBackend()
    backend.notice = told.append
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text(WRITES_AND_ADDS)
    name = new_name()
    started = time.monotonic()
    info = backend.create(name, "debian:12", user="dev", cloud_init=user_data)
    print(f"create with cloud-init: {time.monotonic() - started:.1f}s; notices: {told}")
    assert info.machine.state == "running"
    assert incus("config", "get", name, "cloud-init.user-data").stdout == WRITES_AND_ADDS + "\n"
    check = ("cloud-init status; cat /etc/pytest-orbstack-cloud /run/runcmd-ran; id -un alice; "
             "systemd-detect-virt -c; id -un dev; sudo -n true && echo sudo")
    out = backend.run(name, check).stdout.splitlines()
    assert out == ["status: done", "made by <cloud-init> & 'user-data'", "ran", "alice", "lxc", "dev", "sudo"]
    assert backend.run(name, "id -un debian").returncode == 0  # users: [default]
    assert "--- /var/log/cloud-init-output.log ---" in backend.logs(name)


@incus_only
def test_failing_user_data_is_only_logged_and_clones_do_not_run_it_again(tmp_path, new_name):
    backend = IncusBackend()
    user_data = tmp_path / "broken.yaml"
    user_data.write_text(BROKEN)
    name, copy = new_name(), new_name()
    backend.create(name, "debian:bookworm", cloud_init=user_data)  # no error: as OrbStack
    status = backend.run(name, "cloud-init status --long; cat /etc/before-the-failure", user="root").stdout
    assert "status: error" in status and "yes" in status.split()
    assert backend.run(name, "systemctl is-system-running").stdout.strip() in ("running", "degraded")
    backend.clone(name, copy)
    assert backend.run(copy, "hostname").stdout.strip() == copy
    # the copy keeps the seed's instance-id: cloud-init sees the same instance, runs its boot stages
    # but no per-instance module again
    assert backend.run(copy, "cloud-init query instance_id", user="root").stdout.strip() == name


@incus_only
def test_a_suite_no_server_has_is_built_offline_and_boots_and_its_cloud_variant_from_it(new_name, monkeypatch):
    """The offline recipe end to end for another suite (trixie), under throwaway aliases: the
    plain image by debootstrap, then its cloud variant from the plain image's tree (no second
    debootstrap) with cloud-init running user-data."""
    cli = IncusCLI()
    alias = f"pytest-orbstack-test/{secrets.token_hex(3)}/debian/trixie"
    name, cloud_name = new_name(), new_name()
    started = time.monotonic()
    try:
        rootfs.build(cli, "debian", "trixie", alias, cloud=False)
        print(f"trixie built and imported in {time.monotonic() - started:.1f}s")
        assert has_image(cli, alias) is None
        assert incus("launch", alias, name).returncode == 0
        probe = ("until [ -S /run/systemd/private ]; do sleep 0.1; done; systemctl is-system-running --wait; "
                 ". /etc/os-release; echo $VERSION_CODENAME; hostname; "
                 "until ip -4 -o addr show eth0 | grep -q inet; do sleep 0.1; done; echo addressed")
        out = incus("exec", name, "--", "timeout", "90", "sh", "-c", probe).stdout.split()
        assert out[-3:] == ["trixie", name, "addressed"] and out[0] in ("running", "degraded")

        def no_debootstrap(*args: object) -> None:
            raise AssertionError("the cloud variant ran debootstrap")
        monkeypatch.setattr(rootfs, "debootstrap", no_debootstrap)
        started = time.monotonic()
        rootfs.build(cli, "debian", "trixie", f"{alias}/cloud", cloud=True, base=alias)
        print(f"trixie/cloud from {alias} in {time.monotonic() - started:.1f}s")
        launched = incus("launch", f"{alias}/cloud", cloud_name, "-c", f"cloud-init.user-data={WRITES_AND_ADDS}")
        assert launched.returncode == 0, launched.stderr
        check = ("cloud-init status --wait >/dev/null; cloud-init status; cat /etc/pytest-orbstack-cloud; "
                 ". /etc/os-release; echo $VERSION_CODENAME; hostname")
        out = incus("exec", cloud_name, "--", "timeout", "120", "sh", "-c", check).stdout.splitlines()
        assert out == ["status: done", "made by <cloud-init> & 'user-data'", "trixie", cloud_name]
    finally:
        for machine in (name, cloud_name):
            incus("delete", "--force", machine)
        for image in (alias, f"{alias}/cloud"):
            incus("image", "delete", image)
    assert has_image(cli, alias) is not None and has_image(cli, f"{alias}/cloud") is not None
