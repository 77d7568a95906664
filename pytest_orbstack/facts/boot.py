"""The pyinfra fact :class:`BootDrift`: systemd units whose live state differs from what a
fresh boot of the same disk would give them, in systemd's own properties (``systemctl show``
of every loaded unit), its journal since boot (which units PID 1 started and stopped) and the
runtime links of ``systemctl enable --runtime`` (``/run/systemd/system/*.wants``).

A unit drifts (one reason each, the first that holds):

* ``NeedDaemonReload=yes``: its unit file or a drop-in changed on disk after systemd loaded it
  (no ``systemctl daemon-reload``), so a fresh boot loads the new file;
* masked (``LoadState=masked``) or its unit file gone (``not-found``) while it still runs: a
  fresh boot does not start it;
* ``UnitFileState=enabled``, wanted or required by an active unit (``WantedBy``/``RequiredBy``,
  the ``.wants`` links of ``multi-user.target``...), and failed (``ActiveState=failed``),
  restarting after a failure (``SubState=auto-restart``, ``Result`` not ``success``: a
  ``Restart=always`` loop is as a boot leaves it), stopped since boot (inactive, a stop of it in
  the journal) or never started since boot (inactive, never left the inactive state, no
  condition checked, no start of it in the journal: systemd forgets an inactive unit nothing
  references, as one started before it was enabled): a fresh boot starts it. A unit that ran
  and ended by itself (a oneshot, a job) or that its conditions skipped does not drift;
* ``UnitFileState=disabled``, active, and pulled in by nothing (no ``WantedBy``,
  ``RequiredBy``, ``BoundBy``, ``UpheldBy``, no triggering socket, timer or path unit, no D-Bus
  name to be activated by): a fresh boot does not start it;
* ``UnitFileState=enabled-runtime`` with a link of its own in ``/run/systemd/system``
  (``systemctl enable --runtime``: no boot keeps ``/run``) and active: a fresh boot neither
  enables nor starts it. Links a generator makes (``/run/systemd/generator*``: PostgreSQL's,
  Postfix's clusters) are made again at every boot and do not drift.

Only services, sockets, timers and paths drift by their state. Static, indirect, generated and
transient units are neither enabled nor disabled here, so they never drift by their state.
Units that drift on the base image itself are expected too (a unit that fails in every
container): the caller compares the fact before and after a deploy
(:meth:`.Machine.apply_golden`). Machines without systemd give no unit; without a journal no
stop is seen.
"""

from __future__ import annotations

import itertools

from pyinfra.api import FactBase

PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "Result",
              "NeedDaemonReload", "WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy",
              "BusName", "InactiveExitTimestampMonotonic", "ConditionTimestampMonotonic", "ConditionResult")
KINDS = (".service", ".socket", ".timer", ".path")
PULLED_BY = ("WantedBy", "RequiredBy", "BoundBy", "UpheldBy", "TriggeredBy", "BusName")
ACTIVE = ("active", "reloading", "activating")
# systemd's journal entries of PID 1 (its catalog): "Starting UNIT...", "Started UNIT", "Stopped UNIT"
STARTED_IDS = ("7d4958e842da4a758f6c1cdc7b36dcc5", "39f53479d3a045ac8e11786248231fbf")
STOPPED_ID = "9d1aaa27d60140bd96365438aad20286"
MARKS = ("--started--", "--stopped--", "--runtime-links--")


def _journal_units(*ids: str) -> str:
    matches = " ".join(f"MESSAGE_ID={i}" for i in ids)
    return f"journalctl -b -q --no-pager -o cat --output-fields=UNIT _PID=1 {matches} 2>/dev/null | sort -u"


