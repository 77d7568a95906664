"""How the ``@orbstack`` connector moves a command's bytes: pyinfra's ``_stdin`` forms to bytes,
output to pyinfra's lines, and a watched command (``-vvv``, ``pyinfra exec``) as an engine
process of its own whose output is shown as it comes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

from gevent.subprocess import PIPE, Popen
from pyinfra import logger
from pyinfra.api.output import echo
from pyinfra.connectors.util import CommandOutput, OutputLine, read_output_buffers, write_stdin


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
