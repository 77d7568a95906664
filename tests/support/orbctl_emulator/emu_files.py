"""The orbctl emulator's ``run``, ``push`` and ``pull``: a command or a file crosses into a
machine through the substrate's exec (``docker exec``, ``incus exec``; the sources are named in
tests/support/orbctl_emulator/orbctl.py)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import emu_facts as facts
from emu_machines import (
    Fail,
    default_machine,
    execute,
    find,
    load_state,
    login,
    lookup,
    name_of,
    parse,
    record,
    start_machine,
)
from emu_substrate import substrate

# Shell snippets get their values as positional parameters, never spliced into the text.
TILDE = 'case $p in "~") p=$HOME;; "~/"*) p=$HOME/${p#"~/"};; esac\n'
PUSH_SH = ('HOME=$(getent passwd "$5" | cut -d: -f6); cd "${HOME:-/}" 2>/dev/null || cd /; p=$1\n' + TILDE +
           'if [ -d "$p" ]; then p=${p%/}/$2; elif [ "$4" = multi ]; then\n'
           '  echo "cp: target \'$1\' is not a directory" >&2; exit 1; fi\n'
           'if [ -d "$p" ]; then echo "cp: cannot overwrite directory \'$p\' with non-directory" >&2; exit 1; fi\n'
           'new=; [ -e "$p" ] || new=1\n'
           'err=$(touch -- "$p" 2>&1) || { echo "cp: cannot create regular file \'$p\': ${err##*: }" >&2; exit 1; }\n'
           'cat > "$p" || exit 1\n[ -z "$new" ] || chmod "$3" -- "$p"\n')
PULL_SH = ('cd ~ 2>/dev/null || cd /; p=$1\n' + TILDE +
           'err=$(ls -d -- "$p" 2>&1) || { echo "cp: cannot stat \'$1\': ${err##*: }" >&2; exit 1; }\n'
           'if [ -d "$p" ]; then echo "cp: -r not specified; omitting directory \'$1\' '
           '(the orbctl emulator copies files only)" >&2; exit 1; fi\n'
           'if [ ! -r "$p" ]; then echo "cp: cannot open \'$1\' for reading: Permission denied" >&2; exit 1; fi\n'
           'exec cat -- "$p"\n')


RUN_FLAGS = {"-m": "machine", "--machine": "machine", "-machine": "machine", "-u": "user", "--user": "user",
             "-user": "user", "-w": "workdir", "--workdir": "workdir", "-workdir": "workdir"}
RUN_SWITCHES = {"-s": "shell", "--shell": "shell", "-shell": "shell", "-p": "path", "--path": "path", "-path": "path"}


def parse_run_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """As SRC cmd/run.go ParseRunFlags: flags only before the first other argument, a value as
    ``-m NAME`` or ``-m=NAME`` (never ``-mNAME``), an unknown ``KEY=VALUE`` flag ignored, the
    error texts as there (#2122 and #2202 show ``Error: unknown flag --`` on 2.0.x). ``--``
    ends the flags (2.0.1-2.0.3 refused it, #2122; accepted since: ASSUMED)."""
    opts, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        arg, i = argv[i], i + 1
        if arg == "--":
            break
        if arg in RUN_SWITCHES:
            opts[RUN_SWITCHES[arg]] = True
            continue
        key, eq, value = arg.partition("=")
        if eq:
            if key in RUN_FLAGS:
                opts[RUN_FLAGS[key]] = value
            elif key in RUN_SWITCHES:
                opts[RUN_SWITCHES[key]] = value == "true"
            continue
        if key not in RUN_FLAGS:
            raise Fail(f"Error: unknown flag {arg}")
        if i >= len(argv):
            raise Fail(f"Error: missing value for flag {arg}")
        opts[RUN_FLAGS[key]], i = argv[i], i + 1
    return opts, argv[i:]


def cmd_run(argv):
    opts, command = parse_run_flags(argv)
    c = over_ssh(opts.get("machine") or default_machine())
    start_machine(c)
    user = opts.get("user") or login(c)
    args = substrate.exec_argv(c["Id"], user, os.isatty(0) and os.isatty(1))
    # The directory: -w's, else the caller's own (#1661, #1005, #38; SRC shell/ssh.go sends
    # os.Getwd()); an empty one is the user's home; one the machine lacks becomes / without a
    # word (SRC scon/agent/process.go ResolveSSHDir: "reset to / if not").
    cwd = opts["workdir"] if "workdir" in opts else os.getcwd()
    cd = f"cd {shlex.quote(cwd)} 2>/dev/null || cd /; " if cwd else "cd ~ 2>/dev/null || cd /; "
    if opts.get("shell") or not command:
        shell = cd + 's=$(getent passwd "$(id -un)" | cut -d: -f7); exec "${s:-/bin/sh}" -l'
        command = ["sh", "-c", shell + (' -c "$1"' if command else ""), "sh", " ".join(command)]
    else:
        command = ["sh", "-c", cd + 'exec "$@"', "sh", *command]
    sys.stdout.flush()
    try:
        substrate.replace_process([*args, *command])
    except FileNotFoundError:
        raise Fail(f"{substrate.NAME.capitalize()} is unavailable: {args[0]!r} not found "
                   f"(the orbctl emulator needs it)")


def over_ssh(name: str) -> dict:
    """The machine ``run``, ``push`` and ``pull`` reach. SRC: they go through OrbStack's SSH
    server as USER@NAME (scon/cmd/scli/shell/ssh.go RunSSH, copy.go); its resolveUser fails for
    an unknown NAME, and handleSession writes that error ("machine not found") only to a
    terminal (printErr = isPty, scon/ssh.go), then exits 1: without one, nothing is said."""
    c = lookup(name)
    if c is None:
        if os.isatty(0) and os.isatty(1):
            raise Fail("machine not found")
        sys.exit(1)
    return c


def copy_args(verb: str, argv: list[str]):
    a = parse(verb, argv, "-m/--machine", "paths+")
    c = over_ssh(a.machine or default_machine())
    start_machine(c)
    srcs, dest = (a.paths[:-1], a.paths[-1]) if len(a.paths) > 1 else (a.paths, None)
    return find(name_of(c)), srcs, dest


def cmd_push(argv):
    c, srcs, dest = copy_args("push", argv)
    status = 0
    for src in srcs:
        path = Path(src)
        if not path.exists() or path.is_dir():
            print(facts.PUSH_NO_SOURCE.format(path.absolute()) if not path.exists() else
                  f"cp: -r not specified; omitting directory '{src}' (the orbctl emulator copies files only)",
                  file=sys.stderr)
            status = 1
            continue
        mode = format(path.stat().st_mode & 0o777, "o")
        writer = "root" if facts.has("push_as_root") else login(c)  # #407
        proc = execute(c["Id"], ["sh", "-c", PUSH_SH, "sh", dest or ".", path.name, mode,
                                 "multi" if len(srcs) > 1 else "one", login(c)], user=writer,
                       input=path.read_bytes(), binary=True)
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        status = status or (1 if proc.returncode else 0)
    return status


def cmd_pull(argv):
    c, srcs, dest = copy_args("pull", argv)
    status, dest = 0, dest or "."
    if record(c, load_state())["config"]["isolated"] and not facts.has("copy_isolated"):
        raise Fail(facts.COPY_ISOLATED.format(os.path.abspath(dest)))
    if len(srcs) > 1 and not os.path.isdir(dest):
        raise Fail(f"cp: target '{dest}' is not a directory")
    for src in srcs:
        proc = execute(c["Id"], ["sh", "-c", PULL_SH, "sh", src], user=login(c), binary=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
            status = 1
            continue
        target = os.path.join(dest, os.path.basename(src.rstrip("/"))) if os.path.isdir(dest) else dest
        try:
            Path(target).write_bytes(proc.stdout)
        except OSError as exc:
            print(f"cp: cannot create regular file '{target}': {exc.strerror}", file=sys.stderr)
            status = 1
    return status
