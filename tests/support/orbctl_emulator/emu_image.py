"""The image the orbctl emulator's Debian machines run: what ``orbctl create debian:...`` gives
a Mac user, as far as a Docker container can carry it.

OrbStack serves the images.linuxcontainers.org builds (its own CDN fronts them: orbstack/
swift-nio cheru/danny/next scon/images.go; #1008), made by lxc/lxc-ci's ``images/debian.yaml``
(@77eeb220da06): a debootstrap of the suite in debootstrap's default variant (every package of
priority required and important: cron, less, nano, logrotate, isc-dhcp-client, udev, vim-tiny,
...) plus, for the ``default`` variant, curl, dialog, init, iproute2, iputils-ping, locales,
netbase, net-tools, openssh-client, procps, sudo, udev, vim, isc-dhcp-client, dbus,
systemd-resolved and (amd64/arm64) pkexec, with ``en_US.UTF-8`` generated and set as ``LANG``
and ``/etc/machine-id`` "uninitialized" (made at the first boot: here an empty file does that).
Packages come with their recommendations, as lxc/distrobuilder's apt manager installs them
(``apt-get -y install``). OrbStack's setup then installs curl and masks systemd-resolved (SRC
scon/agent/setup.go).

Not carried over: systemd-networkd's DHCP on eth0 (Docker configures the address; networkd
would fight it) and the image's ``/etc/hostname``/``/etc/hosts`` templates (the emulator writes
those itself at every boot). The offline base image (``debian:<suite>``, debootstrap minbase:
scripts/dev.sh) stays as it is for the project's Docker engine; this image is derived from it
once per host, base image id and recipe (``orbemu-lxc/debian:<suite>-<base id>-<recipe>``,
labelled ``orbctl-emulator=1``; older ones are removed) and needs the Debian mirror only then.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

LABEL = "orbctl-emulator"
# lxc-ci images/debian.yaml, packages.sets for the default variant of bookworm (and trixie)
LXC_CI_DEFAULT = ("curl dialog init iproute2 iputils-ping locales netbase net-tools openssh-client procps "
                  "sudo udev vim isc-dhcp-client dbus systemd-resolved pkexec").split()
# debootstrap's default variant: every package of priority required or important in the suite
PRIORITIES = ("awk '/^Package:/{p=$2} /^Priority: (required|important)$/{print p}' "
              "/var/lib/apt/lists/*_main_binary-*_Packages | sort -u")
SETUP = ("set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
         f"apt-get install -y -q $({PRIORITIES}) {' '.join(LXC_CI_DEFAULT)}; "
         # lxc-ci post-packages: the locale built and set
         "echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen; locale-gen en_US.UTF-8; update-locale LANG=en_US.UTF-8; "
         # OrbStack: resolved disabled, stopped and masked (its DNS is its own)
         "systemctl disable systemd-resolved >/dev/null 2>&1 || true; systemctl mask systemd-resolved; "
         # lxc-ci files: machine-id "uninitialized", the dbus one removed: each machine makes its own at
         # its first boot and keeps it; a clone, a copy of the disk, shares it (G-probe). Here empty:
         # "uninitialized" would also make systemd enable every preset (networkd-wait-online) at first boot
         ": > /etc/machine-id; rm -f /var/lib/dbus/machine-id; "
         "apt-get clean; rm -rf /var/lib/apt/lists/*")
RECIPE = hashlib.sha256(SETUP.encode()).hexdigest()[:6]


@contextlib.contextmanager
def build_lock(name: str):
    """One image build at a time across emulator homes (xdist workers)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orbctl-emulator"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def derived_image(image: str, family: str, recipe: str, setup: str, docker) -> str:
    """The tag of ``image`` with ``setup`` run in it as root (``orbemu-FAMILY/REPO:VERSION-
    BASEID-RECIPE``), built when missing; older builds of the same family are removed."""
    base_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip().split(":")[-1][:12]
    repository, _, version = image.partition(":")
    repository = repository.rsplit("/", 1)[-1]
    tag = f"orbemu-{family}/{repository}:{version.split('-')[0]}-{base_id}-{recipe}"
    with build_lock(f"{family}-image"):
        if docker("image", "inspect", tag, check=False).returncode == 0:
            return tag
        temp = f"orbemu-{family}-build-{base_id}-{os.getpid()}"
        try:
            docker("run", "--name", temp, "--user", "root", "--entrypoint", "sh", image, "-c", setup)
            docker("commit", "--change", 'ENTRYPOINT ["/sbin/init"]', "--change", f"LABEL {LABEL}=1",
                   temp, tag)
        finally:
            docker("rm", "-f", temp, check=False)
        old = docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"orbemu-{family}/{repository}").stdout
        for stale in old.split():
            if stale.startswith(f"orbemu-{family}/{repository}:{version.split('-')[0]}-") and stale != tag:
                docker("rmi", stale, check=False)
    return tag


def machine_image(image: str, docker) -> str:
    """What a machine of local image ``image`` runs: for Debian, the lxc-ci default build."""
    if not image.startswith("debian:"):
        return image
    return derived_image(image, "lxc", RECIPE, SETUP, docker)
