"""Apply a PyInfra deploy to one machine through pyinfra's API and report per operation.

A deploy is a deploy file (path; relative ``src=`` paths resolve from its folder, as with the
``pyinfra`` CLI) or a Python callable that calls operations. The run goes through the
``@orbstack`` connector, so it is exactly what ``pyinfra @orbstack/NAME deploy.py`` does.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import disconnect_all
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_config, ctx_host, ctx_state

Deploy = Union[str, os.PathLike, Callable[[], Any]]


@dataclass
class OperationResult:
    name: str
    changed: bool
    success: bool
    ran: bool = True
    idempotent: bool = True
    commands: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


@dataclass
class DeployResult:
    """What one run of a deploy did, operation by operation."""
    deploy: str
    operations: list[OperationResult]
    error: str | None = None
    duration: float = 0.0

    @property
    def success(self) -> bool:
        return self.error is None and all(op.success for op in self.operations if op.ran) \
            and not self.not_run

    @property
    def changed(self) -> list[OperationResult]:
        return [op for op in self.operations if op.changed]

    @property
    def failed(self) -> list[OperationResult]:
        return [op for op in self.operations if op.ran and not op.success]

    @property
    def not_run(self) -> list[OperationResult]:
        """Operations skipped because an earlier one failed."""
        return [op for op in self.operations if not op.ran]

    def summary(self) -> str:
        """Multi-line text: each failed operation with its commands and stderr."""
        lines = [f"deploy {self.deploy}: {len(self.operations)} operations, "
                 f"{len(self.changed)} changed, {len(self.failed)} failed ({self.duration:.1f}s)"]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.not_run:
            lines.append(f"  not run: {', '.join(op.name for op in self.not_run)}")
        for op in self.failed:
            lines.append(f"  FAILED {op.name}")
            lines += [f"    $ {cmd}" for cmd in op.commands[-1:]]
            lines += [f"    {line}" for line in (op.stderr or op.stdout).splitlines()[-20:]]
        return "\n".join(lines)


class DeployError(AssertionError):
    """A deploy failed; the message lists the failing operations and their stderr."""

    def __init__(self, result: DeployResult) -> None:
        super().__init__(result.summary())
        self.result = result


def describe(deploy: Deploy) -> str:
    return getattr(deploy, "__qualname__", None) or os.fspath(deploy)  # type: ignore[arg-type]


def _exec_deploy_file(state: State, path: Path) -> None:
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    state.current_deploy_filename = state.current_exec_filename = str(path)
    exec(code, {"__file__": str(path), "__name__": "__pyinfra_deploy__"})


def _is_idempotent(op_data: Any) -> bool:
    """pyinfra marks operations such as ``server.shell`` ``is_idempotent=False``; the flag sits
    on the operation function, which the command generator closes over."""
    try:
        func = inspect.getclosurevars(op_data.command_generator).nonlocals.get("func")
    except (TypeError, ValueError):
        return True
    return bool(getattr(func, "is_idempotent", True))


def _collect(state: State, host: Any) -> list[OperationResult]:
    results = []
    for op_hash in state.get_op_order():
        op_data = state.ops[host].get(op_hash)
        if op_data is None:
            continue
        meta = op_data.operation_meta
        complete = meta.is_complete()
        success = meta.did_succeed(_raise_if_not_complete=False) if complete else False
        results.append(OperationResult(
            name=", ".join(sorted(state.get_op_meta(op_hash).names)) or op_hash,
            changed=bool(complete and meta.did_change()),
            success=bool(success) or bool(op_data.global_arguments.get("_ignore_errors")),
            ran=complete,
            idempotent=_is_idempotent(op_data),
            commands=[str(c) for c in (meta._commands or [])],
            stdout=meta.stdout if complete else "",
            stderr=meta.stderr if complete else "",
        ))
    return results


def apply_deploy(machine: str, deploy: Deploy, *, backend: str, data: dict | None = None,
                 config: dict | None = None) -> DeployResult:
    """Run ``deploy`` against ``machine`` (on ``backend``) and return what every operation did.

    Never raises for a failing operation: the result says which failed and with what stderr.
    ``data`` becomes host data (``host.data`` in the deploy); ``config`` sets pyinfra Config
    attributes (e.g. ``{"SUDO": True}``).
    """
    started = time.monotonic()
    host_data = {"orbstack_backend": backend, **(data or {})}
    inventory = Inventory(([(f"@orbstack/{machine}", host_data)], {}))
    cfg = Config(**(config or {}))
    is_file = not callable(deploy)
    path = Path(os.fspath(deploy)).resolve() if is_file else None  # type: ignore[arg-type]
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"deploy file not found: {path}")
    state = State(inventory, cfg)
    state.cwd = str(path.parent if path else Path.cwd())
    error = None
    try:
        host = inventory.get_host(f"@orbstack/{machine}")
        host.connect(raise_exceptions=True, show_errors=False)
        state.activate_host(host)
        with ctx_state.use(state), ctx_host.use(host), ctx_config.use(state.config.copy()):
            if path is not None:
                _exec_deploy_file(state, path)
            else:
                deploy()  # type: ignore[operator]
        run_ops(state)
    except ConnectError as exc:
        error = f"cannot connect: {exc}"
    except PyinfraError as exc:  # "No hosts remaining": an operation failed, collected below
        error = str(exc) if "No hosts remaining" not in str(exc) else None
    except Exception as exc:  # an error in the user's deploy code
        error = f"{type(exc).__name__}: {exc}"
    finally:
        disconnect_all(state)
    host = inventory.get_host(f"@orbstack/{machine}")
    operations = _collect(state, host) if host in state.ops else []
    result = DeployResult(describe(deploy), operations, error, time.monotonic() - started)
    if error is None and not result.success and not result.failed:
        result.error = "deploy failed before running its operations"
    return result
