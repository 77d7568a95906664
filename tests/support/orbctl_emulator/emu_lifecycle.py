"""``orbctl start``, ``stop`` and ``restart`` of the emulator (its other commands: orbctl.py).

Sources (tags as in emu_facts.py): ``start`` and ``stop`` are idempotent (SRC scon/start.go
startLocked: a running machine is left alone); ``stop`` without a name stops every machine
(G-cli), ``start`` without one only marks OrbStack running (ASSUMED). ``restart [-a|--all] [ID/NAME]..`` (SRC
scon/cmd/scli/cmd/restart.go): each machine looked up by ID, then by name, and restarted in
turn; neither a name nor ``--all`` fails with ``no machines specified``. ``orb restart NAME``
prints nothing, and the machine's init does restart while ``uptime`` (the shared kernel's) goes
on (#923: the maintainer's answer, ``systemctl status`` shows the new start). What OrbStack's
daemon does for it (``ContainerRestart``) is not public: ASSUMED a stop then a start as those
commands do them (/tmp, a tmpfs, starts empty), also for a stopped machine, returning once the
machine's setup ran (as ``start`` does here).
"""

from __future__ import annotations

from emu_home import Fail
from emu_machines import find, machines, name_of, running, set_status, start_machine
from emu_substrate import substrate


def cmd_lifecycle(verb):
    def run(argv):
        every = verb == "restart" and bool({"-a", "--all"} & set(argv))  # restart's own flag (SRC)
        names = [n for n in argv if n not in ("-a", "--all")] if every else argv
        for flag in (n for n in names if n.startswith("-")):
            raise Fail(f"Error: unknown flag: {flag}")
        if not names and not every:
            if verb == "restart":
                raise Fail("Error: no machines specified")
            if verb == "stop":  # OrbStack starts/stops itself (stop: ALL machines); clients never do
                for c in filter(running, machines()):
                    substrate.stop(c)
            set_status("Running" if verb != "stop" else "Stopped")
            return
        for c in machines() if every else [find(n) for n in dict.fromkeys(names)]:
            if verb in ("stop", "restart") and running(c):
                substrate.stop(c)
            if verb in ("start", "restart"):
                start_machine(find(name_of(c)))
    return run
