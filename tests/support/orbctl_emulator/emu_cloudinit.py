"""cloud-init as the orbctl emulator runs it: the distro's own ``cloud-init``, from a NoCloud seed.

OrbStack runs cloud-init on ``create -c/--user-data FILE`` (https://docs.orbstack.dev/machines/
cloud-init), before its own setup adds the default user (#1446: a user that user-data names gets
uid 1000 from cloud-init, ``write_files`` owned by the default user fail unless deferred) and
inside the create (#2555: a ``power_state`` reboot cancels it). Its own failure is logged and
does not fail create (OrbStack's source, orbstack/swift-nio cheru/danny/next scon/agent/
setup.go: ``cloud-init status --wait``, a failure only warned; real creates fail when
OrbStack's later setup clashes with what cloud-init did, #1446, which the emulator does not
reproduce). ASSUMED: the distro's stock cloud.cfg (Debian: ``users: [default]`` is its
``debian`` user).

Machines with user-data run from ``orbemu-cloud/<distro>:<version>-<base id>-<recipe>``: the
machine image (emu_image.py) with ``cloud-init`` installed, the NoCloud datasource only, no network configuration
and the hostname left alone, built once (labelled ``orbctl-emulator=1``; older ones are removed).
The seed is written once the machine booted; ``systemctl daemon-reload`` lets cloud-init's
generator enable it and its own units run it, then and at every later boot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from emu_image import derived_image

SEED = "/var/lib/cloud/seed/nocloud"
DISABLED = "/etc/cloud/cloud-init.disabled"
SETTINGS = ("datasource_list: [NoCloud]", "network: {config: disabled}", "preserve_hostname: true")
SETUP = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q "
         "--no-install-recommends cloud-init && printf '%s\\n' "
         + " ".join(f"'{line}'" for line in SETTINGS) + " > /etc/cloud/cloud.cfg.d/90-orbemu.cfg"
         + f" && touch {DISABLED}")
RECIPE = hashlib.sha256(SETUP.encode()).hexdigest()[:6]


def cloud_image(image: str, docker) -> str:
    """The tag of ``image`` with cloud-init, built when missing."""
    return derived_image(image, "cloud", RECIPE, SETUP, docker)


def seed_script(machine: str) -> str:
    """Shell, as root in a booted machine, that seeds cloud-init with the base64 user-data on
    stdin, enables it and waits for it (whatever its outcome)."""
    meta = json.dumps({"instance-id": machine, "local-hostname": machine})
    return (f"set -e; mkdir -p {SEED}; base64 -d > {SEED}/user-data; "
            f"printf '%s\\n' '{meta}' > {SEED}/meta-data; rm -f {DISABLED}; "
            "systemctl daemon-reload; systemctl start --no-block cloud-init.target; "
            "cloud-init status --wait >/dev/null || true")


def run_cloud_init(handle: str, machine: str, data: bytes, execute, log_path: Path) -> None:
    """Run cloud-init with user-data ``data`` in booted machine ``handle``; its output goes to the
    console log (``orbctl logs``), its failures are never raised."""
    execute(handle, ["sh", "-c", seed_script(machine)], input=base64.b64encode(data), binary=True)
    output = execute(handle, ["cat", "/var/log/cloud-init-output.log"]).stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(output)
