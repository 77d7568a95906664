"""What pytest-orbstack tells people: failure sections (deploy summaries, the machine's failed
units and journal), ``-v`` progress lines (also from xdist workers), the machines table and
``--orbstack-timings``. The hooks here are registered by :mod:`pytest_orbstack.plugin`."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from .fixtures import MACHINES_KEY, RECORDS_KEY, REPORTS_KEY
from .flags import KEEP_POLICIES
from .machine import Machine
from .records import MachineRecord
from .reuse import login_command
from .state import plugin_state

JOURNAL_LINES = 80
# Lines every command run with sudo adds to the journal: they bury what failed.
NOISE = re.compile(r"\bsudo\[\d+\]:|pam_unix\(|systemd-logind\[\d+\]: (New|Removed) session|"
                   r"(Started|Finished|Stopped|Starting|Stopping) (Session \d+|session-\d+\.scope|"
                   r"User (Manager|Runtime Directory)|user(-runtime-dir)?@\d+\.service)|"
                   r"\bsession-\d+\.scope: Deactivated|user@\d+\.service: Deactivated")
DIAGNOSTICS = (
    "failed=$(systemctl list-units --state=failed --no-legend --plain 2>/dev/null | awk '{print $1}')\n"
    'echo "failed units: $(echo $failed)"\n'
    'for unit in $failed; do echo "--- journal of $unit"; '
    'journalctl -u "$unit" -n 20 --no-pager -q -o short-iso; done\n'
    # cloud-init's generator leaves this file when it enabled cloud-init for this boot
    'if [ -e /run/cloud-init/enabled ]; then echo "--- cloud-init status"; '
    "cloud-init status --long 2>&1; fi\n"
    f'echo "--- journal (last {JOURNAL_LINES} lines; sudo and session lines left out)"\n'
    "journalctl -n 1000 --no-pager -q -o short-iso")


def journal_report(output: str, lines: int = JOURNAL_LINES) -> str:
    """The diagnostics output with sudo/pam/session noise dropped from the journal tail."""
    head, sep, journal = output.partition("\n--- journal (last")
    kept = [line for line in journal.splitlines()[1:] if not NOISE.search(line)]
    title = journal.splitlines()[0] if journal else ""
    return f"{head}{sep}{title}\n" + "\n".join(kept[-lines:]) if sep else output


def _attach_diagnostics(report: pytest.TestReport, machine: Machine) -> None:
    for result in machine.deploys:
        if not result.success:
            report.sections.append((f"orbstack deploy: {machine.name}", result.summary()))
    try:
        proc = machine.run(DIAGNOSTICS)
        text = journal_report(proc.stdout) if proc.rc == 0 else f"(journal unavailable: {proc.stderr})"
    except Exception as exc:  # the machine may be gone or broken: say so, do not mask the failure
        text = f"(journal unavailable: {exc})"
    report.sections.append((f"orbstack machine: {machine.name}", text))


def junit_properties(records: list[MachineRecord]) -> list[tuple[str, str]]:
    """Per machine of a test: its name, image, engine, how it was made and its phase timings,
    as JUnit XML ``<property>`` pairs (``--junitxml``), so a CI dashboard shows which machine
    a failure ran on."""
    props = []
    for r in records:
        props += [("orbstack.machine", r.name), ("orbstack.image", r.image),
                  ("orbstack.engine", r.backend), ("orbstack.created_by", r.created_by),
                  ("orbstack.outcome", r.outcome)]
        props += [(f"orbstack.{phase}_seconds", f"{seconds:.3f}") for phase, seconds in r.phases.items()]
    return props


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report (keep=failed reads it), attach diagnostics to failures,
    on an xdist worker send the phase's progress lines with the report, and give the teardown
    report (the test's machines are finished by then) their JUnit properties."""
    if call.when == "teardown":
        item.user_properties += junit_properties(item.stash.get(RECORDS_KEY, []))
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if report.failed:
        for machine in item.stash.get(MACHINES_KEY, []):
            _attach_diagnostics(report, machine)
    state = plugin_state(item.config)
    if state.pending_progress:
        report.orbstack_progress = state.pending_progress  # type: ignore[attr-defined]
        state.pending_progress = []
    return report


def rerun_command(config: pytest.Config) -> str:
    """This run's command line with ``--orbstack-reuse`` instead of ``--orbstack-keep``."""
    args = list(config.invocation_params.args)
    kept = []
    for i, arg in enumerate(args):
        if arg == "--orbstack-keep" and i + 1 < len(args) and args[i + 1] in KEEP_POLICIES:
            args[i + 1] = ""  # its value
        if not arg.startswith(("--orbstack-keep", "--orbstack-reuse")) and args[i]:
            kept.append(arg)
    return shlex.join(["pytest", "--orbstack-reuse", *kept])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The machines table (phase timings, outcome), how to log in to kept machines, and the
    ``--orbstack-timings`` JSON."""
    state = plugin_state(config)
    if state.is_worker:
        return
    records = state.all_records()
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "orbstack machines")
    phases = ["create", "clone", "deploy", "teardown"]
    width = max(len("machine"), *(len(r.name) for r in records))
    header = f"{'machine':<{width}} {'kind':<7} {'image':<16} " + " ".join(f"{p:>8}" for p in phases)
    tr.write_line(header + "  outcome")
    for r in sorted(records, key=lambda r: (r.kind != "golden", r.name)):
        cells = " ".join(f"{r.phases[p]:>7.1f}s" if p in r.phases else f"{'-':>8}" for p in phases)
        tr.write_line(f"{r.name:<{width}} {r.kind:<7} {r.image:<16} {cells}  {r.outcome}")
    kept = [r for r in records if r.outcome == "kept"]
    if kept:
        tr.write_line("")
        tr.write_line(f"kept {len(kept)} machine(s); log in with:")
        for r in kept:
            tr.write_line(f"  {login_command(r.backend, r.name)}")
        tr.write_line(f"rerun the tests on them: {rerun_command(config)}")
        tr.write_line("list them: pytest --orbstack-list; delete them: pytest --orbstack-prune")
    path = config.getoption("orbstack_timings")
    if path:
        Path(path).write_text(json.dumps({"session": state.session_id,
                                          "machines": [asdict(r) for r in records]}, indent=2))
