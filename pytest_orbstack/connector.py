"""PyInfra connector ``@orbstack``: run deploys against OrbStack machines.

.. code:: shell

    pyinfra @orbstack/web deploy.py          # one machine
    pyinfra @orbstack deploy.py              # every running machine
    pyinfra @orbstack/web deploy.py --data orbstack_backend=docker   # a Docker "machine"

Commands run as the machine's default user (passwordless sudo), exactly as ``orb`` does;
``_sudo``, ``_sudo_user``, ``_su_user``, ``_chdir``, ``_env`` and the shell options are applied by
pyinfra's own command builder, ``_stdin``, ``_timeout`` and ``_success_exit_codes`` here. Failing
commands are reported, never retried. Uploads go to a temp file first when a privileged user must
own the result, then are copied into place as that user.
"""

from __future__ import annotations

import shlex
import subprocess
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

from .backends import get_backend, resolve_kind
from .backends.base import Backend
from .errors import OrbStackError

if TYPE_CHECKING:
    from pyinfra.api.arguments import ConnectorArguments

ESCALATION_ARGS = ("_sudo", "_sudo_user", "_su_user", "_doas", "_doas_user")


def _lines(data: bytes) -> list[str]:
    """Output lines as pyinfra's own connectors split them: on newlines only."""
    text = data.decode(errors="replace")
    return text[:-1].split("\n") if text.endswith("\n") else (text.split("\n") if text else [])


def _stdin_bytes(stdin: Any) -> bytes | None:
    """pyinfra's ``_stdin`` (str, lines or a file) as bytes, each line newline-terminated."""
    if not stdin:
        return None
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    lines = stdin if isinstance(stdin, (list, tuple)) else [stdin]
    return "".join(line if line.endswith("\n") else f"{line}\n" for line in lines).encode()


class ConnectorData(TypedDict):
    orbstack_machine: str
    orbstack_backend: str
    orbstack_user: str


connector_data_meta: dict[str, DataMeta] = {
    "orbstack_machine": DataMeta("Machine name"),
    "orbstack_backend": DataMeta("Engine: orbstack, docker or auto (default: "
                                 "$PYTEST_ORBSTACK_BACKEND, else auto)"),
    "orbstack_user": DataMeta("Login user (default: the machine's default user)"),
}


def _backend_kind(data_kind: str | None = None) -> str:
    """Host data ``orbstack_backend``, else $PYTEST_ORBSTACK_BACKEND, else auto (the one rule
    of :func:`pytest_orbstack.backends.resolve_kind`)."""
    return resolve_kind(data_kind)


def _machine_names() -> list[str]:
    try:
        return [m.name for m in get_backend(_backend_kind()).list() if m.running]
    except OrbStackError as exc:
        raise ConnectError(str(exc)) from None


class OrbStackConnector(BaseConnector):
    handles_execution = True
    data_cls = ConnectorData
    data_meta = connector_data_meta
    data: ConnectorData

    backend: Backend
    machine: str
    login_user: str

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
        kind = "an engine"
        try:
            kind = _backend_kind(self.data.get("orbstack_backend"))
            self.backend = get_backend(kind)
            info = self.backend.info(self.machine)
        except OrbStackError as exc:
            raise ConnectError(f"machine {self.machine!r} on {kind}: {exc}") from None
        if not info.machine.running:
            start = (f"orbctl start {shlex.quote(self.machine)}" if kind == "orbstack"
                     else f"docker start {shlex.quote(self.machine)}")
            raise ConnectError(f"machine {self.machine!r} on {kind} is {info.machine.state}; "
                               f"start it first ({start})")
        self.login_user = self.data.get("orbstack_user") or info.machine.default_username or "root"

    @override
    def run_shell_command(self, command: StringCommand, print_output: bool = False,
                          print_input: bool = False,
                          **arguments: Unpack[ConnectorArguments]) -> tuple[bool, CommandOutput]:
        control = extract_control_arguments(arguments)
        arguments.pop("_get_pty", None)
        unix_command = make_unix_command_for_host(self.state, self.host, command, **arguments)
        argv = self.backend.exec_argv(self.machine, unix_command.get_raw_value(),
                                      user=self.login_user)
        logger.debug("--> Running command on %s: %s", self.machine, unix_command)
        if print_input:
            echo(f"{self.host.print_prefix}>>> {unix_command}", err=True)
        return_code, output = self._execute(argv, control.get("_stdin"), control.get("_timeout"),
                                            print_output)
        codes = control.get("_success_exit_codes") or [0]
        return return_code in codes, output

    def _execute(self, argv: list[str], stdin: Any, timeout: float | None,
                 print_output: bool) -> tuple[int, CommandOutput]:
        """Run argv; kill it after ``timeout`` seconds (raising TimeoutError, as pyinfra's own
        connectors do). Works with and without gevent's monkey patching."""
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=self.backend.env)
        try:
            stdout, stderr = process.communicate(_stdin_bytes(stdin), timeout=timeout or None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise TimeoutError(f"command did not finish in {timeout}s") from None
        lines = [OutputLine(name, line) for name, data in (("stdout", stdout), ("stderr", stderr))
                 for line in _lines(data)]
        if print_output:
            for line in lines:
                echo(f"{self.host.print_prefix}{line.line}", err=True)
        return process.returncode, CommandOutput(lines)

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
        except OrbStackError as exc:
            logger.error(f"{self.host.print_prefix}File upload error: {exc}")
            return False
        if escalated:
            command = StringCommand("cp", QuoteString(target), QuoteString(remote_filename))
            status, output = self.run_shell_command(command, print_output=print_output,
                                                    print_input=print_input, **arguments)
            self._remove(target)
            if not status:
                logger.error(f"{self.host.print_prefix}File upload error: {output.stderr}")
                return False
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
                logger.error(f"{self.host.print_prefix}File download error: {output.stderr}")
                return False
        try:
            data = self.backend.get(self.machine, source, user=self.login_user)
        except OrbStackError as exc:
            logger.error(f"{self.host.print_prefix}File download error: {exc}")
            return False
        finally:
            if source != remote_filename:
                self._remove(source, sudo=True)
        with get_file_io(filename_or_io, "wb") as file_io:  # type: ignore[arg-type]
            file_io.write(data)
        if print_output:
            echo(f"{self.host.print_prefix}file downloaded: {remote_filename}", err=True)
        return True

    def _remove(self, path: str, sudo: bool = False) -> None:
        self.backend.run(self.machine, f"rm -f {shlex.quote(path)}",
                         user="root" if sudo else self.login_user)
