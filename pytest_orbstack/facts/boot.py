"""The pyinfra fact :class:`BootDrift`: systemd units whose live state differs from what a
fresh boot of the same disk would give them, in systemd's own properties (``systemctl show``
of every loaded unit).

A unit drifts (one reason each, the first that holds):

* ``NeedDaemonReload=yes``: its unit file or a drop-in changed on disk after systemd loaded it
  (no ``systemctl daemon-reload``), so a fresh boot loads the new file;
* ``UnitFileState=enabled``, wanted or required by an active unit (``WantedBy``/``RequiredBy``,
  the ``.wants`` links of ``multi-user.target``...), and failed (``ActiveState=failed``),
  restarting after a crash (``SubState=auto-restart``), never started since boot (inactive,
  never left the inactive state, no condition checked; for a ``Type=oneshot`` service also no
  "Starting" entry of it in the journal since boot: systemd forgets an inactive unit nothing
  references, as a oneshot started before it was enabled) or stopped (inactive after it was
  active; a ``Type=oneshot`` service that ran and went inactive is not, nor a unit whose last
  start was skipped by its conditions): a fresh boot starts it;
* ``UnitFileState=disabled``, active, and pulled in by nothing (no ``WantedBy``,
  ``RequiredBy``, ``BoundBy``, ``UpheldBy``, no triggering socket, timer or path unit, no D-Bus
  name to be activated by): a fresh boot does not start it;
* ``UnitFileState=enabled-runtime`` (``systemctl enable --runtime``: its links are in ``/run``,
  which no boot keeps) and active: a fresh boot neither enables nor starts it.

Only services, sockets, timers and paths drift by their state. Static, indirect, generated and
transient units are neither enabled nor disabled here, so they never drift by their state. A
service whose main process ends by itself with success (not ``Type=oneshot``) reads as stopped:
systemd's properties do not tell it from ``systemctl stop``. Units that drift
on the base image itself are expected too (a unit that fails in every container): the caller
compares the fact before and after a deploy (:meth:`.Machine.apply_golden`). Machines without
systemd give no unit.
"""

from __future__ import annotations

from pyinfra.api import FactBase

PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "Result",
              "NeedDaemonReload", "WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy",
              "BusName", "InactiveExitTimestampMonotonic", "ConditionTimestampMonotonic", "ConditionResult",
              "Type")
KINDS = (".service", ".socket", ".timer", ".path")
PULLED_BY = ("WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy", "BusName")
# systemd's "Starting UNIT..." journal entry (a start job began), logged by PID 1 with UNIT=
STARTING_ID = "7d4958e842da4a758f6c1cdc7b36dcc5"
STARTED_MARK = "--units-started-since-boot--"


class BootDrift(FactBase):
    """Units whose live state a fresh boot would not reproduce (module docstring).

    Returns ``{"myapp.service": "enabled but never started: a fresh boot starts it", ...}``.
    """

    def command(self) -> str:
        props = ",".join(PROPERTIES)
        return ("command -v systemctl >/dev/null 2>&1 || exit 0; "
                f"systemctl show --no-pager -p {props} -- $(systemctl list-units --all --plain "
                "--no-legend --no-pager | awk '{print $1}'); "
                f"echo {STARTED_MARK}; journalctl -b -q --no-pager -o cat --output-fields=UNIT "
                f"_PID=1 MESSAGE_ID={STARTING_ID} 2>/dev/null | sort -u")

    def process(self, output: list[str]) -> dict[str, str]:
        cut = output.index(STARTED_MARK) if STARTED_MARK in output else len(output)
        units, started = _blocks(output[:cut]), {line.strip() for line in output[cut + 1:]}
        active = {u["Id"] for u in units if u.get("ActiveState") in ("active", "reloading", "activating")}
        drift = {u["Id"]: reason for u in units if (reason := drift_of(u, active, started))}
        return dict(sorted(drift.items()))


def drift_of(unit: dict[str, str], active: set[str], started: set[str]) -> str:
    """Why ``unit`` (its ``systemctl show`` properties) would boot otherwise than it is now,
    given the ids of the ``active`` units and of those ``started`` since boot (the journal);
    empty when it would not (module docstring)."""
    if unit.get("LoadState") != "loaded":
        return ""
    if unit.get("NeedDaemonReload") == "yes":
        return ("its unit file changed after systemd loaded it, without systemctl daemon-reload "
                "(a fresh boot loads the new file)")
    if not unit["Id"].endswith(KINDS):
        return ""
    state, sub, enablement = unit.get("ActiveState", ""), unit.get("SubState", ""), unit.get("UnitFileState")
    wanted = set((unit.get("WantedBy", "") + " " + unit.get("RequiredBy", "")).split())
    if enablement == "enabled" and wanted & active:
        return _enabled_drift(unit, state, sub, unit["Id"] in started)
    if enablement == "disabled" and state == "active" and not any(unit.get(key) for key in PULLED_BY):
        return f"disabled but {sub or state}: a fresh boot does not start it"
    if enablement == "enabled-runtime" and state in ("active", "reloading", "activating"):
        return ("enabled with --runtime (its links are in /run) and active: a fresh boot neither "
                "enables nor starts it")
    return ""


def _enabled_drift(unit: dict[str, str], state: str, sub: str, started: bool) -> str:
    """Why an enabled ``unit`` that an active unit wants would boot otherwise; empty if not.
    ``started``: the journal has a start of it since boot."""
    if state == "failed":
        return f"enabled but failed ({unit.get('Result', '?')}): a fresh boot starts it again"
    if sub == "auto-restart":
        return "enabled but crashing (auto-restart): a fresh boot starts it anew"
    checked = not _never(unit, "ConditionTimestampMonotonic")  # (ConditionResult says "no" until then)
    if state != "inactive" or (checked and unit.get("ConditionResult") == "no"):
        return ""
    if _never(unit, "InactiveExitTimestampMonotonic"):
        # systemd forgets an inactive unit nothing referenced (a oneshot started, then enabled):
        # the journal still has its start
        if checked or (started and unit.get("Type") == "oneshot"):
            return ""
        return "enabled but never started: a fresh boot starts it"
    if unit.get("Type") != "oneshot":
        return "enabled but stopped: a fresh boot starts it"
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
