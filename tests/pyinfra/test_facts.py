"""pytest-orbstack's facts: OrbStack facts on the OrbStack host (@local), machine facts inside
machines through the @orbstack connector (pyinfra's API)."""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import Config, Inventory, State
from pyinfra.api.facts import get_facts
from pyinfra_runs import apply_deploy
from testenv import unique

from pytest_orbstack.facts import (
    Connectivity,
    DnsLookup,
    MachineNetwork,
    MachineStatus,
    OrbStackConfig,
    OrbStackMachine,
    OrbStackMachines,
    SystemLogs,
)


def machine_facts(machine, **wanted):
    values = {}

    def gather():
        for key, (cls, kwargs) in wanted.items():
            values[key] = host.get_fact(cls, **kwargs)

    result = apply_deploy(machine, gather, backend="orbstack")
    assert result.error is None, result.summary()
    return values


def local_fact(cls, **kwargs):
    state = State(Inventory((["@local"], {})), Config())
    from pyinfra.api.connect import connect_all
    connect_all(state)
    return next(iter(get_facts(state, cls, kwargs=kwargs).values()))


def test_orbstack_facts_on_the_host(orb, orb_machine):
    machines = {m["name"]: m for m in local_fact(OrbStackMachines)}
    assert machines[orb_machine]["state"] == "running"
    assert machines[orb_machine]["distro"] == "debian"
    one = local_fact(OrbStackMachine, machine=orb_machine)
    assert one["domain"] == f"{orb_machine}.orb.local"
    assert one["ip4"] == orb.info(orb_machine).ip4
    assert local_fact(OrbStackMachine, machine="not-there") is None
    assert local_fact(OrbStackConfig)["memory_mib"].isdigit()


def test_network_dns_connectivity_status_logs(orb, orb_machine):
    peer = unique("peer")
    orb.create("debian:bookworm", peer)
    try:
        v = machine_facts(
            orb_machine,
            net=(MachineNetwork, {}),
            dns=(DnsLookup, {"hostname": f"{peer}.orb.local"}),
            nodns=(DnsLookup, {"hostname": "no-such-host.invalid"}),
            ping=(Connectivity, {"target": f"{peer}.orb.local", "method": "ping"}),
            closed=(Connectivity, {"target": f"{peer}.orb.local", "method": "tcp", "port": 9,
                                   "timeout": 2}),
            status=(MachineStatus, {}),
            logs=(SystemLogs, {"lines": 20, "_sudo": True}),
        )
    finally:
        orb.delete(peer)
    net = v["net"]
    assert net["hostname"] == orb_machine and net["domain"] == f"{orb_machine}.orb.local"
    assert net["ip4"] == orb.info(orb_machine).ip4
    assert ipaddress.ip_address(net["ip4"]) in ipaddress.ip_network(net["subnet4"])
    assert v["dns"] and all(ipaddress.ip_address(a) for a in v["dns"])
    assert v["nodns"] == []
    assert v["ping"]["reachable"] is True
    assert v["closed"]["reachable"] is False
    assert v["status"]["system"] in ("running", "degraded")
    assert v["status"]["mem_total_kib"] > 0 and v["status"]["os"].startswith("Debian")
    assert 0 < len(v["logs"]) <= 20
