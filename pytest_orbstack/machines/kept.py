"""The debug loop, Molecule's converge/login done with pytest: machines kept by
``--orbstack-keep`` are found again by the test that made them. ``--orbstack-list`` shows them;
``--orbstack-reuse`` runs the same tests on them (the deploy is applied again, nothing is
created). Only machines the engine still has count: a name recorded whose machine was never
made, or was deleted from outside, is neither listed nor reused."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.machines.registry import Registry, owner_alive
from pytest_orbstack.model.types import Resources


@dataclass(frozen=True)
class KeptMachine:
    """A kept machine of a session of this user and project, with the test that made it."""
    session: str
    name: str
    backend: str
    test: str
    image: str
    kept_at: float  # when a session last kept it
    running_session: bool  # its pytest still runs: not to be reused
    created_at: float = 0.0  # when its making began (0: an earlier release did not record it)
    spec: str = ""  # machine_spec() of its making (an earlier release: its image)

    def age(self, now: float | None = None) -> str:
        """How long ago the machine was made (recorded by an earlier release: last kept)."""
        seconds = int((now or time.time()) - (self.created_at or self.kept_at))
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"


def kept_machines(registry: Registry, user: str, project: str) -> list[KeptMachine]:
    """Every kept machine of this user's sessions in ``project``, newest first."""
    found = []
    for session in registry.sessions():
        if not session.belongs_to(user, project):
            continue
        alive = owner_alive(session.pid, session.start, session.host)
        for name in session.kept:
            about = session.about.get(name, {})
            found.append(KeptMachine(session.id, name, session.backend, about.get("test", "?"),
                                     about.get("image", "?"), about.get("kept_at", session.created),
                                     alive, about.get("created_at", 0.0), about.get("spec") or about.get("image", "?")))
    return sorted(found, key=lambda k: k.kept_at, reverse=True)


def machine_spec(image: str, user: str | None, resources: Resources, cloud_init: str | os.PathLike | None) -> str:
    """What a machine is made as, in one line: its image, then what differs from the defaults
    (``debian:bookworm, user=alice, cpus=2, cloud-init=<sha256 of its file>``). A kept machine
    is reused only by a test that asks for the same (an image changed in the marker gets a new
    machine, not the old one)."""
    parts = [image] + ([f"user={user}"] if user else [])
    default = Resources()
    parts += [f"{f.name}={getattr(resources, f.name)}" for f in fields(Resources)
              if getattr(resources, f.name) != getattr(default, f.name)]
    if cloud_init is not None:
        parts.append(f"cloud-init={hashlib.sha256(Path(cloud_init).read_bytes()).hexdigest()[:12]}")
    return ", ".join(parts)


def on_engine(kept: list[KeptMachine], names_on: Callable[[str], Iterable[str]]) -> list[KeptMachine]:
    """The kept machines their engine has (``names_on(kind)``: the names of its machines)."""
    names = {kind: set(names_on(kind)) for kind in {k.backend for k in kept}}
    return [k for k in kept if k.name in names[k.backend]]


def finder(registry: Registry, user: str, project: str, backend: str, names: Iterable[str]
           ) -> Callable[[str], KeptMachine | None]:
    """``find(test_key)``: the newest kept machine of that test on ``backend`` (whose machines
    are ``names``) whose session has ended, or None (read once: the kept machines do not
    change under a session)."""
    usable = {}
    for kept in reversed(on_engine(kept_machines(registry, user, project), lambda kind: names)):
        if kept.backend == backend and not kept.running_session:  # the newest wins
            usable[kept.test] = kept
    return usable.get


def listing(kept: list[KeptMachine], engine_for: Callable[[str], Backend]) -> list[str]:
    """``--orbstack-list``'s lines: machine, test, image, age, how to log in (``engine_for``:
    the backend of an engine's name)."""
    if not kept:
        return ["orbstack: no kept machines in this project (keep some with --orbstack-keep)"]
    width = max(len(k.name) for k in kept)
    lines = [f"{'machine':<{width}}  {'age':>5}  {'image':<16} test / login"]
    for k in kept:
        busy = "  (its pytest still runs)" if k.running_session else ""
        lines.append(f"{k.name:<{width}}  {k.age():>5}  {k.image:<16} {k.test}{busy}")
        lines.append(f"{'':<{width}}  {'':>5}  {'':<16} {engine_for(k.backend).login_command(k.name)}")
    return lines
