"""The images of the orbctl emulator's Incus machines: the same recipes as on Docker
(emu_image.py: the lxc-ci default build; emu_cloudinit.py: with cloud-init), run once per host
in a temporary instance of the offline image ``scripts/dev.sh incus`` imports
(``pytest-orbstack/<distro>/<suite>``) and published as ``orbemu-<family>/<distro>/<suite>-
<base fingerprint>-<recipe>`` (older ones removed); they need the Debian mirror only then.
As OrbStack masks systemd-resolved, a machine's ``/etc/resolv.conf`` names the bridge's own DNS
server (``search orb.local``) instead; without binfmt_misc on the host, systemd-binfmt is masked."""

from __future__ import annotations

import hashlib
import json
import os
import time

import emu_cloudinit
import emu_image
from emu_image import build_lock

ONLINE = "for i in $(seq 100); do getent hosts deb.debian.org >/dev/null && break; sleep 0.2; done; "
# machines have proc:rw (as OrbStack's), so systemd-binfmt runs; without binfmt_misc on the host
# (OrbStack's VM has it) it would fail and leave every machine "degraded": masked then
BINFMT = "[ -e /proc/sys/fs/binfmt_misc/register ] || ln -sf /dev/null /etc/systemd/system/systemd-binfmt.service"


def resolver(gateway: str) -> str:
    return f"rm -f /etc/resolv.conf; printf 'nameserver {gateway}\\nsearch orb.local\\n' > /etc/resolv.conf"


def incus_image(base: str, cloud: bool, incus, gateway: str) -> str:
    """The alias of the image a machine of offline image ``base`` runs (with cloud-init when
    ``cloud``), built when missing."""
    setup = f"{ONLINE}{emu_image.SETUP}; {resolver(gateway)}; {BINFMT}"
    image = derive(base, "lxc", setup, incus)
    return derive(image, "cloud", f"{emu_cloudinit.SETUP}", incus) if cloud else image


def derive(base: str, family: str, setup: str, incus) -> str:
    """``base`` with ``setup`` run in it as root, published once (older builds removed)."""
    recipe = hashlib.sha256(setup.encode()).hexdigest()[:6]
    target = json.loads(incus("query", f"/1.0/images/aliases/{base}", project=False).stdout)["target"]
    suite = base.split("/", 1)[1].rsplit("-", 2)[0] if base.startswith("orbemu-") else base.split("/", 1)[1]
    alias = f"orbemu-{family}/{suite}-{target[:12]}-{recipe}"
    with build_lock(f"incus-{family}-image"):
        if incus("image", "info", alias, check=False, project=False).returncode == 0:
            return alias
        temp = f"orbemu-build-{family}-{os.getpid()}"
        try:
            incus("launch", base, temp, project=False)
            deadline = time.monotonic() + 60
            while incus("exec", temp, "--", "systemctl", "is-system-running", check=False,
                        project=False).stdout.strip() not in ("running", "degraded"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            incus("exec", temp, "--", "sh", "-c", f"set -e; {setup}", project=False)
            incus("stop", temp, project=False)
            incus("publish", temp, "--alias", alias, project=False)
        finally:
            incus("delete", "--force", temp, check=False, project=False)
        listed = json.loads(incus("image", "list", "--format", "json", project=False).stdout)
        for name in (a["name"] for i in listed for a in i.get("aliases", [])):
            if name.startswith(f"orbemu-{family}/{suite}-") and name != alias:
                incus("image", "delete", name, check=False, project=False)
    return alias
