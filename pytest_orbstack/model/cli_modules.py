"""pyinfra's CLI code, the one way this package imports it: ``pyinfra_cli``'s modules without
running its ``__init__``, whose only statement is gevent's ``monkey.patch_all()`` (patching the
whole standard library inside pytest turns threads into greenlets and delays Ctrl-C). A process
that imported ``pyinfra_cli`` itself already has it, patched, and keeps it."""

from __future__ import annotations

import importlib.util
import sys


def _register_cli_package() -> None:
    """Register the ``pyinfra_cli`` package, created from its spec but not executed."""
    if "pyinfra_cli" in sys.modules:
        return
    spec = importlib.util.find_spec("pyinfra_cli")
    assert spec is not None and spec.submodule_search_locations is not None
    sys.modules["pyinfra_cli"] = importlib.util.module_from_spec(spec)


_register_cli_package()
from pyinfra_cli import commands as cli_commands  # noqa: E402
from pyinfra_cli import util as cli_util  # noqa: E402
from pyinfra_cli.exceptions import CliError, UnexpectedExternalError  # noqa: E402
from pyinfra_cli.inventory import make_inventory_from_files  # noqa: E402
from pyinfra_cli.prints import pretty_op_name  # noqa: E402

__all__ = ["CliError", "UnexpectedExternalError", "cli_commands", "cli_util", "make_inventory_from_files",
           "pretty_op_name"]
