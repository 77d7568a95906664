"""The dry-run check (``check_dry_run=True``): does pyinfra's plan (``pyinfra --dry``) tell the
truth about a deploy?

Two questions, each answered per operation (matched by pyinfra's operation hash, the same in
every run of one deploy):

* before the apply: every operation the real apply changed was named by the plan as one that
  will change (:func:`unplanned`). An operation the plan said would change but that then
  changed nothing is fine: pyinfra's plan is conservative (an earlier operation may have done
  its work, e.g. a package a dependency pulled in), and its CLI says "Detected changes may not
  include every change"; the lie caught is the other way round, a change the plan hid.
  ``server.shell`` and other operations pyinfra declares non-idempotent always yield their
  commands, so the plan names them: they never count as unplanned.
* after the apply: the plan proposes nothing (:func:`proposed`), except for operations pyinfra
  declares non-idempotent (they are always proposed), conditional ones (``_if=``: a plan
  cannot evaluate their conditions, pyinfra shows them as conditional changes; e.g. "reload
  nginx if the site changed") and those whose name matches an ``allow_changes`` pattern.

Plain data, no pyinfra import.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from pytest_orbstack.model.results import DeployError, DeployResult, OperationResult


def unplanned(plan: DeployResult, run: DeployResult) -> list[OperationResult]:
    """Operations of ``run`` that changed something although ``plan`` did not say they would
    (including operations the plan did not have at all: added by code that ran later)."""
    will_change = {op.op_hash for op in plan.changed}
    return [op for op in run.changed if op.op_hash not in will_change]


def proposed(plan: DeployResult, allow_changes: Sequence[str] = ()) -> list[OperationResult]:
    """Operations a plan made after the apply still says will change: not those pyinfra declares
    non-idempotent, nor conditional ones, nor those matching an ``allow_changes`` pattern
    (``fnmatch``)."""
    return [op for op in plan.changed if op.idempotent and not op.conditional
            and not any(fnmatchcase(op.name, pattern) for pattern in allow_changes)]


class DryRunError(DeployError):
    """pyinfra's plan did not tell the truth about a deploy: one line per operation, saying
    whether it changed although the plan said it would not (``after=False``), or the plan
    still proposes it after the apply (``after=True``)."""

    def __init__(self, result: DeployResult, operations: Sequence[OperationResult], where: str,
                 after: bool) -> None:
        if after:
            lines = [f"deploy {result.deploy}: pyinfra's plan (--dry) after the apply on {where} still "
                     f"proposes {len(operations)} change(s):"]
            lines += [f"  {op.name}: the plan says it will change" for op in operations]
            lines.append("  (exempt an operation that must change every time with "
                         "allow_changes=['NAME PATTERN'])")
        else:
            lines = [f"deploy {result.deploy}: pyinfra's plan (--dry) on {where} did not name "
                     f"{len(operations)} operation(s) the apply then changed:"]
            lines += [f"  {op.name}: changed, the plan said no change" for op in operations]
        super().__init__(result, "\n".join(lines))
