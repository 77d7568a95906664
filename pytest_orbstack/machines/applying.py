"""Applying a deploy to machines, with the checks a test asks for: one run of pyinfra across
them, then the second run of ``check_idempotent`` and the plans of ``check_dry_run``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.model.inputs import Deploy, check_deploy
from pytest_orbstack.model.results import DeployError, DeployResult, IdempotenceError, changed_again

if TYPE_CHECKING:
    from pytest_orbstack.machines.machine import Machine


def apply_to(targets: Mapping[str, tuple[Machine, Sequence[str], Mapping[str, Any]]], deploy: Deploy,
             *, check: bool,
             check_idempotent: bool, allow_changes: Sequence[str], data: dict[str, Any] | None,
             config: dict[str, Any] | None, inventory: Path | None = None,
             check_dry_run: bool = False) -> dict[str, DeployResult]:
    """One run of ``deploy`` across ``targets`` (key: (machine, its inventory groups, its host
    data); with an ``inventory`` file the key is the machine's name there), then a second one
    with ``check_idempotent`` (watched: each changed operation's difference), and pyinfra's
    plans before and after them with ``check_dry_run`` (not recorded: they change nothing);
    every run is recorded on its machines."""
    __tracebackhide__ = True
    first_machine = next(iter(targets.values()))[0]
    try:
        deploy = check_deploy(deploy, first_machine.search_dirs())
    except InvalidInput as exc:  # the caller's line and the message: the checks' frames add nothing
        raise exc.with_traceback(None) from None

    def run_once(dry: bool = False, diff: bool = False) -> dict[str, DeployResult]:
        __tracebackhide__ = True
        from pytest_orbstack.pyinfra.deploy import Target, run_deploy
        runs = run_deploy([Target(m.name, groups, hd, alias=key if inventory else None)
                           for key, (m, groups, hd) in targets.items()], deploy,
                          backend=first_machine.backend, data=data, config=config, inventory_file=inventory,
                          dry=dry, diff=diff)
        results = {key: runs[machine.name] for key, (machine, _groups, _data) in targets.items()}
        for key, (machine, _groups, _data) in targets.items() if not dry else ():
            machine.deploys.append(results[key])
            machine.on_apply(machine, results[key])
        for result in results.values():
            if (check or dry) and not result.success:
                raise DeployError(result)
        return results

    def where(key: str) -> str:
        return targets[key][0].name

    if check_dry_run:  # (the dry-run check is loaded only when asked for)
        from pytest_orbstack.model.dry_run import DryRunError, proposed, unplanned
    plan = run_once(dry=True) if check_dry_run else {}
    first = run_once()
    for key, result in plan.items():
        if unplanned(result, first[key]):
            raise DryRunError(first[key], unplanned(result, first[key]), where(key), after=False)
    if check_idempotent:
        try:
            second = run_once(diff=True)
        except DeployError as exc:  # the first run succeeded: say which run failed
            raise DeployError(exc.result, str(exc).replace(
                " failed: ", " failed on its second run (check_idempotent; the first succeeded): ", 1)) from None
        for key, result in second.items():
            if changed_again(result, allow_changes):
                raise IdempotenceError(result, changed_again(result, allow_changes), where(key))
    for key, result in (run_once(dry=True) if check_dry_run else {}).items():
        if proposed(result, allow_changes):
            raise DryRunError(result, proposed(result, allow_changes), where(key), after=True)
    return first
