"""What a pyinfra run did, read from its own State: per operation and host, whether it ran,
changed something or failed, its commands (as pyinfra prints them), output and duration.
Operation names are ``pyinfra_cli.prints.pretty_op_name``'s; durations and the reasons pyinfra
does not keep (a host that could not connect, a failed file transfer) come from state
callbacks (:class:`Recorder`)."""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pyinfra.api.operations as pyinfra_operations
from pyinfra.api import BaseStateCallback, State
from pyinfra.api.command import FileDownloadCommand, FileUploadCommand, FunctionCommand, StringCommand

from pytest_orbstack.model.cli_modules import pretty_op_name
from pytest_orbstack.model.results import OperationResult


class Recorder(BaseStateCallback):
    """pyinfra state callbacks: how long each operation took on each host, why a host could
    not connect, why a file transfer failed (the connector's line: pyinfra keeps none)."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], float] = {}
        self.durations: dict[tuple[str, str], float] = {}
        self.connect_errors: dict[str, str] = {}
        self.transfer_errors: dict[tuple[str, str], str] = {}
        self.differences: dict[tuple[str, str], list[str]] = {}  # :class:`.idempotence.Differ`'s

    def host_connect_error(self, state: State, host: Any, error: Any) -> None:  # type: ignore[override]
        self.connect_errors[host.name] = str(error)

    def host_connect(self, state: State, host: Any) -> None:  # type: ignore[override]
        """A connect that succeeded after failed ones (``server.reboot`` reconnecting while the
        machine restarts) leaves no connect error."""
        self.connect_errors.pop(host.name, None)

    def operation_host_start(self, state: State, host: Any, op_hash: str) -> None:  # type: ignore[override]
        self.started[(host.name, op_hash)] = time.monotonic()

    def _end(self, host: Any, op_hash: str) -> None:
        start = self.started.get((host.name, op_hash))
        if start is not None:
            self.durations[(host.name, op_hash)] = round(time.monotonic() - start, 3)

    def operation_host_success(self, state: State, host: Any, op_hash: str,  # type: ignore[override]
                               retry_count: int = 0) -> None:
        self._end(host, op_hash)

    def operation_host_error(self, state: State, host: Any, op_hash: str,  # type: ignore[override]
                             retry_count: int = 0, max_retries: int = 0) -> None:
        self._end(host, op_hash)
        error = getattr(host.connector, "transfer_error", None)
        if error:
            self.transfer_errors[(host.name, op_hash)] = error
            host.connector.transfer_error = None


def _not_output(record: logging.LogRecord) -> bool:
    """False for what pyinfra logs of a failed operation's command (a fact's is kept: no
    result holds it)."""
    if record.funcName not in ("print_host_combined_output", "log_error_or_warning"):
        return True
    frame: FrameType | None = sys._getframe()
    while frame is not None and frame.f_code.co_name != record.funcName:
        frame = frame.f_back
    caller = frame.f_back if frame is not None else None
    return caller is None or caller.f_code.co_filename != pyinfra_operations.__file__


@contextmanager
def output_in_results() -> Iterator[None]:
    """During a run, pyinfra does not log a failed operation's command output line by line, nor
    its "Error: ..." line: the results hold them (:class:`.results.DeployResult`), and a failing
    test shows them once, in its failure message or report section, not again as captured log."""
    logger = logging.getLogger("pyinfra")
    logger.addFilter(_not_output)
    try:
        yield
    finally:
        logger.removeFilter(_not_output)


def _is_idempotent(op_data: Any) -> bool:
    """pyinfra marks operations such as ``server.shell`` ``is_idempotent=False``; the flag sits
    on the operation function, which the command generator closes over."""
    try:
        func = inspect.getclosurevars(inspect.unwrap(op_data.command_generator)).nonlocals.get("func")
    except (TypeError, ValueError):
        return True
    return bool(getattr(func, "is_idempotent", True))


def _command_text(command: Any) -> str:
    """A command as a person reads it: shell commands with secrets masked (as pyinfra prints
    them), uploads and downloads by their paths, a Python step by its function's name."""
    if isinstance(command, StringCommand):
        return command.get_masked_value()
    if isinstance(command, (FileUploadCommand, FileDownloadCommand)):
        src = command.src if isinstance(command.src, str) else type(command.src).__name__
        verb = "upload" if isinstance(command, FileUploadCommand) else "download"
        return f"{verb} {src} -> {command.dest}"
    if isinstance(command, FunctionCommand):
        return f"python: {getattr(command.function, '__name__', command.function)}()"
    return repr(command)


def collect(state: State, order: Sequence[str], host: Any, recorder: Recorder,
            dry: bool = False) -> list[OperationResult]:
    """What each operation of the run (in pyinfra's ``order``) did on ``host``; ``dry``: what
    pyinfra's plan says each will do (``changed``: it will change something; none ran)."""
    results = []
    for op_hash in order:
        op_data = state.ops[host].get(op_hash)
        if op_data is None:
            continue
        meta = op_data.operation_meta
        complete = meta.is_complete()
        success = meta.did_succeed(_raise_if_not_complete=False) if complete else False
        results.append(OperationResult(
            name=pretty_op_name(state.get_op_meta(op_hash)),
            changed=bool(meta._maybe_is_change) if dry else bool(complete and meta.did_change()),
            success=dry or bool(success) or bool(op_data.global_arguments.get("_ignore_errors")),
            ran=complete,
            idempotent=_is_idempotent(op_data),
            commands=[_command_text(c) for c in (meta._commands or [])],
            stdout=meta.stdout if complete else "",
            stderr=(meta.stderr if complete else "") or recorder.transfer_errors.get((host.name, op_hash), ""),
            duration=recorder.durations.get((host.name, op_hash), 0.0),
            conditional=bool(op_data.global_arguments.get("_if")),
            op_hash=op_hash,
            difference=recorder.differences.get((host.name, op_hash), []),
        ))
    return results
