"""The public path of the typed ``orbctl`` client (``from pytest_orbstack.orbctl import
Orbctl``); it lives in :mod:`pytest_orbstack.backends.orbstack.client`, the parsers of what
orbctl prints in :mod:`pytest_orbstack.backends.orbstack.commands`."""

from pytest_orbstack.backends.orbstack.client import Orbctl, classify
from pytest_orbstack.backends.orbstack.commands import parse_info, parse_machine

__all__ = ["Orbctl", "classify", "parse_info", "parse_machine"]
