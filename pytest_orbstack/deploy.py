"""Apply a PyInfra deploy to one machine through pyinfra's API and report per operation.

A deploy is a deploy file (path; relative ``src=`` paths resolve from its folder, as with the
``pyinfra`` CLI) or a Python callable that calls operations. The run goes through the
``@orbstack`` connector, so it is exactly what ``pyinfra @orbstack/NAME deploy.py`` does.
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
from pathlib import Path
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import disconnect_all
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_config, ctx_host, ctx_state

from .backends.base import Backend
from .inputs import Deploy, check_deploy, describe, display_path
from .results import DeployResult, OperationResult


def _user_error(exc: BaseException) -> tuple[str, list[str]]:
    """``FILE:LINE: Type: message`` for an exception raised by deploy code, and the deploy's
    own frames (pyinfra's and pytest-orbstack's frames left out)."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = str(Path(__file__).resolve().parent)
    pyinfra_dir = str(Path(inspect.getfile(State)).resolve().parents[1])
    own = [f for f in frames if not f.filename.startswith((here, pyinfra_dir))
           and "importlib" not in f.filename]
    where = f"{display_path(own[-1].filename)}:{own[-1].lineno}: " if own else ""
    text = " ".join(str(exc).split()) or "(no message)"
    lines = [f"{display_path(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in own]
    return f"{where}{type(exc).__name__}: {text}", lines


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


def apply_deploy(machine: str, deploy: Deploy, *, backend: Backend | str,
                 data: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> DeployResult:
    """Run ``deploy`` against ``machine`` (on ``backend``) and return what every operation did.

    Never raises for a failing operation: the result says which failed and with what stderr.
    ``data`` becomes host data (``host.data`` in the deploy); ``config`` sets pyinfra Config
    attributes (e.g. ``{"SUDO": True}``).
    """
    started = time.monotonic()
    deploy = check_deploy(deploy)
    # the engine object itself reaches the connector (its env, caches, binary); a kind string
    # goes through the one engine rule there
    engine = {"_orbstack_engine": backend} if isinstance(backend, Backend) else {"orbstack_backend": backend}
    host_data = {**engine, **(data or {})}
    inventory = Inventory(([(f"@orbstack/{machine}", host_data)], {}))
    cfg = Config(**(config or {}))
    path = None if callable(deploy) else Path(os.fspath(deploy))
    state = State(inventory, cfg)
    state.cwd = str(path.parent if path else Path.cwd())
    error = None
    frames: list[str] = []
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
        error, frames = _user_error(exc)
    finally:
        disconnect_all(state)
    host = inventory.get_host(f"@orbstack/{machine}")
    operations = _collect(state, host) if host in state.ops else []
    result = DeployResult(describe(deploy), operations, error, time.monotonic() - started, frames)
    if error is None and not result.success and not result.failed:
        result.error = "deploy failed before running its operations"
    return result
