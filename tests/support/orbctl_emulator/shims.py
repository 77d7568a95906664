"""Executable ``orbctl`` and ``orb`` shims that run the emulator (tests/support/orbctl_emulator/orbctl.py).

Put the directory returned by :func:`install_shims` first on PATH and any code calling
``orbctl``/``orb`` talks to the emulator (Docker- or Incus-backed) instead of OrbStack.
"""

from __future__ import annotations

import sys
from pathlib import Path

EMULATOR = Path(__file__).resolve().with_name("orbctl.py")


def install_shims(bin_dir: Path, python: str = sys.executable) -> Path:
    """Write executable ``orbctl`` and ``orb`` into ``bin_dir`` (created if needed); return it.
    Each is a Python script of that name running the emulator, so its process's command line
    names the program as OrbStack's own does (``python .../orbctl create ...``): the watcher
    tells engine calls by their program (pytest_orbstack/machines/reaper.py)."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    modes = {"orbctl": "os.environ.pop('ORBCTL_EMULATOR_AS_ORB', None)\n",
             "orb": "os.environ['ORBCTL_EMULATOR_AS_ORB'] = '1'\n"}
    for name, setup in modes.items():
        shim = bin_dir / name
        shim.write_text(f"#!{python}\n# orbctl emulator shim (tests only)\nimport os, runpy, sys\n{setup}"
                        f"sys.argv[0] = {str(EMULATOR)!r}\nsys.path.insert(0, {str(EMULATOR.parent)!r})\n"
                        f"runpy.run_path({str(EMULATOR)!r}, run_name='__main__')\n")
        shim.chmod(0o755)
    return bin_dir
