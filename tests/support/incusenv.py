"""Whether the tests can use the local Incus daemon (``bash scripts/dev.sh incus`` sets it up)."""

from __future__ import annotations

import shutil
import subprocess

from testenv import required_in_ci

IMAGE = "pytest-orbstack/debian/bookworm"  # the offline image scripts/dev-incus.sh imports


def incus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["incus", *args], capture_output=True, text=True, timeout=120)


def why_no_incus() -> str | None:
    """Why Incus machines cannot be made here (one line), or None; under CI an error."""
    return required_in_ci("Incus", _why_no_incus())


def _why_no_incus() -> str | None:
    """Why Incus machines cannot be made here (one line), or None."""
    if not shutil.which("incus"):
        return "incus is not installed (bash scripts/dev.sh incus installs it)"
    try:
        if incus("info").returncode != 0:
            return "the incus daemon does not answer (bash scripts/dev.sh incus starts it)"
    except subprocess.TimeoutExpired:
        return "the incus daemon does not answer (bash scripts/dev.sh incus starts it)"
    if incus("image", "info", IMAGE).returncode != 0:
        return f"no Incus image {IMAGE} (bash scripts/dev.sh incus builds it)"
    return None


def incus_machine(request, prefix: str = "inc"):
    """(IncusBackend, name of a new running debian:bookworm machine) deleted when ``request``'s
    scope ends; the test skips with :func:`why_no_incus`'s line when Incus cannot be used."""
    import pytest
    from testenv import unique

    from pytest_orbstack.backends.incus.backend import IncusBackend

    why = why_no_incus()
    if why:
        pytest.skip(why)
    engine, name = IncusBackend(), unique(prefix)
    request.addfinalizer(lambda: engine.delete_if_exists(name))  # also after a failed create
    engine.create(name, "debian:bookworm")
    return engine, name


def instances(session: str | None = None) -> set[str]:
    """Names of the instances this package made (of ``session`` when given)."""
    key = f"user.pytest-orbstack.session={session}" if session else "user.pytest-orbstack=1"
    proc = incus("list", key, "-f", "csv", "-c", "n")
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def made_names(prefix: str):
    """A generator for a module fixture: yields a function that makes unique ``PREFIX-`` names,
    then deletes every instance made under them and asserts that no instance or storage volume
    of theirs is left."""
    import json
    import secrets
    made: list[str] = []

    def make() -> str:
        made.append(f"{prefix}-{secrets.token_hex(4)}")
        return made[-1]

    yield make
    for name in made:
        incus("delete", "--force", name)
    left = {item["name"] for item in json.loads(incus("list", "-f", "json").stdout)}
    assert not left & set(made), f"instances left behind: {left & set(made)}"
    volumes = incus("storage", "volume", "list", "default", "-f", "csv", "-c", "n").stdout.split()
    assert not [v for v in volumes if v.split("/")[0] in made], f"volumes left behind: {volumes}"
