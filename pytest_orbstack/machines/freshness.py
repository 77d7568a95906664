"""Clone honesty: a golden machine is cloned, and each clone boots every service afresh from
the files the deploy left. A real server that ran the same deploy keeps running what each
service read when it started, until the deploy restarts or reloads it. So, on the golden
machine after its deploy, every running service whose configuration the deploy changed after
the service last started or reloaded (:class:`~pytest_orbstack.facts.services.StaleServices`)
fails the golden machine with :class:`StaleServicesError`, unless an ``allow_stale`` pattern
exempts it."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from pytest_orbstack.machines.machine import Machine
from pytest_orbstack.model.inputs import Deploy
from pytest_orbstack.model.results import DeployError, DeployResult

HINT = ("restart or reload each in the deploy when its files change (pyinfra: "
        "systemd.service(..., restarted=True, _if=op.did_change)); exempt a service that "
        "rereads its files by itself with allow_stale=['NAME PATTERN']")


class StaleServicesError(DeployError):
    """A deploy left running services on configuration it changed after they started: a clone
    would start them with the new files and hide it. ``services`` maps each unit to its
    changed files."""

    def __init__(self, result: DeployResult, services: dict[str, list[str]]) -> None:
        names = ", ".join(services)
        lines = [f"deploy {result.deploy} leaves {names} running on old configuration: it "
                 "changed these files after the service started (a clone would boot it with "
                 "the new files, a real server keeps the old until a restart):"]
        for unit, paths in services.items():
            lines += [f"  {unit}: {', '.join(paths)}"]
        lines.append(f"  ({HINT})")
        super().__init__(result, "\n".join(lines))
        self.services = services


def machine_clock(machine: Machine) -> str:
    """The machine's own time now, in seconds since the epoch (``date +%s.%N``)."""
    return machine.run("date +%s.%N").stdout.strip()


def stale_services(machine: Machine, since: str, allow_stale: Sequence[str] = ()) -> dict[str, list[str]]:
    """The machine's running services with configuration changed after ``since`` (a
    :func:`machine_clock` reading) and after they last started or reloaded, except those
    whose unit name, with or without ``.service``, matches an ``allow_stale`` pattern."""
    found = machine.fact("StaleServices", since=since)
    return {unit: paths for unit, paths in found.items()
            if not any(fnmatchcase(unit, p) or fnmatchcase(unit.removesuffix(".service"), p)
                       for p in allow_stale)}


def check_fresh(machine: Machine, since: str, allow_stale: Sequence[str]) -> None:
    """Raise :class:`StaleServicesError` when :func:`stale_services` finds any, after the
    machine's last deploy."""
    stale = stale_services(machine, since, allow_stale)
    if stale:
        raise StaleServicesError(machine.deploys[-1], stale)


def apply_golden(machine: Machine, deploy: Deploy, apply_args: dict[str, Any],
                 allow_stale: Sequence[str]) -> None:
    """Apply ``deploy`` to a golden machine (``apply_args``: :meth:`Machine.apply`'s
    keywords), then :func:`check_fresh` what it left running."""
    since = machine_clock(machine)
    machine.apply(deploy, **apply_args)
    check_fresh(machine, since, allow_stale)
