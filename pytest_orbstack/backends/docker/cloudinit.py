"""cloud-init on Docker machines: Debian's own ``cloud-init``, run by its own systemd units from
a NoCloud seed, as on OrbStack (https://docs.orbstack.dev/machines/cloud-init: ``orb create -c
USER_DATA``), so the same user-data gives the same machine.

* Every prepared image has the ``cloud-init`` package, set up by :data:`IMAGE_SETUP`: the
  NoCloud datasource only, no network configuration (Docker's), the hostname left alone (a
  clone keeps its own), and disabled by ``/etc/cloud/cloud-init.disabled``: a machine without
  user-data boots without it (its generator stops at that file, before ``ds-identify``).
* :func:`run` seeds a booted machine (``/var/lib/cloud/seed/nocloud/{user-data,meta-data}``,
  instance-id and local-hostname = the machine's name), removes that file, re-runs the
  generators and starts ``cloud-init.target``: cloud-init's own four units run it, and then
  again at every boot, as on any cloud machine (per-boot modules such as ``bootcmd`` run each
  boot, per-instance ones once). A clone keeps the seed and the instance-id, so cloud-init
  sees the same instance and runs nothing per-instance again.
* Failures are only logged (``cloud-init status --long``, :data:`LOG`): create goes on, as
  the user-data failures of orbstack/orbstack#1446 leave machines behind.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from pytest_orbstack import settings
from pytest_orbstack.backends.docker.cli import DockerCLI
from pytest_orbstack.errors import CommandTimeout

LOG = "/var/log/cloud-init-output.log"
SEED = "/var/lib/cloud/seed/nocloud"
DISABLED = "/etc/cloud/cloud-init.disabled"
TIMEOUT = settings.CLOUD_INIT_TIMEOUT
SETTINGS = ("datasource_list: [NoCloud]", "network: {config: disabled}", "preserve_hostname: true")
# the locale module needs the locales package (update-locale), which debootstrap's minbase lacks:
# it could only fail, so it leaves Debian's module list
IMAGE_SETUP = ("printf '%s\\n' " + " ".join(f"'{line}'" for line in SETTINGS)
               + " > /etc/cloud/cloud.cfg.d/90-pytest-orbstack.cfg && "
               f"sed -i '/^ - locale$/d' /etc/cloud/cloud.cfg && touch {DISABLED}")


def seed_script(machine: str) -> str:
    """Shell, as root in booted ``machine``, that seeds cloud-init with the base64 user-data on
    its stdin, enables it and waits for it to finish (whatever its outcome)."""
    meta = json.dumps({"instance-id": machine, "local-hostname": machine})
    return (f"set -e; mkdir -p {SEED}; base64 -d > {SEED}/user-data; "
            f"printf '%s\\n' '{meta}' > {SEED}/meta-data; rm -f {DISABLED}; "
            "systemctl daemon-reload; systemctl start --no-block cloud-init.target; "
            "cloud-init status --wait >/dev/null || true")


def run(docker: DockerCLI, machine: str, user_data: str) -> None:
    """Run cloud-init with the user-data file ``user_data`` in booted ``machine`` and wait for
    it; a failing (or still running after :data:`TIMEOUT`) cloud-init is only logged."""
    data = base64.b64encode(Path(user_data).read_bytes()).decode()
    try:
        docker.exec_root(machine, seed_script(machine), input=data, timeout=TIMEOUT)
    except CommandTimeout:
        docker.exec_root(machine, f"echo 'pytest-orbstack: cloud-init still running after "
                                  f"{TIMEOUT:.0f}s; create went on' >> {LOG}")