class BootDrift(FactBase):
    """Units whose live state a fresh boot would not reproduce (module docstring).

    Returns ``{"myapp.service": "enabled but never started: a fresh boot starts it", ...}``.
    """

    def command(self) -> str:
        props = ",".join(PROPERTIES)
        return ("command -v systemctl >/dev/null 2>&1 || exit 0; "
                f"systemctl show --no-pager -p {props} -- $(systemctl list-units --all --plain "
                "--no-legend --no-pager | awk '{print $1}'); "
                f"echo {MARKS[0]}; {_journal_units(*STARTED_IDS)}; echo {MARKS[1]}; {_journal_units(STOPPED_ID)}; "
                f"echo {MARKS[2]}; find /run/systemd/system -mindepth 2 -maxdepth 2 "
                "\\( -path '*.wants/*' -o -path '*.requires/*' \\) -printf '%f\\n' 2>/dev/null")

    def process(self, output: list[str]) -> dict[str, str]:
        cuts = [output.index(m) if m in output else len(output) for m in MARKS] + [len(output)]
        units = _blocks(output[:cuts[0]])
        started, stopped, runtime = ({line.strip() for line in output[a + 1:b]} for a, b in itertools.pairwise(cuts))
        active = {u["Id"] for u in units if u.get("ActiveState") in ACTIVE}
        drift = {u["Id"]: reason for u in units if (reason := drift_of(u, active, (started, stopped, runtime)))}
        return dict(sorted(drift.items()))


def drift_of(unit: dict[str, str], active: set[str], journal: tuple[set[str], set[str], set[str]]) -> str:
    """Why ``unit`` (its ``systemctl show`` properties) would boot otherwise than it is now,
    given the ids of the ``active`` units and the ``journal``'s units started and stopped
    since boot and the units with runtime links; empty when it would not (module docstring)."""
    name, load, state = unit["Id"], unit.get("LoadState"), unit.get("ActiveState", "")
    if load in ("masked", "not-found") and state in ACTIVE and name.endswith(KINDS):
        what = "masked" if load == "masked" else "its unit file is gone"
        return f"{what} but it runs: a fresh boot does not start it"
    if load != "loaded":
        return ""
    if unit.get("NeedDaemonReload") == "yes":
        return ("its unit file changed after systemd loaded it, without systemctl daemon-reload "
                "(a fresh boot loads the new file)")
    if not name.endswith(KINDS):
        return ""
    sub, enablement = unit.get("SubState", ""), unit.get("UnitFileState")
    wanted = set((unit.get("WantedBy", "") + " " + unit.get("RequiredBy", "")).split())
    started, stopped, runtime = journal
    if enablement == "enabled" and wanted & active:
        return _enabled_drift(unit, state, sub, started=name in started, stopped=name in stopped)
    if enablement == "disabled" and state == "active" and not any(unit.get(key) for key in PULLED_BY):
        return f"disabled but {sub or state}: a fresh boot does not start it"
    if enablement == "enabled-runtime" and state in ACTIVE and name in runtime:
        return ("enabled with --runtime (its links are in /run) and active: a fresh boot neither "
                "enables nor starts it")
    return ""


def _enabled_drift(unit: dict[str, str], state: str, sub: str, *, started: bool, stopped: bool) -> str:
    """Why an enabled ``unit`` that an active unit wants would boot otherwise; empty if not.
    ``started``/``stopped``: the journal has a start/a stop of it since boot."""
    result = unit.get("Result", "?")
    if state == "failed":
        return f"enabled but failed ({result}): a fresh boot starts it again"
    if sub == "auto-restart" and result != "success":
        return f"enabled but crashing ({result}, auto-restart): a fresh boot starts it anew"
    checked = not _never(unit, "ConditionTimestampMonotonic")  # (ConditionResult says "no" until then)
    if state != "inactive" or (checked and unit.get("ConditionResult") == "no"):
        return ""
    if stopped:
        return "enabled but stopped: a fresh boot starts it"
    if started or checked or not _never(unit, "InactiveExitTimestampMonotonic"):
        return ""  # it ran and ended by itself, or its conditions were checked
    return "enabled but never started: a fresh boot starts it"


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
