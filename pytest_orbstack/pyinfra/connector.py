"""PyInfra connector ``@orbstack``: run deploys against the machines of any engine, and how a
command's bytes move (pyinfra's ``_stdin`` forms, output lines, a watched ``-vvv`` or ``pyinfra
exec`` command as an engine process of its own whose output is shown as it comes). Its host data
and the machines a bare ``@orbstack`` names: :mod:`.inventory`."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from io import IOBase
from typing import TYPE_CHECKING, Any

from gevent.subprocess import PIPE, Popen
from pyinfra import logger
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.output import echo
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.util import (
    CommandOutput,
    OutputLine,
    extract_control_arguments,
    make_unix_command_for_host,
    read_output_buffers,
    write_stdin,
)
from typing_extensions import TypedDict, Unpack, override

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import CommandTimeout, MachineError
from pytest_orbstack.pyinfra.inventory import connector_data_meta, machine_names

if TYPE_CHECKING:
    from pyinfra.api.arguments import ConnectorArguments

ESCALATION_ARGS = ("_sudo", "_sudo_user", "_su_user", "_doas", "_doas_user")


class ConnectorData(TypedDict):
    orbstack_machine: str
    orbstack_backend: str
    orbstack_user: str
    _orbstack_engine: Any


def stdin_bytes(stdin: Any) -> bytes | None:
    """pyinfra's ``_stdin`` (a string, lines, or a file) as bytes, each line ending in a
    newline, as pyinfra's ``write_stdin`` writes it; None when there is none."""
    if not stdin:
        return None
    lines = stdin.readlines() if hasattr(stdin, "readlines") else stdin
    lines = lines if isinstance(lines, (list, tuple)) else [lines]
    return "".join(line if line.endswith("\n") else f"{line}\n" for line in lines).encode()


def output_lines(out: bytes, err: bytes) -> CommandOutput:
    """pyinfra's output lines: stdout's, then stderr's (undecodable bytes replaced)."""
    return CommandOutput([OutputLine(name, line) for name, raw in (("stdout", out), ("stderr", err))
                          for line in raw.decode(errors="replace").splitlines()])


def run_watched(argv: list[str], env: dict[str, str] | None, stdin: Any, timeout: float | None,
                print_prefix: str) -> tuple[int, CommandOutput]:
    """pyinfra's ``run_local_process`` for an argv (no host shell) in the engine's environment,
    each output line printed. Under the CLI (gevent's monkey patching) each line is shown as it
    comes through pyinfra's ``read_output_buffers``, stdout and stderr in their order; in
    pytest's API runs the pipes are read at once (a Ctrl-C must reach pytest at once, which a
    wait inside gevent's hub would delay). After ``timeout`` seconds the engine client is
    killed and pyinfra's TimeoutError raised, as its own connectors do."""
    if not _gevent_patched():
        return _communicate(argv, env, stdin, timeout, print_prefix)
    process = Popen(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, env=env)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        if stdin:
            write_stdin(stdin, process.stdin)
        process.stdin.close()
        output = read_output_buffers(_decoded(process.stdout), _decoded(process.stderr),
                                     timeout=timeout or None,  # type: ignore[arg-type]
                                     print_output=True, print_prefix=print_prefix)
    except BaseException:  # TimeoutError, or the greenlet killed by gevent.Timeout
        process.kill()
        raise
    finally:
        process.wait()
        process.stdout.close()
        process.stderr.close()
    logger.debug("--> Command exit status: %i", process.returncode)
    return process.returncode, output


def _communicate(argv: list[str], env: dict[str, str] | None, stdin: Any, timeout: float | None,
                 print_prefix: str) -> tuple[int, CommandOutput]:
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    try:
        out, err = process.communicate(stdin_bytes(stdin), timeout=timeout or None)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise TimeoutError(f"command did not finish in {timeout}s") from None
    output = output_lines(out, err)
    for line in output:
        echo(f"{print_prefix}{line.line}", err=True)
    return process.returncode, output


def _gevent_patched() -> bool:
    """pyinfra's CLI monkey-patches subprocess with gevent; pytest's API use does not."""
    from gevent import monkey
    return bool(monkey.is_module_patched("subprocess"))


def _decoded(pipe: Iterable[bytes]) -> Iterator[str]:
    """Lines of a pipe as text; bytes that are not UTF-8 are replaced rather than ending the
    reader (pyinfra's ``read_buffer`` decodes strictly)."""
    for line in pipe:
        yield line.decode(errors="replace")


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
        names = [name] if name else machine_names()
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
            state, default_user = self.backend.state(self.machine)
        except MachineError as exc:
            raise ConnectError(f"machine {self.machine!r} on {engine}: {exc}") from None
        if state != "running":
            raise ConnectError(f"machine {self.machine!r} on {engine} is {state}; "
                               f"start it first ({self.backend.start_command(self.machine)})")
        self.login_user = self.data.get("orbstack_user") or default_user

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
