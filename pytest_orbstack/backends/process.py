"""The one subprocess policy for engine commands: argv lists (never a host shell), a timeout
on every call, a missing binary or a timeout turned into a typed error, and one mapping from an
engine's stderr to the typed errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from pytest_orbstack.errors import CommandTimeout, EngineUnavailable, MachineError

ErrorPatterns = Sequence[tuple[str, type[MachineError]]]


def run(argv: Sequence[str], *, timeout: float | None, input: bytes | None = None,
        env: Mapping[str, str] | None = None, missing: str = "",
        detached: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` and return the finished process (its exit code is not checked).

    stdin is ``input`` or /dev/null (never both: gevent's patched subprocess, under the pyinfra
    CLI, refuses both). A missing binary raises EngineUnavailable (``missing`` says what to
    install); a timeout ends the process and raises CommandTimeout. ``timeout=None`` (no
    limit) is only for a command run in a machine whose caller set none, as pyinfra's
    ``_timeout`` unset. ``detached``: for an engine whose client is the engine (Podman, no
    daemon), which a SIGKILL in the middle of a change leaves half-made (a container its own
    list no longer shows, still held by the runtime): the command runs in a session of its own,
    out of reach of a signal to this process's group (kill -9 of the group, a terminal's Ctrl-C;
    the session's watcher waits for it), and a timeout or an exception here (KeyboardInterrupt)
    ends it with SIGTERM, which Podman defers until its change is whole, SIGKILL only after
    :data:`TERM_GRACE` seconds."""
    argv = list(argv)
    try:
        if detached:
            return _run_detached(argv, timeout, input, env)
        if input is not None:
            return subprocess.run(argv, capture_output=True, input=input, timeout=timeout,
                                  env=dict(env) if env is not None else None)
        return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                              env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise EngineUnavailable(missing or f"{argv[0]} not found on PATH", argv=argv) from None
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"{describe(argv)} did not finish in {timeout:.0f}s", argv=argv) from None


TERM_GRACE = 10.0


def _run_detached(argv: list[str], timeout: float | None, input: bytes | None,
                  env: Mapping[str, str] | None) -> subprocess.CompletedProcess[bytes]:
    """:func:`run`'s ``detached`` case: a session of its own; SIGTERM, then SIGKILL after
    :data:`TERM_GRACE` s, when the wait ends early (a timeout, KeyboardInterrupt)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(env) if env is not None else None, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.communicate(timeout=TERM_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def run_text(argv: Sequence[str], *, timeout: float, input: str | bytes | None = None,
             env: Mapping[str, str] | None = None, missing: str = "",
             detached: bool = False) -> subprocess.CompletedProcess[str]:
    """:func:`run` with text in and out (undecodable bytes replaced), for engine commands whose
    output is read as text."""
    data = input.encode() if isinstance(input, str) else input
    proc = run(argv, timeout=timeout, input=data, env=env, missing=missing, detached=detached)
    return subprocess.CompletedProcess(list(argv), proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def describe(argv: Sequence[str]) -> str:
    """``orbctl create``, ``docker run``: the program's name and its verb, for messages."""
    words = [argv[0].rsplit("/", 1)[-1], *(a for a in argv[1:3] if not a.startswith("-"))]
    return " ".join(words[:2])


HELP_POINTER = re.compile(r"^(Run|See) '[^']+ --help'")  # docker's and podman's last line after a usage error


def last_line(text: str, fallback: str = "") -> str:
    """The last non-empty line of an engine's output (where CLIs put the reason), a pointer to
    the CLI's own ``--help`` left out (docker ends a daemon's refusal with one)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    reasons = [line for line in lines if not HELP_POINTER.match(line)]
    return reasons[-1] if reasons else fallback


def map_error(argv: Sequence[str], returncode: int, stderr: str, patterns: ErrorPatterns,
              default: type[MachineError] = MachineError) -> MachineError:
    """The typed error for a failed engine command: the class of the first pattern found in
    ``stderr``; the message is ``<program verb>: <last stderr line>``."""
    stderr = stderr.strip()
    last = last_line(stderr, f"exit status {returncode}")
    error = next((cls for text, cls in patterns if text in stderr), default)
    return error(f"{describe(argv)}: {last}", stderr=stderr, argv=list(argv), returncode=returncode)


@contextmanager
def told(notice: Callable[[str], None], what: str) -> Iterator[None]:
    """Tell ``notice`` (the backend's :attr:`~.base.Backend.notice`) that ``what`` starts, then that it is
    done (or failed) and how long it took: work of a minute that happens once."""
    notice(f"pytest-orbstack: {what}...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        notice(f"pytest-orbstack: {what}: failed after {time.monotonic() - started:.1f}s")
        raise
    notice(f"pytest-orbstack: {what}: done in {time.monotonic() - started:.1f}s")


def answers(argv: Sequence[str], timeout: float) -> bool:
    """True if ``argv[0]`` is on PATH and ``argv`` exits 0 within ``timeout`` seconds (an
    engine's cheap "is the daemon there" probe, for ``auto``)."""
    if not shutil.which(argv[0]):
        return False
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
