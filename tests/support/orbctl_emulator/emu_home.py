"""What every part of the orbctl emulator shares: its home (``$ORBCTL_EMULATOR_HOME``), the
hash that names what it makes, the label prefix of its records and :class:`Fail`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LBL = "orbctl-emulator"
HOME = Path(os.environ.get("ORBCTL_EMULATOR_HOME") or "~/.orbctl-emulator").expanduser().absolute()
HASH = hashlib.sha1(str(HOME).encode()).hexdigest()[:8]


class Fail(Exception):
    """A command failed: its text goes to stderr and orbctl exits 1."""
