"""What pytest-orbstack tells people: failure sections (deploy summaries, the machine's failed
units and journal), ``-v`` progress lines (also from xdist workers), the machines table and
``--orbstack-timings``. The hooks here are registered by :mod:`pytest_orbstack.plugin`."""

from __future__ import annotations

import json
import shlex
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.errors import report_sections
from pytest_orbstack.machines.diagnostics import machine_diagnostics
from pytest_orbstack.machines.machine import Machine
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.model.results import DeployError
from pytest_orbstack.plugin.fixtures import MACHINES_KEY, RECORDS_KEY, REPORTS_KEY
from pytest_orbstack.plugin.flags import KEEP_POLICIES
from pytest_orbstack.plugin.state import STATE


def _attach_diagnostics(report: pytest.TestReport, machine: Machine, failure: BaseException | None) -> None:
    """A machine's failed deploys (but the one the failure itself is: its message says it all
    already) and its diagnostics (:mod:`.diagnostics`)."""
    shown = failure.result if isinstance(failure, DeployError) else None
    for result in machine.deploys:
        if not result.success and result is not shown:
            report.sections.append((f"orbstack deploy: {machine.name}", result.summary()))
    report.sections.append((f"orbstack machine: {machine.name}", machine_diagnostics(machine)))


def junit_properties(records: list[MachineRecord]) -> list[tuple[str, str]]:
    """Per machine of a test: its name, image, engine, how it was made and its phase timings,
    as JUnit XML ``<property>`` pairs (``--junitxml``), so a CI dashboard shows which machine
    a failure ran on: ``orbstack.machine``, ``orbstack.image``, ..., ``orbstack.deploy_seconds``;
    a machine of an ``orbstack_machines`` group has its role in each name:
    ``orbstack.web.machine``, ``orbstack.db.image``."""
    props = []
    for r in records:
        prefix = f"orbstack.{r.alias}." if r.alias else "orbstack."
        props += [(f"{prefix}machine", r.name), (f"{prefix}image", r.image), (f"{prefix}engine", r.backend),
                  (f"{prefix}created_by", r.created_by), (f"{prefix}outcome", r.outcome)]
        props += [(f"{prefix}{phase}_seconds", f"{seconds:.3f}") for phase, seconds in r.phases.items()]
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
        failure = call.excinfo.value if call.excinfo is not None else None
        for machine in item.stash.get(MACHINES_KEY, []):
            _attach_diagnostics(report, machine, failure)
        report.sections += report_sections(failure) if failure is not None else []
    state = item.config.stash[STATE]
    held = state.notices.held
    if held:
        report.orbstack_progress = held[:]  # type: ignore[attr-defined]
        held.clear()
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
    """The ``--orbstack-timings`` JSON (the machines' records, each test's seconds), the
    machines table (phase timings, outcome) and how to log in to kept machines."""
    state = config.stash[STATE]
    if state.is_worker:
        return
    records = state.all_records()
    path = config.getoption("orbstack_timings")
    if path:  # also when no machine was made: a shard's test seconds balance the next split
        Path(path).write_text(json.dumps({"session": state.session_id, "tests": state.test_seconds,
                                          "machines": [r.as_json() for r in records]}, indent=2))
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "orbstack machines")
    phases = ["create", "clone", "deploy", "teardown"]
    width = max(len("machine"), *(len(r.name) for r in records))
    header = f"{'machine':<{width}} {'kind':<7} {'image':<16} " + " ".join(f"{p:>8}" for p in phases)
    tr.write_line(header + "  outcome")
    for r in sorted(records, key=lambda r: (r.role != "golden", r.name)):
        cells = " ".join(f"{r.phases[p]:>7.1f}s" if p in r.phases else f"{'-':>8}" for p in phases)
        tr.write_line(f"{r.name:<{width}} {r.role:<7} {r.image:<16} {cells}  {r.outcome}")
    reused = [r for r in records if r.created_by == "reused"]
    if reused:  # a debug-loop run converged machines: what an earlier deploy left is still there
        tr.write_line(f"{len(reused)} test machine(s) reused (--orbstack-reuse): not a clean run; "
                      "rerun without it before trusting a pass")
    kept = [r for r in records if r.outcome == "kept"]
    if kept:
        tr.write_line("")
        tr.write_line(f"kept {len(kept)} machine(s); log in with:")
        for r in kept:
            tr.write_line(f"  {state.engine_named(r.backend).login_command(r.name)}")
        tr.write_line(f"rerun the tests on them: {rerun_command(config)}")
        tr.write_line("list them: pytest --orbstack-list; delete them: pytest --orbstack-prune")
