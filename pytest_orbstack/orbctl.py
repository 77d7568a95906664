"""The public path of the typed ``orbctl`` client (``from pytest_orbstack.orbctl import
Orbctl``); it lives in :mod:`pytest_orbstack.backends.orbstack.client`."""

from pytest_orbstack.backends.orbstack.client import Orbctl, classify, parse_info, parse_machine

__all__ = ["Orbctl", "classify", "parse_info", "parse_machine"]
