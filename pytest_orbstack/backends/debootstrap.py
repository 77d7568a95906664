"""A minimal Debian tree of any suite (bullseye, bookworm, trixie, ...) from a Debian mirror,
made with ``debootstrap --variant=minbase``: the one base both engines build when no registry or
image server has their image. The package list is the file ``debian-base-packages`` beside this
module (scripts/dev.sh reads it too); an engine adds what its machines need (``extra``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pytest_orbstack import settings
from pytest_orbstack.backends.process import last_line
from pytest_orbstack.errors import UnknownImage

PACKAGES = Path(__file__).parent.joinpath("debian-base-packages").read_text().strip()
BUILD_TIMEOUT = settings.DEBOOTSTRAP_TIMEOUT


def why_not_buildable() -> str | None:
    """Why this host cannot debootstrap (None when it can)."""
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def debootstrap(suite: str, rootfs: Path, extra: Sequence[str] = ()) -> None:
    """Make the tree of ``suite`` in ``rootfs`` with :data:`PACKAGES` and ``extra`` (and what
    they depend on); UnknownImage naming debootstrap's last line when it fails."""
    include = ",".join([PACKAGES, *extra])
    argv = ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(rootfs),
            settings.debian_mirror()]
    boot = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if boot.returncode != 0:
        raise UnknownImage(f"debootstrap {suite} failed: "
                           f"{last_line(boot.stderr or boot.stdout, f'exit status {boot.returncode}')}")
