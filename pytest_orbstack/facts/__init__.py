"""PyInfra facts of pytest-orbstack, in two groups (ADR-0002, host-centric model):

* engine facts, gathered on the host that runs the engine (``@local``):
  :class:`OrbStackMachines`, :class:`OrbStackMachine`, :class:`OrbStackConfig`,
  :class:`OrbStackConfigValue` (:mod:`.engine`);
* machine facts, gathered inside the current machine: :class:`MachineNetwork`,
  :class:`Connectivity`, :class:`DnsLookup`, :class:`MachineStatus`, :class:`SystemLogs`
  (:mod:`.machine`), :class:`StaleServices` (:mod:`.services`), :class:`BootDrift`
  (:mod:`.boot`).

Information is a fact, never an operation; cross-machine exec and copy, generic health checks
and automated recovery are left out on purpose (docs/design.md).
"""

from pytest_orbstack.facts.boot import BootDrift
from pytest_orbstack.facts.engine import OrbStackConfig, OrbStackConfigValue, OrbStackMachine, OrbStackMachines
from pytest_orbstack.facts.machine import Connectivity, DnsLookup, MachineNetwork, MachineStatus, SystemLogs
from pytest_orbstack.facts.services import StaleServices

__all__ = ["BootDrift", "Connectivity", "DnsLookup", "MachineNetwork", "MachineStatus", "OrbStackConfig",
           "OrbStackConfigValue", "OrbStackMachine", "OrbStackMachines", "StaleServices",
           "SystemLogs"]
