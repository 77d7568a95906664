"""One run over several engines: ``--orbstack-engines=docker,incus`` (or ini ``orbstack_engines``).

The list is read and checked once, in the only process or the xdist controller, before any
machine: an unknown name, a name given twice, or the list given together with
``--orbstack-backend`` on the command line (or with ini ``orbstack_backend`` when both are ini
values) stops the run with one line; so does an engine of the list that does not answer (its
``list`` call fails). The command line wins over the ini file: ``--orbstack-engines`` with ini
``orbstack_backend`` runs on the engines, ``--orbstack-backend`` with ini ``orbstack_engines``
on that one engine.

xdist worker ``gwK`` is bound to ``engines[K % len(engines)]`` (:func:`engine_of_worker`): its
machines, golden machines and groups are all made on that engine. Each engine has its own
session (id, session file, shared folder, watcher), so golden machines are made once per engine
and never shared across engines, and a kill -9 is reaped on each engine by that engine's
watcher. Without xdist every test runs on the first engine, and a notice line says so.
"""

from __future__ import annotations

import pytest

from pytest_orbstack.backends import ENGINES, get_backend
from pytest_orbstack.errors import MachineError

OPTION = "--orbstack-engines"
INI = "orbstack_engines"


def parse(value: str, where: str) -> list[str]:
    """The engine names of ``value`` (comma- or space-separated); an unknown or repeated name
    raises UsageError with one line naming it."""
    names = [n.strip().lower() for n in value.replace(",", " ").split()]
    for i, name in enumerate(names):
        if name not in ENGINES:
            raise pytest.UsageError(f"{where}={value}: unknown engine {name!r}: choose from {', '.join(ENGINES)}")
        if name in names[:i]:
            raise pytest.UsageError(f"{where}={value}: engine {name!r} is named twice")
    if not names:
        raise pytest.UsageError(f"{where}={value!r}: name at least one engine")
    return names


def requested(config: pytest.Config) -> list[str]:
    """The engines of this run ([] when neither the option nor the ini key names any), checked
    against ``--orbstack-backend`` (see the module's docstring)."""
    option, ini = config.getoption("orbstack_engines"), config.getini(INI)
    backend_option, backend_ini = config.getoption("orbstack_backend"), config.getini("orbstack_backend")
    if option and backend_option:
        raise pytest.UsageError(f"{OPTION}={option} and --orbstack-backend={backend_option}: "
                                "give one of them (the engines of the run, or its one engine)")
    if option:
        return parse(option, OPTION)
    if ini and not backend_option:
        if backend_ini:
            raise pytest.UsageError(f"ini {INI} = {ini} and orbstack_backend = {backend_ini}: set one of them")
        return parse(ini, f"ini {INI}")
    return []


def check_answering(engines: list[str]) -> None:
    """Each engine's ``list`` call, once; the first that fails stops the run with one line."""
    for name in engines:
        try:
            get_backend(name).list()
        except MachineError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise pytest.UsageError(f"{OPTION}: engine {name} does not answer: {first}") from None


def engine_of_worker(engines: list[str], worker_id: str) -> str:
    """The engine of xdist worker ``gwK``: ``engines[K % len(engines)]``."""
    digits = worker_id.removeprefix("gw")
    return engines[int(digits) % len(engines) if digits.isdigit() else 0]


def uses_xdist(config: pytest.Config) -> bool:
    """Whether this run hands its tests to xdist workers (``-n N`` with N > 0)."""
    return bool(getattr(config.option, "numprocesses", 0)) and getattr(config.option, "dist", "no") != "no"


def single_process_notice(engines: list[str]) -> str:
    """The line a run without xdist workers says about its engines."""
    return (f"orbstack: {OPTION}={','.join(engines)} without xdist workers (-n): every test runs on "
            f"{engines[0]}, the first")
