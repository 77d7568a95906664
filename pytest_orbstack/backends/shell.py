"""One persistent shell per machine and user: a command costs a pipe round trip, not a new
``docker exec`` / ``orbctl run`` process (about 1 ms instead of 55 ms).

The shell is the engine's own exec argv (:meth:`Backend.exec_argv`, so the builders stay the one
place argv is made) running :data:`DRIVER`. The protocol, host to machine, per command::

    <k> <m|->\\n  <the command: k lines>\\n  <m bytes: its stdin; "-" means /dev/null>

(the command is read with the shell's own ``read``: no process per command but its own). The
driver starts each command as ``sh -c COMMAND`` in a new session (``setsid``), exactly what
one ``docker exec NAME sh -c COMMAND`` would run: a ``cd``, ``export``, ``exit`` or ``exec`` in
the command ends with its child, the driver's variables are not exported, and a ``kill 0``
kills only the command's own process group. Its stdout and stderr are two FIFOs of its own (made
32 at a time in a ``mktemp -d`` directory under ``/dev/shm``, else ``$TMPDIR`` or ``/tmp``: out
of the way of what a test reads in ``/tmp``; removed with the shell), each relayed by a ``cat`` to the
shell's own pipe, so they stay separate and binary-safe (the driver's own messages, such as a
killed command's ``Terminated``, go to /dev/null). Frames carry a per-shell random token that
never appears in any process's arguments or environment once the command runs:

* stdout: ``TOKEN p PID \\n`` before the command starts, ``TOKEN r RC \\n`` after it ended;
* stderr: ``TOKEN s \\n`` before it starts, ``TOKEN e \\n`` after it ended.

The end frames go through the FIFOs (the driver holds them open until then), so they follow all
the command wrote; the call returns then, even when a background child still holds a FIFO
(``docker exec`` waits up to 2 s more for such a child). The next command kills that relay
before its start frames; what the relay had passed on is dropped before them, and what the
child writes later meets no reader (SIGPIPE): no later command gets a background child's output.

A timeout kills the command's process group (one extra exec as root) and closes that shell
only. A command the shell could not take (it had ended, or never started: a stopped or missing
machine) runs as one process of its own, so the engine's own error comes back; a shell that ends
during a command gives exit code 255 and says so on stderr, as ssh does. The next command gets a
new shell. Idle shells are kept per (machine, user); a caller that finds none idle (threads,
pyinfra's greenlets) starts another. ``PYTEST_ORBSTACK_SHELL=off`` turns it all off: one
process per command.
"""

from __future__ import annotations

import os
import secrets
import selectors
import subprocess
import threading
import time
from collections.abc import Callable

from pytest_orbstack import settings
from pytest_orbstack.backends.process import run
from pytest_orbstack.errors import CommandTimeout

DRIVER = r"""s=setsid; command -v setsid >/dev/null 2>&1 || s=
exec 3>&2 2>/dev/null
IFS= read -r t || exit 0
d=$(mktemp -d /dev/shm/pytest-orbstack-shell.XXXXXX 2>/dev/null ||
   mktemp -d "${TMPDIR:-/tmp}/pytest-orbstack-shell.XXXXXX") || exit 0
n=0 a= b=
go() { read -r p _ </proc/self/stat; printf '%sp%d\n' "$t" "$p"; exec $s sh -c "$c"; }
while read -r k m; do
  IFS= read -r c; i=1
  while [ "$i" -lt "$k" ]; do IFS= read -r l; c="$c
$l"; i=$((i + 1)); done
  kill $a $b; wait $a $b
  if [ $((n % 32)) = 0 ]; then
    rm -f "$d"/*; set --; i=$n
    while [ "$i" -lt $((n + 32)) ]; do set -- "$@" "$d/o$i" "$d/e$i"; i=$((i + 1)); done
    mkfifo "$@" || break
  fi
  o=$d/o$n e=$d/e$n; n=$((n + 1))
  exec 5<>"$o" 6<>"$e" 7<"$o" 8<"$e"
  printf '%ss\n' "$t" >&3
  cat <&7 3>&- 5>&- 6>&- 7<&- 8<&- & a=$!
  cat <&8 >&3 3>&- 5>&- 6>&- 7<&- 8<&- & b=$!
  exec 7<&- 8<&-
  if [ "$m" = - ]; then
    (go) </dev/null >"$o" 2>"$e" 3>&- 5>&- 6>&-
  else
    head -c "$m" 3>&- 5>&- 6>&- | { (go) >"$o" 2>"$e"; r=$?; cat >/dev/null; exit $r; } 3>&- 5>&- 6>&-
  fi
  r=$?
  printf '%se\n' "$t" >&6
  printf '%sr%d\n' "$t" "$r" >&5
  exec 5>&- 6>&-
done
kill $a $b
rm -rf "$d"
"""
DIED = b"pytest-orbstack: the machine's shell ended during this command\n"
ArgvFor = Callable[[str, "str | None", str], list[str]]  # (machine, user, command) -> argv


