"""The substrates the orbctl emulator's machines can run on (``ORBCTL_EMULATOR_SUBSTRATE``:
Docker containers, or Incus LXC containers, which OrbStack's machines are), for tests that run
on each: :func:`substrate_env` skips the Incus one in one line when Incus is unusable here."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from incusenv import why_no_incus

SUBSTRATES = ("docker", "incus")


def substrate_env(substrate: str) -> dict[str, str]:
    """The environment that runs the emulator on ``substrate`` (the test is skipped when the
    substrate is Incus and Incus is unusable)."""
    if substrate == "incus":
        why = why_no_incus()
        if why:
            pytest.skip(f"the orbctl emulator on Incus: {why}")
    return {"ORBCTL_EMULATOR_SUBSTRATE": substrate}


def home_hash(home: Path) -> str:
    return hashlib.sha1(str(Path(home).absolute()).encode()).hexdigest()[:8]


def leftovers(substrate: str, home: Path) -> list[str]:
    """What the emulator with home ``home`` left on ``substrate``: containers, networks and
    clone images (Docker), its project and its bridge (Incus)."""
    hashed = home_hash(home)
    if substrate == "incus":
        listed = [subprocess.run(["incus", what, "list", "--format", "csv"], capture_output=True, text=True).stdout
                  for what in ("project", "network")]
        return [line.split(",")[0] for text in listed for line in text.splitlines()
                if line.startswith((f"orbemu-{hashed}", f"orbemu{hashed},"))]
    ps = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=orbctl-emulator.home={hashed}"],
                        capture_output=True, text=True)
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name=orbemu-{hashed}"],
                          capture_output=True, text=True)
    images = subprocess.run(["docker", "images", "-q", f"orbemu-clone-{hashed}"], capture_output=True, text=True)
    return (ps.stdout + nets.stdout + images.stdout).split()


def clean(substrate: str, home: Path, found: list[str]) -> None:
    """Remove what :func:`leftovers` found (then the test fails: a leak is a defect)."""
    if substrate == "incus":
        project = f"orbemu-{home_hash(home)}"
        names = subprocess.run(["incus", "--project", project, "list", "--format", "csv", "-c", "n"],
                               capture_output=True, text=True).stdout.split()
        for name in names:
            subprocess.run(["incus", "--project", project, "delete", "--force", name], capture_output=True)
        subprocess.run(["incus", "project", "delete", project], capture_output=True)
        subprocess.run(["incus", "network", "delete", f"orbemu{home_hash(home)}"], capture_output=True)
        return
    for obj in found:
        subprocess.run(["docker", "rm", "-f", obj], capture_output=True)
        subprocess.run(["docker", "network", "rm", obj], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", obj], capture_output=True)
