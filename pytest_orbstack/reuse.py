"""The debug loop, Molecule's converge/login done with pytest: machines kept by
``--orbstack-keep`` are found again by the test that made them. ``--orbstack-list`` shows them;
``--orbstack-reuse`` runs the same tests on them (the deploy is applied again, nothing is
created)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .registry import Registry, owner_alive


@dataclass(frozen=True)
class KeptMachine:
    """A kept machine of a session of this user and project, with the test that made it."""
    session: str
    name: str
    backend: str
    test: str
    image: str
    kept_at: float
    running_session: bool  # its pytest still runs: not to be reused

    def age(self, now: float | None = None) -> str:
        seconds = int((now or time.time()) - self.kept_at)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"


def login_command(backend: str, name: str) -> str:
    """How a person logs in to machine ``name`` of engine ``backend``."""
    return f"orb -m {name}" if backend == "orbstack" else f"docker exec -it {name} bash -l"


def kept_machines(registry: Registry, user: str, project: str) -> list[KeptMachine]:
    """Every kept machine of this user's sessions in ``project``, newest first."""
    found = []
    for session in registry.sessions():
        if session.user != user or session.project != project:
            continue
        alive = owner_alive(session.pid, session.start, session.host)
        for name in session.kept:
            about = session.about.get(name, {})
            found.append(KeptMachine(session.id, name, session.backend, about.get("test", "?"),
                                     about.get("image", "?"), about.get("kept_at", session.created),
                                     alive))
    return sorted(found, key=lambda k: k.kept_at, reverse=True)


def finder(registry: Registry, user: str, project: str, backend: str
           ) -> Callable[[str], KeptMachine | None]:
    """``find(test_key)``: the newest kept machine of that test on ``backend`` whose session
    has ended, or None (read once: the kept machines do not change under a session)."""
    usable = {}
    for kept in reversed(kept_machines(registry, user, project)):  # newest wins
        if kept.backend == backend and not kept.running_session:
            usable[kept.test] = kept
    return usable.get


def listing(kept: list[KeptMachine]) -> list[str]:
    """``--orbstack-list``'s lines: machine, test, image, age, how to log in."""
    if not kept:
        return ["orbstack: no kept machines in this project (keep some with --orbstack-keep)"]
    width = max(len(k.name) for k in kept)
    lines = [f"{'machine':<{width}}  {'age':>5}  {'image':<16} test / login"]
    for k in kept:
        busy = "  (its pytest still runs)" if k.running_session else ""
        lines.append(f"{k.name:<{width}}  {k.age():>5}  {k.image:<16} {k.test}{busy}")
        lines.append(f"{'':<{width}}  {'':>5}  {'':<16} {login_command(k.backend, k.name)}")
    return lines
