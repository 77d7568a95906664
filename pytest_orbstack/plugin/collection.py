"""What collection decides: the platform matrix of each test (:func:`pytest_generate_tests`),
every ``orbstack`` marker's arguments checked, markers that drop a check or reach no machine
warned about and a marked test checking the runner through testinfra's ``host`` failed
(:func:`pytest_collection_modifyitems`), and a run that ``--orbstack-image`` leaves with nothing
to run stopped (:func:`pytest_collection_finish`). The hooks are registered by
:mod:`pytest_orbstack.plugin`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.plugin.marker import MATRIX_FIXTURES, image_matrix, marker_kwargs, marker_warnings
from pytest_orbstack.plugin.state import STATE

FAILS_AT_SETUP = pytest.StashKey[str]()  # why a test fails at its setup, decided at collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A platform matrix: a test using a machine fixture runs once per image of its matrix
    (:func:`.marker.image_matrix`), ids ``[debian:bookworm]``. Images ``--orbstack-image``
    leaves out are not run; a test left with none is skipped, saying so."""
    if not MATRIX_FIXTURES & set(metafunc.fixturenames):
        return
    marker = metafunc.definition.get_closest_marker("orbstack")
    try:
        matrix = image_matrix(metafunc.config, marker)
    except InvalidInput:
        return  # reported with the test's id by pytest_collection_modifyitems
    if matrix is None:
        return
    images, left_out = matrix
    metafunc.config.stash[STATE].left_out.update(left_out)
    params: list[Any] = list(images) or [pytest.param(
        None, id="-".join(left_out), marks=pytest.mark.skip(
            reason=f"--orbstack-image={metafunc.config.getoption('orbstack_image')} leaves out "
                   f"this test's images ({', '.join(left_out)})"))]
    metafunc.parametrize("_orbstack_image", params, ids=[*images] or None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every ``orbstack`` marker's arguments at collection: a typo stops the run with one
    line naming the test and the argument, before any machine is made; then warn about markers
    that silently drop a check or reach no machine (:func:`.marker.marker_warnings`)."""
    errors = []
    for item in items:
        for marker in item.iter_markers("orbstack"):
            try:
                marker_kwargs(marker)
            except InvalidInput as exc:
                errors.append(f"{item.nodeid}: {exc}")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise pytest.UsageError(errors[0] + more)
    for item in items:
        for warning in marker_warnings(item):
            item.warn(pytest.PytestWarning(warning))
        if not config.getoption("hosts", None) and _uses_testinfras_host(item):
            item.stash[FAILS_AT_SETUP] = (
                f"{item.nodeid} is marked @pytest.mark.orbstack but checks testinfra's `host`, the "
                "machine pytest runs on (no --hosts given): use orbstack.host, the test's machine")


def _uses_testinfras_host(item: pytest.Item) -> bool:
    """Whether ``item`` carries an ``orbstack`` marker and asks for pytest-testinfra's own
    ``host`` fixture (not one of the project's)."""
    if item.get_closest_marker("orbstack") is None or "host" not in getattr(item, "fixturenames", ()):
        return False
    info = getattr(item, "_fixtureinfo", None)
    defs: Sequence[Any] = info.name2fixturedefs.get("host", ()) if info is not None else ()
    return bool(defs) and getattr(defs[-1].func, "__module__", "") == "testinfra.plugin"


def pytest_collection_finish(session: pytest.Session) -> None:
    """An ``--orbstack-image`` that leaves out the images of every selected machine test (a
    typo, a release no matrix names) stops the run with one line: else all are skipped and
    the run is green having tested nothing."""
    state = session.config.stash[STATE]
    machine_tests = [item for item in session.items if MATRIX_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if state.narrow is None or not machine_tests or not all(_left_out(item) for item in machine_tests):
        return
    message = (f"--orbstack-image={session.config.getoption('orbstack_image')} leaves out the images of every "
               f"test (their matrices name {', '.join(sorted(state.left_out))}): nothing would run")
    if not hasattr(session.config, "workerinput"):
        raise pytest.UsageError(message)
    for item in machine_tests:  # an xdist worker cannot stop the run: each test fails saying it
        item.stash[FAILS_AT_SETUP] = message


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test collection found wrong: nothing of it would run (:func:`pytest_collection_finish`;
    before its skip), or it checks the runner (:func:`pytest_collection_modifyitems`)."""
    if FAILS_AT_SETUP in item.stash:
        pytest.fail(item.stash[FAILS_AT_SETUP], pytrace=False)


def _left_out(item: pytest.Item) -> bool:
    """Whether ``--orbstack-image`` left all of this test's images out (it is skipped)."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "_orbstack_image" in callspec.params and callspec.params["_orbstack_image"] is None
