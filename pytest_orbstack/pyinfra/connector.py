"""PyInfra connector ``@orbstack``: run deploys against OrbStack machines, or Docker ones."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Iterator, Mapping
from io import IOBase
from typing import TYPE_CHECKING, Any

from pyinfra import logger
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.output import echo
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector, DataMeta
from pyinfra.connectors.util import (
    CommandOutput,
    OutputLine,
    extract_control_arguments,
    make_unix_command_for_host,
)
from typing_extensions import TypedDict, Unpack, override

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import CommandTimeout, MachineError
from pytest_orbstack.model.names import PREFIX
from pytest_orbstack.pyinfra.connector_io import output_lines, run_watched, stdin_bytes

if TYPE_CHECKING:
    from pyinfra.api.arguments import ConnectorArguments

ESCALATION_ARGS = ("_sudo", "_sudo_user", "_su_user", "_doas", "_doas_user")


class ConnectorData(TypedDict):
    orbstack_machine: str
    orbstack_backend: str
    orbstack_user: str
    _orbstack_engine: Any


connector_data_meta: dict[str, DataMeta] = {
    "orbstack_machine": DataMeta("Machine name (``@orbstack/NAME``)"),
    "orbstack_backend": DataMeta("Engine: ``orbstack``, ``docker``, ``incus`` or ``auto`` (unset: "
                                 "``$PYTEST_ORBSTACK_BACKEND``, else auto: OrbStack when ``orbctl`` "
                                 "answers, else Docker, else Incus when its daemon answers)", default=None),
    "orbstack_user": DataMeta("Login user (unset: the machine's default user, which has "
                              "passwordless sudo)", default=None),
    "_orbstack_engine": DataMeta("The engine object itself (API use: pytest-orbstack's Machine "
                                 "hands over its own engine)", default=None),
}


def _cli_data_engine() -> str | None:
    """``--data orbstack_backend=...`` of the pyinfra command line, for ``@orbstack`` without
    a name: pyinfra expands connector names before host data exists, so the inventory being
    built is asked for its override data (the only place ``--data`` is then)."""
    frame = inspect.currentframe()
    while frame is not None:
        inventory = frame.f_locals.get("self")
        override = getattr(inventory, "override_data", None)
        if isinstance(override, dict) and "orbstack_backend" in override:
            return str(override["orbstack_backend"])
        frame = frame.f_back
    return None


def _machine_names() -> list[str]:
    """Running machines, less those of other pytest sessions (``pto-*``: not ours to touch)."""
    try:
        machines = get_backend(_cli_data_engine()).list()
    except MachineError as exc:
        raise ConnectError(str(exc)) from None
    return [m.name for m in machines if m.running and not m.name.startswith(PREFIX)]


class OrbStackConnector(BaseConnector):
    """Run commands in OrbStack machines (or Docker machines made by pytest-orbstack), as the
    machine's default user with passwordless sudo, exactly as ``orb`` does.

    .. code:: shell

        # One machine
        pyinfra @orbstack/web deploy.py

        # Every running machine (those of pytest sessions, ``pto-*``, left out)
        pyinfra @orbstack deploy.py

        # Docker machines instead of OrbStack ones (Linux CI)
        pyinfra @orbstack/web deploy.py --data orbstack_backend=docker

    ``_sudo``, ``_sudo_user``, ``_su_user``, ``_chdir``, ``_env`` and the shell options are applied
    by pyinfra's own command builder; ``_stdin``, ``_timeout`` and ``_success_exit_codes`` here.
    Commands run through the machine's persistent shell (:meth:`Backend.execute`); when output is
    watched (``-vvv``, ``pyinfra exec``) each gets an engine process of its own, and its output
    streams live (stdout and stderr interleaved as they come). Failing commands are reported,
    never retried. ``_get_pty`` is refused: commands have no terminal.
    Uploads go to a temp file first when a privileged user must own the result, then are copied
    into place as that user.
    """

    handles_execution = True
    data_cls = ConnectorData
    data_meta = connector_data_meta
    data: ConnectorData

    backend: Backend
    machine: str
    login_user: str
    transfer_error: str | None = None  # the last failed upload/download, for the deploy's result

    @override
    @staticmethod
    def make_names_data(name: str | None = None
                        ) -> Iterator[tuple[str, dict[str, str], list[str]]]:
        names = [name] if name else _machine_names()
        for machine in names:
            yield f"@orbstack/{machine}", {"orbstack_machine": machine}, ["@orbstack"]

    @override
    def connect(self) -> None:
        """Check the machine exists and runs; raises ConnectError naming the problem."""
        self.machine = self.data["orbstack_machine"]
        engine = "an engine"
        try:
            backend = self.data.get("_orbstack_engine")
            self.backend = backend if isinstance(backend, Backend) else get_backend(self.data.get("orbstack_backend"))
            engine = self.backend.name
            info = self.backend.info(self.machine)
        except MachineError as exc:
            raise ConnectError(f"machine {self.machine!r} on {engine}: {exc}") from None
        if not info.machine.running:
            raise ConnectError(f"machine {self.machine!r} on {engine} is {info.machine.state}; "
                               f"start it first ({self.backend.start_command(self.machine)})")
        self.login_user = self.data.get("orbstack_user") or info.machine.default_username or "root"

    @override
    def run_shell_command(self, command: StringCommand, print_output: bool = False,
                          print_input: bool = False,
                          **arguments: Unpack[ConnectorArguments]) -> tuple[bool, CommandOutput]:
        control = extract_control_arguments(arguments)
        if control.get("_get_pty"):
            return self._not_run("_get_pty=True is not supported by @orbstack: commands run without a terminal")
        unix_command = make_unix_command_for_host(self.state, self.host, command, **arguments)
        raw = unix_command.get_raw_value()
        logger.debug("--> Running command on %s: %s", self.machine, unix_command)
        if print_input:
            echo(f"{self.host.print_prefix}>>> {unix_command}", err=True)
        if print_output:  # watched (-vvv, pyinfra exec): each line as it comes, own process
            argv = self.backend.exec_argv(self.machine, raw, user=self.login_user)
            return_code, output = run_watched(argv, self.backend.env, control.get("_stdin"),
                                              control.get("_timeout"), self.host.print_prefix)
        else:
            try:
                return_code, output = self._in_shell(raw, control.get("_stdin"), control.get("_timeout"))
            except MachineError as exc:  # the engine would not run it: the machine stopped meanwhile
                return self._not_run(str(exc))
        codes = control.get("_success_exit_codes") or [0]
        return return_code in codes, output

    def _not_run(self, message: str) -> tuple[bool, CommandOutput]:
        """A command that did not run: a failure whose stderr says why (logged as pyinfra does)."""
        logger.error(f"{self.host.print_prefix}{message}")
        return False, CommandOutput([OutputLine("stderr", message)])

    def _in_shell(self, command: str, stdin: Any, timeout: float | None) -> tuple[int, CommandOutput]:
        """Run ``command`` through the machine's persistent shell (:meth:`Backend.execute`);
        after ``timeout`` seconds only this command is killed and pyinfra's TimeoutError raised."""
        try:
            proc = self.backend.execute(self.machine, command, user=self.login_user,
                                        input=stdin_bytes(stdin), timeout=timeout or None)
        except CommandTimeout:
            raise TimeoutError(f"command did not finish in {timeout}s") from None
        logger.debug("--> Command exit status: %i", proc.returncode)
        return proc.returncode, output_lines(proc.stdout, proc.stderr)

    def _escalates(self, arguments: Mapping[str, Any]) -> bool:
        return any(arguments.get(key) for key in ESCALATION_ARGS)

    @override
    def put_file(self, filename_or_io: str | IOBase, remote_filename: str,
                 remote_temp_filename: str | None = None, print_output: bool = False,
                 print_input: bool = False, **arguments: Unpack[ConnectorArguments]) -> bool:
        """Upload a file or in-memory IO. With sudo/su the data goes to a temp file that is then
        copied into place as the privileged user (so it owns the result) and removed."""
        with get_file_io(filename_or_io) as file_io:  # type: ignore[arg-type]
            data = file_io.read()
        data = data.encode() if isinstance(data, str) else data
        escalated = self._escalates(arguments)
        target = (remote_temp_filename or self.host.get_temp_filename(remote_filename)
                  if escalated else remote_filename)
        try:
            self.backend.put(self.machine, data, target, user=self.login_user)
        except MachineError as exc:
            return self._transfer_failed("upload", exc)
        if escalated:
            command = StringCommand("cp", QuoteString(target), QuoteString(remote_filename))
            status, output = self.run_shell_command(command, print_output=print_output,
                                                    print_input=print_input, **arguments)
            self._remove(target)
            if not status:
                return self._transfer_failed("upload", output.stderr)
        if print_output:
            echo(f"{self.host.print_prefix}file uploaded: {remote_filename}", err=True)
        return True

    @override
    def get_file(self, remote_filename: str, filename_or_io: str | IOBase,
                 remote_temp_filename: str | None = None, print_output: bool = False,
                 print_input: bool = False, **arguments: Unpack[ConnectorArguments]) -> bool:
        """Download a file; with sudo/su it is first copied to a temp file readable by the login
        user."""
        source = remote_filename
        if self._escalates(arguments):
            source = remote_temp_filename or self.host.get_temp_filename(remote_filename)
            command = StringCommand("sh", "-c", QuoteString(
                f"cp {shlex.quote(remote_filename)} {shlex.quote(source)} && "
                f"chmod a+r {shlex.quote(source)}"))
            status, output = self.run_shell_command(command, print_output=print_output,
                                                    print_input=print_input, **arguments)
            if not status:
                return self._transfer_failed("download", output.stderr)
        try:
            data = self.backend.get(self.machine, source, user=self.login_user)
        except MachineError as exc:
            return self._transfer_failed("download", exc)
        finally:
            if source != remote_filename:
                self._remove(source, sudo=True)
        with get_file_io(filename_or_io, "wb") as file_io:  # type: ignore[arg-type]
            file_io.write(data)
        if print_output:
            echo(f"{self.host.print_prefix}file downloaded: {remote_filename}", err=True)
        return True

    def _transfer_failed(self, what: str, detail: object) -> bool:
        """Log a failed upload or download as pyinfra's own connectors do, and keep the line
        for the operation's result (pyinfra gives a failed transfer no output of its own)."""
        self.transfer_error = f"File {what} error: {detail}"
        logger.error(f"{self.host.print_prefix}{self.transfer_error}")
        return False

    def _remove(self, path: str, sudo: bool = False) -> None:
        self.backend.run(self.machine, f"rm -f {shlex.quote(path)}",
                         user="root" if sudo else self.login_user)
