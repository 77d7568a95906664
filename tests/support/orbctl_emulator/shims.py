"""Executable ``orbctl`` and ``orb`` shims that run the emulator (tests/support/orbctl_emulator/orbctl.py).

Put the directory returned by :func:`install_shims` first on PATH and any code calling
``orbctl``/``orb`` talks to the emulator (Docker- or Incus-backed) instead of OrbStack.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

EMULATOR = Path(__file__).resolve().with_name("orbctl.py")


def install_shims(bin_dir: Path, python: str = sys.executable) -> Path:
    """Write executable ``orbctl`` and ``orb`` into ``bin_dir`` (created if needed); return it."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    command = f"exec {shlex.quote(python)} {shlex.quote(str(EMULATOR))} \"$@\"\n"
    modes = {"orbctl": "unset ORBCTL_EMULATOR_AS_ORB\n",
             "orb": "ORBCTL_EMULATOR_AS_ORB=1\nexport ORBCTL_EMULATOR_AS_ORB\n"}
    for name, setup in modes.items():
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n# orbctl emulator shim (tests only)\n{setup}{command}")
        shim.chmod(0o755)
    return bin_dir
