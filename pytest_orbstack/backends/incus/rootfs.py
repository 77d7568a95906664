"""The one recipe of the Incus engine's offline images (the package builds them on first use and
``scripts/dev.sh incus`` calls it: ``python -m pytest_orbstack.backends.incus.images``).

A Debian tree from :func:`~pytest_orbstack.backends.debootstrap.debootstrap` (the Docker path's
base) plus what networking in an LXC container needs, as lxc-ci's Debian images have it: ``udev``
(without it systemd-networkd waits for ever for eth0 to be "initialized") and
``systemd-resolved``; networkd runs DHCP on eth0 with the MAC as client id (copies share their
source's machine-id), resolved takes the DNS server and search domain from it. The ``cloud``
variant (made from the plain image's tree when this daemon has it) adds Debian's
``cloud-init`` with the NoCloud datasource seeded by the image's templates from the
instance's ``cloud-init.user-data``/``cloud-init.vendor-data`` keys on create, as the
``images:`` cloud variants are (copies keep the seed and the instance-id, so they run nothing
per-instance again). docs/incus.md says what was verified.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pytest_orbstack import settings
from pytest_orbstack.backends.debootstrap import BUILD_TIMEOUT, debootstrap
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus.cli import UNREACHABLE, IncusCLI
from pytest_orbstack.backends.process import last_line
from pytest_orbstack.errors import UnknownImage

NETWORK_EXTRA = ("udev", "systemd-resolved")
CLOUD_EXTRA = ("cloud-init",)
ETH0 = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nUseDomains=true\nUseMTU=true\nClientIdentifier=mac\n"
SEED = "/var/lib/cloud/seed/nocloud-net"
# NoCloud only (not the LXD datasource of /dev/lxd/sock, which also answers): the seed is the
# image's; networkd's own configuration stays (cloud-init's would replace it); the hostname is
# Incus' template's (a renamed machine keeps its new name)
CLOUD_CFG = "datasource_list: [NoCloud]\nnetwork: {config: disabled}\npreserve_hostname: true\n"
EMPTY_CLOUD_CONFIG = "#cloud-config\n{}\n"
TEMPLATES = {  # path in the machine -> (template name, when Incus applies it, its text)
    "/etc/hostname": ("hostname.tpl", ["create", "copy", "rename"], "{{ instance.name }}\n"),
    "/etc/hosts": ("hosts.tpl", ["create", "copy", "rename"],
                   "127.0.0.1 localhost\n127.0.1.1 {{ instance.name }}\n"
                   "::1 localhost ip6-localhost ip6-loopback\n"),
}
CLOUD_TEMPLATES = {
    f"{SEED}/meta-data": ("cloud-meta-data.tpl", ["create"],
                          "instance-id: {{ instance.name }}\nlocal-hostname: {{ instance.name }}\n"),
    f"{SEED}/user-data": ("cloud-user-data.tpl", ["create"],
                          '{{ config_get("cloud-init.user-data", properties.default) }}\n'),
    f"{SEED}/vendor-data": ("cloud-vendor-data.tpl", ["create"],
                            '{{ config_get("cloud-init.vendor-data", properties.default) }}\n'),
}


def install(rootfs: Path, packages: tuple[str, ...]) -> None:
    """apt-get install ``packages`` in the tree (apt, not debootstrap's ``--include``, resolves
    virtual dependencies such as cloud-init's ``python3-cffi-backend-api-min``), without
    recommends, leaving no package lists or archives. The tree's resolv.conf is the host's
    meanwhile (systemd-resolved left a link to its stub, which nothing serves in a chroot)."""
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    script = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q "
              f"--no-install-recommends {' '.join(packages)} && apt-get clean && rm -rf /var/lib/apt/lists/*")
    done = subprocess.run(["chroot", str(rootfs), "sh", "-c", script], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise UnknownImage(f"apt-get install {' '.join(packages)} in the image tree failed: "
                           f"{last_line(done.stderr or done.stdout, f'exit status {done.returncode}')}")


def configure(rootfs: Path, cloud: bool) -> None:
    """Give the debootstrap tree its network set-up (and cloud-init's settings), an empty
    machine-id (each machine makes its own) and no hostname (the template writes it)."""
    network = rootfs / "etc/systemd/network"
    network.mkdir(parents=True, exist_ok=True)
    (network / "eth0.network").write_text(ETH0)
    subprocess.run(["chroot", str(rootfs), "systemctl", "enable", "systemd-networkd.service",
                    "systemd-resolved.service"], capture_output=True, check=True)
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    if cloud:
        (rootfs / "etc/cloud/cloud.cfg.d/90-pytest-orbstack.cfg").write_text(CLOUD_CFG)
        # the locale module needs the locales package (update-locale), which minbase lacks
        cfg = rootfs / "etc/cloud/cloud.cfg"
        cfg.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                               if line.rstrip() != " - locale"))


def metadata(distro: str, codename: str, cloud: bool) -> tuple[str, dict[str, str]]:
    """The image's ``metadata.yaml`` (JSON, which is YAML) and its templates by file name."""
    templates = {**TEMPLATES, **(CLOUD_TEMPLATES if cloud else {})}
    variant = "cloud" if cloud else "default"
    data = {
        "architecture": platform.machine(),
        "creation_date": int(time.time()),
        "properties": {"os": distro, "release": codename, "variant": variant,
                       "description": f"{distro} {codename} {variant} (pytest-orbstack, debootstrap minbase)"},
        "templates": {path: {"when": when, "template": name,
                             **({"properties": {"default": EMPTY_CLOUD_CONFIG}} if path.startswith(SEED) else {})}
                      for path, (name, when, _) in templates.items()},
    }
    return json.dumps(data, indent=1), {name: text for name, _, text in templates.values()}


def _tar(directory: Path, target: Path, *members: str) -> None:
    done = subprocess.run(["tar", "-C", str(directory), "--numeric-owner", "-cf", str(target),
                           *(members or (".",))], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise UnknownImage(f"tar of the image tree failed: {last_line(done.stderr)}")


def tree_of(cli: IncusCLI, base: str, scratch: Path, rootfs: Path) -> None:
    """Unpack the tree of image ``base`` (one this module built: its rootfs is a tar) into
    ``rootfs``, through ``incus image export``."""
    export = scratch / "base"
    done = cli.call(cmd.image_export(base, str(export)), check=False, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise UnknownImage(f"incus image export of {base} failed: {last_line(done.stderr)}")
    rootfs.mkdir()
    unpacked = subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-xpf", f"{export}.root"],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if unpacked.returncode != 0:
        raise UnknownImage(f"unpacking the tree of {base} failed: {last_line(unpacked.stderr)}")
    Path(f"{export}.root").unlink()


def build(cli: IncusCLI, distro: str, codename: str, alias: str, cloud: bool, base: str | None = None) -> None:
    """Make the tree of ``codename`` (debootstrap, or the tree of image ``base``: the cloud
    variant starts from the plain one), set it up (:func:`configure`) and ``incus image import``
    it as ``alias``; UnknownImage saying which step failed. The scratch tree lives under
    /var/tmp and is removed whatever happens."""
    if distro != "debian":
        raise UnknownImage(f"only Debian is built without an image server, not {distro}")
    scratch = Path(tempfile.mkdtemp(prefix="pytest-orbstack-incus.", dir=settings.scratch_dir()))
    try:
        rootfs = scratch / "rootfs"
        if base is None:
            debootstrap(codename, rootfs, NETWORK_EXTRA)
        else:
            tree_of(cli, base, scratch, rootfs)
        if cloud:
            install(rootfs, CLOUD_EXTRA)
        configure(rootfs, cloud)
        meta = scratch / "meta"
        (meta / "templates").mkdir(parents=True)
        yaml, templates = metadata(distro, codename, cloud)
        (meta / "metadata.yaml").write_text(yaml)
        for name, text in templates.items():
            (meta / "templates" / name).write_text(text)
        _tar(meta, scratch / "meta.tar", "metadata.yaml", "templates")
        _tar(rootfs, scratch / "rootfs.tar")
        shutil.rmtree(rootfs)
        done = cli.call(cmd.image_import(str(scratch / "meta.tar"), str(scratch / "rootfs.tar"), alias),
                        check=False, timeout=BUILD_TIMEOUT)
        if done.returncode != 0 and any(s in done.stderr for s in UNREACHABLE):
            raise cli.error(done)  # the daemon, not the image
        if done.returncode != 0:
            raise UnknownImage(f"incus image import of {alias} failed: {last_line(done.stderr)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
