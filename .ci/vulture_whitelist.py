"""Names vulture cannot see used: each is called by pytest, pyinfra, testinfra, Python itself or
the package's users, never by the package's own code. Dead code does not belong here: delete it.

Running this file imports every name below, so an entry whose name is gone fails .ci/run.
"""

from pytest_orbstack import __dir__, __getattr__  # the lazy public facade (PEP 562)
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.backends.orbstack.backend import OrbStackBackend
from pytest_orbstack.backends.podman.backend import PodmanBackend
from pytest_orbstack.machines.machine import Machine
from pytest_orbstack.model.types import Image, MachineInfo
from pytest_orbstack.plugin import (
    pytest_addoption,
    pytest_cmdline_main,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_configure_node,
    pytest_generate_tests,
    pytest_load_initial_conftests,
    pytest_runtest_protocol,
    pytest_sessionfinish,
    pytest_testnodedown,
)
from pytest_orbstack.plugin.schedule import GoldenSchedule, GoldenScheduling
from pytest_orbstack.plugin.shard import ShardSelection
from pytest_orbstack.plugin.state import PluginState
from pytest_orbstack.pyinfra.connector import OrbStackConnector
from pytest_orbstack.pyinfra.deploy_results import Recorder
from pytest_orbstack.testinfra_backend import OrbStackTestinfraBackend

# the engine registry's table names backend classes as strings (backends.ENGINES)
OrbStackBackend, DockerBackend, IncusBackend, PodmanBackend
# public API users call (README): the fixture orbstack_backend's engine name
Backend.kind
# the module's own protocol: `pytest_orbstack.Machine` loads on first use
__dir__, __getattr__
# pytest hooks, found by name in the pytest11 plugin and in the plugin object it registers
pytest_addoption, pytest_cmdline_main, pytest_collection_modifyitems, pytest_configure
pytest_configure_node, pytest_generate_tests, pytest_load_initial_conftests
pytest_runtest_protocol, pytest_sessionfinish, pytest_testnodedown
PluginState.pytest_runtest_logreport, PluginState.pytest_sessionstart
ShardSelection.pytest_report_collectionfinish
GoldenSchedule.pytest_xdist_make_scheduler
# xdist's scheduler interface (xdist.scheduler.LoadScheduling): it calls _send_tests
GoldenScheduling._send_tests

# the pyinfra connector interface (pyinfra.connectors.base.BaseConnector) and its host data key
OrbStackConnector.handles_execution, OrbStackConnector.data_cls, OrbStackConnector.data_meta
OrbStackConnector.make_names_data, OrbStackConnector.connect
OrbStackConnector.put_file, OrbStackConnector.get_file
# pyinfra's state callbacks (pyinfra.api.state.BaseStateCallback), with its argument names
Recorder.host_connect_error, Recorder.host_connect, Recorder.operation_host_start
Recorder.operation_host_success, Recorder.operation_host_error
# testinfra's backend interface (testinfra.backend.base.BaseBackend)
OrbStackTestinfraBackend.NAME

# public API users call (README): Machine's checks, the typed orbctl client's results
Machine.connectivity, Machine.dns, Machine.console_log
Image.variant, MachineInfo.disk_size


def _names_only_a_framework_reads(config, item, host_data, memo, retry_count, max_retries):
    """Never called: names vulture cannot tie to an import. What pytest reads (the parsed
    early arguments, a test's JUnit properties), the host data key the connector reads as
    ``self.data.get("orbstack_user")``, and the argument names of the protocols we implement:
    ``__deepcopy__(memo)``, pyinfra's ``operation_host_success/error(..., retry_count,
    max_retries)``."""
    return (config.known_args_namespace, item.user_properties, host_data.orbstack_user,
            memo, retry_count, max_retries)


_names_only_a_framework_reads
