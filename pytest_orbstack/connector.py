"""The public path of the ``@orbstack`` PyInfra connector (``from pytest_orbstack.connector
import OrbStackConnector``); it lives in :mod:`pytest_orbstack.pyinfra.connector`, which the
``pyinfra.connectors`` entry point names."""

from pytest_orbstack.pyinfra.connector import OrbStackConnector

__all__ = ["OrbStackConnector"]