class Stream:
    """What one of the shell's two pipes gives one command: the bytes between its start frame
    (``p``, ``s``) and its end frame (``r``, ``e``). Bytes before the start frame are a background
    child's late output relayed before the driver stopped its relay, and are dropped."""

    def __init__(self, token: bytes, start: bytes, end: bytes) -> None:
        self.token, self.start, self.end = token, start[0], end[0]
        self.data = bytearray()
        self.first: int | None = None  # the start frame's number (the command's pid), once seen
        self.last: int | None = None  # the end frame's number (the exit code), once seen
        self.started = self.done = False

    def feed(self, chunk: bytes) -> None:
        scan = max(0, len(self.data) - len(self.token) - 24)
        self.data += chunk
        while not self.done and (at := self.data.find(self.token, scan)) >= 0:
            stop = self.data.find(b"\n", at)
            if stop < 0:
                break
            kind, digits = self.data[at + len(self.token)], self.data[at + len(self.token) + 1:stop]
            value = int(digits) if digits else 0
            if kind == self.start and not self.started:
                del self.data[:stop + 1]
                self.started, self.first, scan = True, value, 0
            elif kind == self.end and self.started:
                del self.data[at:]
                self.done, self.last = True, value
            else:
                scan = stop + 1
        if not self.started:  # keep only what may be the start of a frame
            del self.data[:max(0, len(self.data) - len(self.token) - 24)]

    def received(self) -> bytes:
        return bytes(self.data) if self.started else b""


class Shell:
    """One running driver. Not thread-safe: :class:`Shells` lends it to one caller at a time."""

    def __init__(self, argv: list[str], env: dict[str, str] | None) -> None:
        self.token = secrets.token_hex(16).encode()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.fds = [pipe.fileno() for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr)
                    if pipe is not None]
        for fd in self.fds:
            os.set_blocking(fd, False)
        self.greeted = False
        self.alive = True

    def run(self, command: bytes, input: bytes | None, timeout: float | None,
            kill: Callable[[int], None]) -> tuple[int, bytes, bytes] | None:
        """(exit code, stdout, stderr) of ``command``; None if the shell could not take it (the
        command did not start). On timeout ``kill(pid)`` ends the command's process group and
        CommandTimeout is raised."""
        header = b"" if self.greeted else self.token + b"\n"
        header += b"%d %s\n" % (command.count(b"\n") + 1, b"-" if input is None else b"%d" % len(input))
        self.greeted = True
        pending = memoryview(header + command + b"\n" + (input or b""))
        stdin_fd, out_fd, err_fd = self.fds
        out, err = Stream(self.token, b"p", b"r"), Stream(self.token, b"s", b"e")
        streams = {out_fd: out, err_fd: err}
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdin_fd, selectors.EVENT_WRITE)
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(err_fd, selectors.EVENT_READ)
            while not (out.done and err.done):
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = sel.select(wait)
                if not events and deadline is not None and time.monotonic() >= deadline:
                    if out.first is not None:
                        kill(out.first)
                    self.close()
                    raise CommandTimeout(f"command did not finish in {timeout:.0f}s")
                for key, _ in events:
                    if key.fd == stdin_fd:
                        pending = self._write(sel, stdin_fd, pending)
                        continue
                    try:
                        chunk = os.read(key.fd, 1 << 18)
                    except BlockingIOError:
                        continue
                    if not chunk:  # the shell ended
                        self.close()
                        if out.first is None:
                            return None
                        return 255, out.received(), err.received() + DIED
                    streams[key.fd].feed(chunk)
        assert out.last is not None
        return out.last, out.received(), err.received()

    @staticmethod
    def _write(sel: selectors.BaseSelector, fd: int, pending: memoryview) -> memoryview:
        """Write what the pipe takes of ``pending``; the rest."""
        try:
            pending = pending[os.write(fd, pending[:1 << 16]):]
        except BlockingIOError:
            return pending
        except BrokenPipeError:
            pending = pending[:0]
        if not pending:
            sel.unregister(fd)
        return pending

    def close(self) -> None:
        """End the driver (EOF on its stdin) and reap it; safe to call twice."""
        self.alive = False
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        try:
            self.proc.wait(timeout=settings.SHELL_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Shells:
    """The idle shells of one engine, per (machine, user); ``argv_for`` is the engine's exec
    argv builder and ``env`` its environment."""

    def __init__(self, argv_for: ArgvFor, env: dict[str, str] | None) -> None:
        self.argv_for = argv_for
        self.env = env
        self.idle: dict[tuple[str, str | None], list[Shell]] = {}
        self.lock = threading.Lock()

    def run(self, name: str, command: str, *, user: str | None, input: bytes | None,
            timeout: float | None) -> subprocess.CompletedProcess[bytes]:
        """Run shell ``command`` in ``name`` as ``user`` as one ``exec_argv`` process would."""
        key = (name, user)
        with self.lock:
            shells = self.idle.get(key)
            shell = shells.pop() if shells else None
        result = None
        for fresh in ((False, True) if shell else (True,)):
            if fresh or shell is None:
                try:
                    shell = Shell(self.argv_for(name, user, DRIVER), self.env)
                except OSError:  # no engine binary: the one process raises EngineUnavailable
                    shell = None
                    break
            try:
                result = shell.run(command.encode(), input, timeout, lambda pid: self._kill(name, pid))
            except BaseException:
                shell.close()
                raise
            if result is not None:
                break
        if shell is None or result is None:  # not even a new shell took it: the engine's answer
            return run(self.argv_for(name, user, command), timeout=timeout, input=input,
                       env=self.env)
        if shell.alive:
            with self.lock:
                self.idle.setdefault(key, []).append(shell)
        return subprocess.CompletedProcess(["sh", "-c", command], *result)

    def _kill(self, name: str, pid: int) -> None:
        kill = f"kill -s KILL -- -{pid} 2>/dev/null || kill -s KILL {pid}"
        run(self.argv_for(name, "root", kill), timeout=settings.POLL_TIMEOUT, env=self.env)

    def close(self, name: str) -> None:
        """Close the idle shells of machine ``name`` (deleted or stopped)."""
        with self.lock:
            keys = [key for key in self.idle if key[0] == name]
            closing = [shell for key in keys for shell in self.idle.pop(key)]
        for shell in closing:
            shell.close()
