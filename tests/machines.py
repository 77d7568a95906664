"""Shared by the test modules (import it as ``machines``; never import conftest)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

REAL = os.environ.get("PYTEST_ORBSTACK_REAL") == "1"  # the e2e tests against a real orbctl
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DEPLOY = ROOT / "examples" / "nginx" / "deploy.py"


def unique(prefix: str = "t") -> str:
    """A machine name no other test uses."""
    return f"{prefix}-{secrets.token_hex(3)}"
