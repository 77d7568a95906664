"""The pyinfra fact :class:`BootDrift`: systemd units whose live state differs from what a
fresh boot of the same disk would give them, in systemd's own properties (``systemctl show``
of every loaded unit).

A unit drifts (one reason each, the first that holds):

* ``NeedDaemonReload=yes``: its unit file or a drop-in changed on disk after systemd loaded it
  (no ``systemctl daemon-reload``), so a fresh boot loads the new file;
* ``UnitFileState=enabled``, wanted or required by an active unit (``WantedBy``/``RequiredBy``,
  the ``.wants`` links of ``multi-user.target``...), and failed (``ActiveState=failed``),
  restarting after a crash (``SubState=auto-restart``) or never started since boot (inactive,
  never left the inactive state, no condition checked): a fresh boot starts it;
* ``UnitFileState=disabled``, active, and pulled in by nothing (no ``WantedBy``,
  ``RequiredBy``, ``BoundBy``, ``UpheldBy``, no triggering socket, timer or path unit, no D-Bus
  name to be activated by): a fresh boot does not start it.

Only services, sockets, timers and paths drift by their state. Static, indirect, generated, transient and
runtime-enabled units are neither enabled nor disabled here, so they never drift by their
state; a oneshot service that ran and went inactive is not "never started". Units that drift
on the base image itself are expected too (a unit that fails in every container): the caller
compares the fact before and after a deploy (:meth:`.Machine.apply_golden`). Machines without
systemd give no unit.
"""

from __future__ import annotations

from pyinfra.api import FactBase

PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "Result",
              "NeedDaemonReload", "WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy",
              "BusName", "InactiveExitTimestampMonotonic", "ConditionTimestampMonotonic")
KINDS = (".service", ".socket", ".timer", ".path")
PULLED_BY = ("WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy", "BusName")


class BootDrift(FactBase):
    """Units whose live state a fresh boot would not reproduce (module docstring).

    Returns ``{"myapp.service": "enabled but never started: a fresh boot starts it", ...}``.
    """

    def command(self) -> str:
        props = ",".join(PROPERTIES)
        return ("command -v systemctl >/dev/null 2>&1 || exit 0; "
                f"systemctl show --no-pager -p {props} -- $(systemctl list-units --all --plain "
                "--no-legend --no-pager | awk '{print $1}')")

    def process(self, output: list[str]) -> dict[str, str]:
        units = _blocks(output)
        active = {u["Id"] for u in units if u.get("ActiveState") in ("active", "reloading", "activating")}
        drift = {u["Id"]: reason for u in units if (reason := drift_of(u, active))}
        return dict(sorted(drift.items()))


def drift_of(unit: dict[str, str], active: set[str]) -> str:
    """Why ``unit`` (its ``systemctl show`` properties) would boot otherwise than it is now,
    given the ids of the ``active`` units; empty when it would not (module docstring)."""
    if unit.get("LoadState") != "loaded":
        return ""
    if unit.get("NeedDaemonReload") == "yes":
        return ("its unit file changed after systemd loaded it, without systemctl daemon-reload "
                "(a fresh boot loads the new file)")
    if not unit["Id"].endswith(KINDS):
        return ""
    state, sub = unit.get("ActiveState", ""), unit.get("SubState", "")
    wanted = set((unit.get("WantedBy", "") + " " + unit.get("RequiredBy", "")).split())
    if unit.get("UnitFileState") == "enabled" and wanted & active:
        if state == "failed":
            return f"enabled but failed ({unit.get('Result', '?')}): a fresh boot starts it again"
        if sub == "auto-restart":
            return "enabled but crashing (auto-restart): a fresh boot starts it anew"
        if state == "inactive" and _never(unit, "InactiveExitTimestampMonotonic") \
                and _never(unit, "ConditionTimestampMonotonic"):
            return "enabled but never started: a fresh boot starts it"
    if unit.get("UnitFileState") == "disabled" and state == "active" \
            and not any(unit.get(key) for key in PULLED_BY):
        return f"disabled but {sub or state}: a fresh boot does not start it"
    return ""


def _never(unit: dict[str, str], key: str) -> bool:
    return unit.get(key, "0") in ("", "0")


def _blocks(output: list[str]) -> list[dict[str, str]]:
    """``systemctl show``'s blank-line separated property blocks, as dicts."""
    blocks: list[dict[str, str]] = [{}]
    for line in output:
        if not line.strip():
            blocks.append({})
        elif "=" in line:
            key, _, value = line.partition("=")
            blocks[-1][key] = value.strip()
    return [b for b in blocks if b.get("Id")]
