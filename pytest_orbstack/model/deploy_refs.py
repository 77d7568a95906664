"""Deploy functions: a ``module.function`` name resolved as ``pyinfra INVENTORY module.function``
resolves it, and the folder a deploy function runs from.

The pyinfra CLI takes an argument ending in ``.py`` as a deploy file and any other dotted name
as a function (``tasks.web.install``, ``module:function``; ``server.shell`` is pyinfra's
operation), imported by ``pyinfra_cli.util.try_import_module_attribute`` with its current
directory on ``sys.path``. Here the folders a relative path is looked up in play that
directory. A deploy function's folder is the one its module is imported from (the folder the
CLI would be run from): ``FOLDER/tasks/web.py`` defining ``tasks.web.install`` runs from
``FOLDER``, whose ``config.py`` and ``group_data/`` are loaded. A decorated function (pyinfra's
``@deploy``, anything made with ``functools.wraps``) is unwrapped to the user's own function
first.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_orbstack.errors import InvalidInput

# what ``pyinfra INVENTORY NAME`` takes as a function: dotted (or ``module:attr``) identifiers
FUNCTION_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")


def is_function_name(deploy: str) -> bool:
    """Whether the CLI would take ``deploy`` as a function rather than a deploy file."""
    return not deploy.endswith(".py") and FUNCTION_RE.match(deploy) is not None


def resolve_function(name: str, dirs: Sequence[Path]) -> Callable[[], Any]:
    """The callable ``name`` (``package.module.function``) names, imported by pyinfra's CLI
    code with ``dirs`` on ``sys.path`` (after its own entries, as the CLI appends its current
    directory); InvalidInput in one line for a missing module or attribute, a module that
    raises on import, or an attribute that is not callable."""
    from pytest_orbstack.model.cli_modules import CliError, cli_commands

    old_path = list(sys.path)
    sys.path.extend(str(d) for d in dirs if str(d) not in sys.path)
    importlib.invalidate_caches()
    where = " or ".join(str(d) for d in dirs)
    try:
        func = cli_commands.get_func_and_args([name])[0]
    except CliError as exc:
        raise InvalidInput(f"deploy {name!r}: {_missing(name, str(exc), where)}") from None
    except Exception as exc:  # the user's module raised while being imported
        raise InvalidInput(f"deploy {name!r}: importing its module raised {_raised_at(exc)}") from None
    finally:
        sys.path[:] = old_path
    if not callable(func):
        raise InvalidInput(f"deploy {name!r} is not callable: {type(func).__name__} "
                           f"{' '.join(repr(func).split())[:60]}")
    return func


def _missing(name: str, message: str, where: str) -> str:
    """pyinfra's "No such module/attribute" message, lower-cased, with where a module was
    looked for or a near miss of the attribute named."""
    from pytest_orbstack.model.inputs import closest

    module_name, _, attr = name.replace(":", ".").rpartition(".")
    module = sys.modules.get(module_name)
    if module is None or not message.startswith("No such attribute"):
        return (f"{message[0].lower()}{message[1:]} (looked in {where} and sys.path; a deploy "
                "file's name ends in .py)")
    names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
    return f"module {module_name} has no {attr!r}{closest(attr, names)}"


def _raised_at(exc: BaseException) -> str:
    """``FILE:LINE: Type: message`` at the deepest frame outside importlib."""
    from pytest_orbstack.model.inputs import display_path

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{display_path(exc.filename)}:{exc.lineno}: SyntaxError: {exc.msg}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename
              and not f.filename.startswith("<frozen")]
    where = f"{display_path(frames[-1].filename)}:{frames[-1].lineno}: " if frames else ""
    return f"{where}{type(exc).__name__}: {' '.join(str(exc).split())}"


def function_folder(func: Callable[..., Any]) -> Path:
    """The folder ``pyinfra INVENTORY module.function`` would be run from for ``func``: its
    module's file, up one folder per package its module name is in (``tasks.web`` in
    ``F/tasks/web.py`` -> ``F``); the file's own folder when the module name does not match
    its path (``__main__``, a test module imported under another name); the current directory
    for a function of an installed distribution (pyinfra's ``server.shell``, a
    ``pyinfra-*`` package's ``@deploy``: the CLI runs those from the user's folder) and for a
    callable without a source file."""
    inner = inspect.unwrap(func)
    try:
        file = Path(inspect.getfile(inner)).resolve()
    except TypeError:  # a builtin, or a callable object
        return Path.cwd()
    parts = str(getattr(inner, "__module__", "") or "").split(".")
    place = file.parent if file.name == "__init__.py" else file.with_suffix("")
    for part in reversed(parts):
        if place.name != part:
            return file.parent
        place = place.parent
    return Path.cwd() if place in _installed() else place


def _installed() -> set[Path]:
    """The folders installed distributions are imported from (site-packages)."""
    import site
    import sysconfig

    places = [*site.getsitepackages(), site.getusersitepackages(),
              sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return {Path(p).resolve() for p in places if p}
