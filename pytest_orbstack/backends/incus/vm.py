"""``vm=True`` on Incus: whether the daemon can run virtual machines, asked before any machine.

An Incus VM (``incus launch --vm``) needs the daemon's ``qemu`` driver, which incusd loads only
when QEMU is installed and ``/dev/kvm`` and the ``vhost_vsock`` kernel module are there (its
agent talks to the VM over vsock). Without it incusd lists only ``lxc`` as its driver and
records why as an "Instance type not operational" warning; that reason is the one line a
``vm=True`` request fails with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_orbstack.backends.incus.cli import IncusCLI
from pytest_orbstack.backends.incus.commands import INCUS, at

NOT_OPERATIONAL = "Instance type not operational"


def server(remote: str = "") -> list[str]:
    """The daemon's description (``environment.driver`` lists its instance drivers)."""
    return [INCUS, "query", at(remote, "/1.0")]


def warnings(remote: str = "") -> list[str]:
    """The daemon's warnings, each whole (its reasons for a driver that does not work)."""
    return [INCUS, "query", at(remote, "/1.0/warnings?recursion=1")]


def refusal(server_json: Mapping[str, Any], warning_list: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the daemon (``server_json``, ``/1.0``) has its ``qemu`` driver; else one line
    saying why not, with incusd's own reason from ``warning_list`` when it gave one."""
    env = server_json.get("environment") or {}
    drivers = [d.strip() for d in str(env.get("driver") or "").split("|") if d.strip()]
    if "qemu" in drivers:
        return None
    reasons = sorted({str(w.get("last_message")) for w in warning_list
                      if w.get("type") == NOT_OPERATIONAL and w.get("last_message")})
    why = f"incusd: {'; '.join(reasons)}" if reasons else "no QEMU, /dev/kvm or vhost_vsock"
    return (f"vm=True: this Incus daemon cannot run VMs (drivers: {', '.join(drivers) or 'none'}; "
            f"{why}); leave vm= out for a system container, or use a host with KVM and vhost_vsock")


def parse(server_out: str, warnings_out: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The JSON of :func:`server` and :func:`warnings` (an unreadable answer counts as empty)."""
    def load(text: str, empty: Any) -> Any:
        try:
            return json.loads(text) if text.strip() else empty
        except ValueError:
            return empty
    return load(server_out, {}), load(warnings_out, [])


def ask(cli: IncusCLI) -> str | None:
    """None when ``cli``'s daemon can run VMs, else why not in one line (:func:`refusal`)."""
    described = cli.call(server(cli.remote)).stdout
    return refusal(*parse(described, cli.call(warnings(cli.remote), check=False).stdout))
