"""What a deploy did, operation by operation, and the errors a test sees when it went wrong.

Plain data, no pyinfra import: the plugin reports these without loading pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TypeVar

ERROR_LINE = re.compile(r"(E|Err|Error|ERROR|error|fatal|FATAL|Fatal)(:| ?\[|\b)")
T = TypeVar("T")
NOT_WARNING_LINE = re.compile(r"(?!(W|N|Warning|WARNING|warning|Notice|NOTICE|notice|Hint|hint)\b:?)")

PERMISSION_HINT = ("hint: deploys run as the machine's default user (non-root, passwordless "
                   "sudo); pass _sudo=True to the operation, set _sudo = True in "
                   "group_data/all.py or data=, or use user='root' / ini orbstack_user = root")


@dataclass
class OperationResult:
    """One operation of a deploy run: pyinfra's name for it, whether it changed something or
    failed, the commands it ran and their output. ``conditional``: it has ``_if`` conditions
    (pyinfra evaluates them only as it runs it). ``op_hash``: pyinfra's id of the operation,
    the same in every run of one deploy; ``difference``: what it changed, as lines for a
    person (filled on the idempotence check's second run: :mod:`.differences`)."""
    name: str
    changed: bool
    success: bool
    ran: bool = True
    idempotent: bool = True
    commands: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    conditional: bool = False
    op_hash: str = ""
    difference: list[str] = field(default_factory=list)

    def last_error_line(self) -> str:
        """The line of the output that says what failed: the last error line (``E: ...`` of
        apt, ``Error: ...``, ``fatal: ...``), else the last line that is not a warning or a
        notice (``W:``, ``N:``, ``Warning:``: apt prints those after its errors), else the last."""
        lines = [line.strip() for line in (self.stderr or self.stdout).strip().splitlines() if line.strip()]
        for pattern in (ERROR_LINE, NOT_WARNING_LINE):
            chosen = [line for line in lines if pattern.match(line)]
            if chosen:
                return chosen[-1]
        return lines[-1] if lines else "no output"


@dataclass
class DeployResult:
    """What one run of a deploy did, operation by operation. ``error`` is set when the deploy
    itself failed (its code raised, or the machine could not be reached); ``traceback`` then
    holds the deploy's own frames. ``dry``: pyinfra's plan, not a run: ``changed`` holds the
    operations the plan says will change, and none ran."""
    deploy: str
    operations: list[OperationResult]
    error: str | None = None
    duration: float = 0.0
    traceback: list[str] = field(default_factory=list)
    dry: bool = False

    @property
    def success(self) -> bool:
        return self.error is None and not self.failed and not self.not_run

    def __bool__(self) -> bool:
        """None: ``assert machine.apply(..., check=False)`` would pass on a failed deploy."""
        __tracebackhide__ = True
        raise TypeError("a deploy's result has no truth value (it is always there): assert "
                        "result.success, result.changed == [] or result.failed == []")

    @property
    def changed(self) -> list[OperationResult]:
        return [op for op in self.operations if op.changed]

    @property
    def failed(self) -> list[OperationResult]:
        return [op for op in self.operations if op.ran and not op.success]

    @property
    def not_run(self) -> list[OperationResult]:
        """Operations skipped because an earlier one failed (none in a plan)."""
        return [] if self.dry else [op for op in self.operations if not op.ran]

    def headline(self) -> str:
        """One line naming the problem (or what the deploy did, when it succeeded)."""
        if self.error:
            return f"deploy {self.deploy} failed: {self.error}"
        if self.failed:
            op = self.failed[0]
            more = f" (+{len(self.failed) - 1} more failed)" if len(self.failed) > 1 else ""
            return f"deploy {self.deploy} failed: operation {op.name!r}: {op.last_error_line()}{more}"
        verb = "would change" if self.dry else "changed"
        return (f"deploy {self.deploy}: {len(self.operations)} operations, "
                f"{len(self.changed)} {verb} ({self.duration:.1f}s)")

    def summary(self) -> str:
        """The headline, then the deploy's frames or each failed operation with its last
        command and output, and a hint when the cause is a missing ``_sudo``."""
        lines = [self.headline()]
        lines += [f"  {line}" for line in self.traceback]
        if self.error is None:
            lines.append(f"  {len(self.operations)} operations, {len(self.changed)} changed, "
                         f"{len(self.failed)} failed ({self.duration:.1f}s)")
        if self.not_run:
            lines.append(f"  not run: {', '.join(op.name for op in self.not_run)}")
        for op in self.failed:
            lines.append(f"  FAILED {op.name}")
            lines += [f"    $ {cmd}" for cmd in op.commands[-1:]]
            lines += [f"    {line}" for line in (op.stderr or op.stdout).splitlines()[-20:]]
        text = "\n".join(lines)
        if any("Permission denied" in (op.stderr + op.stdout) for op in self.failed):
            text += f"\n  {PERMISSION_HINT}"
        return text


class GroupResults(dict[str, DeployResult]):
    """Each machine's :class:`DeployResult` of one deploy across a group, by its name."""

    def __bool__(self) -> bool:
        """None: ``assert group.apply(..., check=False)`` would pass on failed deploys."""
        __tracebackhide__ = True
        raise TypeError("a group's deploy results have no truth value (there is one per machine): "
                        "assert all(r.success for r in results.values())")


class DeployError(AssertionError):
    """A deploy failed; the first line of the message names the cause, the rest lists the
    failing operations with their stderr. ``result`` is the :class:`DeployResult`."""

    def __init__(self, result: DeployResult, message: str | None = None) -> None:
        super().__init__(message or result.summary())
        self.result = result


def changed_again(second: DeployResult, allow_changes: Sequence[str] = ()) -> list[OperationResult]:
    """Operations of a second run that changed something although they should not have: not
    those pyinfra declares non-idempotent (``server.shell``, ...) and not those whose name
    (as pyinfra prints it) matches an ``allow_changes`` pattern (``fnmatch``: ``"*restart*"``)."""
    return [op for op in second.changed if op.idempotent
            and not any(fnmatchcase(op.name, pattern) for pattern in allow_changes)]


class IdempotenceError(DeployError):
    """A deploy changed something on its second run: the message names each operation (with
    its arguments, as pyinfra prints it), what it changed (a file's content as a unified diff,
    its mode and owner, a package's version, a service's state: ``op.difference``) and the
    commands it ran the second time."""

    def __init__(self, second: DeployResult, changed: Sequence[OperationResult], where: str) -> None:
        lines = [f"deploy {second.deploy} is not idempotent on {where}: {len(changed)} "
                 "operation(s) changed on the second run:"]
        for op in changed:
            lines.append(f"  {op.name}")
            lines += [f"    {line}" for line in op.difference]
            lines += [f"    $ {cmd}" for cmd in op.commands] or ["    (no command: changed by a fact)"]
        lines.append("  (exempt an operation that must change every time with "
                     "allow_changes=['NAME PATTERN'])")
        super().__init__(second, "\n".join(lines))


STALE_HINT = ("restart or reload each in the deploy when its files change, through systemd so "
              "that it records it (pyinfra: systemd.service(..., restarted=True or reloaded=True, "
              "_if=op.did_change), or systemctl reload); a reload systemd does not see (nginx -s "
              "reload, kill -HUP, apachectl graceful) leaves no trace this check can trust; exempt "
              "a service that rereads its files by itself with allow_stale=['NAME PATTERN']")
BOOT_HINT = ("leave each unit as a boot would: systemd.service(..., running=True, enabled=True) "
             "or (running=False, enabled=False), daemon_reload=True after editing a unit file; "
             "exempt a unit with allow_stale=['NAME PATTERN']")


class StaleServicesError(DeployError):
    """Clone honesty: a golden machine is cloned, and each clone boots every service afresh
    from the files the deploy left, while a real server that ran the same deploy keeps running
    what each service read when it started, until the deploy restarts or reloads it, and keeps
    each unit in the state the deploy left it. So a golden machine fails with this error when
    its deploy left active services on configuration it changed after they started
    (``services`` maps each unit to its changed files;
    :class:`~pytest_orbstack.facts.services.StaleServices` finds them) or left units in a state
    a fresh boot would not give them (``units`` maps each to why;
    :class:`~pytest_orbstack.facts.boot.BootDrift` finds them)."""

    def __init__(self, result: DeployResult, services: dict[str, list[str]],
                 units: dict[str, str] | None = None) -> None:
        units = units or {}
        lines = []
        if services:
            lines += [f"deploy {result.deploy} leaves {', '.join(services)} running on old "
                      "configuration: it changed these files after the service started or "
                      "systemd last reloaded it (a clone would boot it with the new files, a real "
                      "server keeps the old until a restart):"]
            lines += [f"  {unit}: {', '.join(paths)}" for unit, paths in services.items()]
            lines.append(f"  ({STALE_HINT})")
        if units:
            lines += [f"deploy {result.deploy} leaves {', '.join(units)} in a state a clone "
                      "would not boot into (a clone boots every unit afresh, a real server keeps "
                      "the state the deploy left):"]
            lines += [f"  {unit}: {why}" for unit, why in units.items()]
            lines.append(f"  ({BOOT_HINT})")
        super().__init__(result, "\n".join(lines))
        self.services = services
        self.units = units


class EngineFilesError(DeployError):
    """Clone honesty: the deploy changed files the engine gives each machine itself (Docker's
    and Podman's ``/etc/resolv.conf``, ``/etc/hosts``, ``/etc/hostname``: bind mounts a snapshot
    does not hold; Incus's ``/etc/hosts`` and ``/etc/hostname``: its image templates, applied on
    every copy), so the golden machine's clones would not have the change."""

    def __init__(self, result: DeployResult, engine: str, why: str, paths: Sequence[str]) -> None:
        super().__init__(result, (
            f"deploy {result.deploy} changed {', '.join(paths)} on the golden machine, which {engine} "
            f"gives every machine itself ({why}): its clones "
            "would not have the change. Use clone=False for this machine"))
        self.paths = list(paths)


def not_exempt(found: Mapping[str, T], allow_stale: Sequence[str]) -> dict[str, T]:
    """The units of ``found`` whose name, with or without its ``.service`` suffix, matches no
    ``allow_stale`` pattern."""
    return {unit: why for unit, why in found.items()
            if not any(fnmatchcase(unit, p) or fnmatchcase(unit.removesuffix(".service"), p)
                       for p in allow_stale)}
