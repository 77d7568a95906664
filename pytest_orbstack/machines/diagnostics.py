"""What a failure report shows of a machine: its failed units (each with its own journal),
cloud-init's status when cloud-init ran, and the tail of its journal.

The journal tail leaves out what never explains a failure: the lines every ``sudo`` command
adds (session opened/closed, pam, user slices) and each boot's own start-up, from journald
starting to systemd's "Startup finished" (units starting, targets reached, conditions
skipped). Start-up lines of priority warning or worse stay, and a unit that failed at boot is
shown anyway, with its own journal, under "failed units". The deploy's lines, the test's and
those of services started afterwards are all kept, whenever they were written (a clone's
journal holds its golden machine's deploy, then the clone's own boot).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_orbstack.machines.machine import Machine

JOURNAL_LINES = 80
WARNING = 4  # syslog priority: 0 emerg ... 4 warning ... 7 debug
# Lines every command run with sudo adds to the journal: they bury what failed.
NOISE = re.compile(r"\bsudo\[\d+\]:|pam_unix\(|systemd-logind\[\d+\]: (New|Removed) session|"
                   r"(Started|Finished|Stopped|Starting|Stopping) (Session \d+|session-\d+\.scope|"
                   r"User (Manager|Runtime Directory)|user(-runtime-dir)?@\d+\.service)|"
                   r"\bsession-\d+\.scope: Deactivated|user@\d+\.service: Deactivated|"
                   # dbus in a container without CAP_SYS_RESOURCE, at every start: never a cause
                   r"dbus-daemon\[\d+\]: .*Failed to set fd limit")
JOURNAL_MARK = "--- journal"
SCRIPT = (
    "failed=$(systemctl list-units --state=failed --no-legend --plain 2>/dev/null | awk '{print $1}')\n"
    '[ -z "$failed" ] || echo "failed units: $(echo $failed)"\n'
    'for unit in $failed; do echo "--- journal of $unit"; '
    'journalctl -u "$unit" -n 20 --no-pager -q -o short-iso; done\n'
    # cloud-init's generator leaves this file when it enabled cloud-init for this boot
    'if [ -e /run/cloud-init/enabled ]; then echo "--- cloud-init status"; '
    "cloud-init status --long 2>&1; fi\n"
    f'echo "{JOURNAL_MARK}"\n'
    "journalctl -n 1000 --no-pager -q -o json --output-fields=MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,_PID")


def _entry(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journalctl's form of a message that is not UTF-8
        message = bytes(message).decode(errors="replace")
    entry["MESSAGE"] = message or ""
    return entry if isinstance(entry, dict) else None


def _text(entry: dict[str, Any]) -> str:
    seconds = int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6
    when = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(seconds))
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    return f"{when} {entry.get('SYSLOG_IDENTIFIER', '?')}{pid}: {entry['MESSAGE']}"


def journal_lines(json_lines: str, lines: int = JOURNAL_LINES) -> list[str]:
    """The last ``lines`` entries of ``journalctl -o json`` output, as text, without the
    start-up of each boot (but its warnings and errors) and without sudo/session noise."""
    kept, booting = [], True  # the journal's first entries are a boot's
    for line in json_lines.splitlines():
        entry = _entry(line)
        if entry is None:
            continue
        ident, message = entry.get("SYSLOG_IDENTIFIER"), entry["MESSAGE"]
        if ident == "systemd-journald" and message.startswith("Journal started"):
            booting = True
        text = _text(entry)
        keep = not NOISE.search(text) and (not booting or int(entry.get("PRIORITY", 6)) <= WARNING)
        if keep:
            kept.append(text)
        if ident == "systemd" and message.startswith("Startup finished"):
            booting = False
    return kept[-lines:]


def diagnostics_text(output: str) -> str:
    """The report of :data:`SCRIPT`'s ``output``: failed units and cloud-init as printed, then
    the journal tail (:func:`journal_lines`)."""
    head, sep, journal = f"\n{output}".partition(f"\n{JOURNAL_MARK}\n")
    if not sep:
        return output
    tail = journal_lines(journal)
    title = (f"{JOURNAL_MARK} (last {len(tail)} lines; boot start-up, sudo and session lines "
             "left out)")
    return "\n".join(part for part in (head.strip("\n"), title, *tail) if part)


def machine_diagnostics(machine: Machine) -> str:
    """The report of ``machine`` (never raises: a machine gone or broken says so instead)."""
    try:
        proc = machine.run(SCRIPT)
    except Exception as exc:
        return f"(journal unavailable: {exc})"
    return diagnostics_text(proc.stdout) if proc.rc == 0 else f"(journal unavailable: {proc.stderr.strip()})"
