"""pytest plugin: disposable OrbStack (or Docker) machines for testing PyInfra deploys.

Hooks live here; the fixtures are in :mod:`pytest_orbstack.plugin.fixtures`, reporting in
:mod:`pytest_orbstack.plugin.report`, per-process state in :mod:`pytest_orbstack.plugin.state`.

Options: ``--orbstack-backend``, ``--orbstack-image``, ``--orbstack-keep[=never|always|failed]``,
``--orbstack-prune``, ``--orbstack-timings=FILE``, ``--orbstack-engines`` (:mod:`.engines`); ini:
``orbstack_backend``, ``orbstack_image``,
``orbstack_user``, ``orbstack_keep``, ``orbstack_clone``, ``orbstack_deploy``. Environment:
``PYTEST_ORBSTACK_BACKEND``, ``PYTEST_ORBSTACK_STATE_DIR``. Shards: ``--orbstack-shard=K/N`` (:mod:`.shard`).
"""

from __future__ import annotations

import copy
import functools
import getpass
import json
import shutil
from collections.abc import Generator
from typing import Any

import pytest

from pytest_orbstack.backends import CHOICES, get_backend, resolve_name
from pytest_orbstack.errors import MachineError
from pytest_orbstack.machines.kept import kept_machines, listing, on_engine
from pytest_orbstack.machines.reaper import prune
from pytest_orbstack.machines.registry import Registry
from pytest_orbstack.model.records import MachineRecord
from pytest_orbstack.plugin import cache, engines, signals
from pytest_orbstack.plugin.collection import (
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_generate_tests,
    pytest_runtest_setup,
)
from pytest_orbstack.plugin.fixtures import (
    _orbstack_image,
    _orbstack_lifecycle,
    orbstack,
    orbstack_backend,
    orbstack_machine,
    orbstack_machines,
    orbstack_module_machine,
    orbstack_session_machine,
)
from pytest_orbstack.plugin.flags import PRUNE_SCOPES, split_bare_flags
from pytest_orbstack.plugin.marker import item_key
from pytest_orbstack.plugin.report import pytest_runtest_makereport, pytest_terminal_summary
from pytest_orbstack.plugin.state import DEFAULT_IMAGE, PLUGIN_NAME, STATE, PluginState

__all__ = ["_orbstack_image", "_orbstack_lifecycle", "orbstack", "orbstack_backend", "orbstack_machine",
           "orbstack_machines", "orbstack_module_machine", "orbstack_session_machine", "pytest_collection_finish",
           "pytest_collection_modifyitems", "pytest_generate_tests", "pytest_runtest_makereport",
           "pytest_runtest_setup", "pytest_terminal_summary"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orbstack", "disposable OrbStack/Docker machines (pytest-orbstack)")
    group.addoption("--orbstack-backend", choices=CHOICES, default=None, metavar="ENGINE",
                    help="engine for machines: auto (OrbStack if orbctl answers, else Docker if "
                         "dockerd answers, else Incus if incusd answers), "
                         "orbstack, docker or incus. Default: ini orbstack_backend, else "
                         "$PYTEST_ORBSTACK_BACKEND, else auto.")
    group.addoption("--orbstack-image", default=None, metavar="IMAGE",
                    help="default image, OrbStack form (debian:bookworm, ubuntu:24.04).")
    # no argparse choices: pytest parses once before pytest_load_initial_conftests splits
    # `--orbstack-keep tests/x.py`, and a choice error there would stop the run (checked later)
    group.addoption("--orbstack-keep", nargs="?", const="always", default=None, metavar="POLICY",
                    help="keep machines after tests: never (default), always (the bare flag), "
                         "failed (those of failing tests). Kept machines are listed at the end.")
    group.addoption("--orbstack-prune", nargs="?", const="project", default=None, metavar="SCOPE",
                    help="delete the machines (kept ones too) and images of finished or killed "
                         "sessions of this user in this project (the bare flag), or of every user "
                         "and project on this host (=all); print what was deleted and kept, then exit.")
    group.addoption("--orbstack-reuse", action="store_true", default=False,
                    help="run the tests on the machines an earlier --orbstack-keep run kept (the "
                         "deploy is applied again, nothing is created for them); they stay kept, and "
                         "machines made anew are kept too (unless --orbstack-keep says otherwise).")
    group.addoption("--orbstack-list", action="store_true", default=False,
                    help="list this project's kept machines (test, image, age, login command), then exit.")
    group.addoption("--orbstack-timings", metavar="FILE", default=None,
                    help="write machine phase timings as JSON to FILE.")
    group.addoption(engines.OPTION, default=None, metavar="ENGINES",
                    help="several engines in one run, comma-separated (docker,incus): xdist worker gwK "
                         "makes its machines on engine K modulo their number; without xdist, the first. "
                         "Not with --orbstack-backend. Default: ini orbstack_engines.")
    parser.addini(engines.INI, "engines for one run over several (comma-separated; see --orbstack-engines)",
                  default="")
    parser.addini("orbstack_backend", "default engine: auto, orbstack, docker or incus (unset: "
                  "$PYTEST_ORBSTACK_BACKEND, else auto)", default="")
    parser.addini("orbstack_image", "default image for machines", default=DEFAULT_IMAGE)
    parser.addini("orbstack_user", "default user created in machines", default="")
    parser.addini("orbstack_keep", "default keep policy: never, always or failed", default="never")
    parser.addini("orbstack_clone", "deploy once on a golden machine, clone it per test",
                  type="bool", default=True)
    parser.addini("orbstack_spares", "while a test runs, clone the machine the next test will likely "
                  "ask for (one more machine alive per process)", type="bool", default=True)
    parser.addini("orbstack_deploy", "deploy file applied by the `orbstack` fixture when its "
                  "marker names none (looked up in the test's folder, then the rootdir)", default="")
    group.addoption("--orbstack-shard", metavar="K/N", default=None,
                    help="run shard K of N (1/3, 2/3, 3/3), one per CI job; the tests cloning one "
                         "golden machine stay in one shard; shards are balanced on the costs "
                         "--orbstack-shard-timings recorded (else on test counts).")
    group.addoption("--orbstack-shard-timings", metavar="FILE", default=None,
                    help="an earlier run's --orbstack-timings JSON (the shards' merged: python -m "
                         "pytest_orbstack.merge) to balance --orbstack-shard on; a missing FILE "
                         "means count tests.")
    cache.add_options(group, parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``--orbstack-keep tests/x.py``: the bare flag, then a test path (:mod:`.flags`). Runs
    before pytest finds the initial conftests from the test paths and parses the options."""
    if split_bare_flags(args):
        early_config.known_args_namespace = parser.parse_known_args(
            args, namespace=copy.copy(early_config.option))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "orbstack(image=None, *, deploy=None, user=None, "
                            "cloud_init=None, clone=None, data=None): the machine the `orbstack` "
                            "fixture makes (see pytest --fixtures)")
    from pytest_orbstack.testinfra_backend import missing_hosts, register
    register()
    if not hasattr(config, "workerinput") and not config.getoption("help", False):
        problem = missing_hosts(config.getoption("hosts", None))  # testinfra's --hosts
        if problem:
            raise pytest.UsageError(problem)
    state = PluginState(config)
    cache.policy(config)  # a bad --orbstack-cache or ini value stops the run before any test
    config.pluginmanager.register(state, PLUGIN_NAME)
    config.stash[STATE] = state
    if not state.is_worker and not config.getoption("help", False):
        signals.install()  # SIGTERM and SIGHUP end the session as Ctrl-C does
        if state.engines and not (config.getoption("orbstack_prune") or config.getoption("orbstack_list")):
            engines.check_answering(state.engines)  # one line, before any machine
    if config.getoption("orbstack_shard", None):  # (loaded only for a shard)
        from pytest_orbstack.plugin import shard
        shard.configure(config)
    if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") != "no":
        from pytest_orbstack.plugin import schedule  # (loaded only for an xdist session)
        schedule.configure(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    """The running test, whose folder relative deploy/cloud-init paths are looked up in, and
    the next one (pytest's, or xdist's for this worker), whose machine may be cloned early."""
    state = item.config.stash[STATE]
    state.current_item = item
    state.look_ahead(item, nextitem)
    try:
        return (yield)
    finally:
        state.current_item, state.upcoming = None, []
        if state.lifecycle is not None:  # even if the test never set its fixtures up
            state.lifecycle.spares.unclaimed(item_key(item.config, item))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers join the controller's session (same id, owner and shared folder)."""
    state = node.config.stash[STATE]
    # the controller owns the session its workers make machines in (with several engines: one
    # per engine, the worker's), and starts its watcher
    session_id, engine = state.session_of(node.gateway.id)
    node.workerinput.update(orbstack_session=session_id, orbstack_engine=engine or "")
    node.workerinput["orbstack_shared_dir"] = str(state.shared_dir_of(session_id))
    node.workerinput["orbstack_owner_pid"] = str(state.owner_pid)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    records = getattr(node, "workeroutput", {}).get("orbstack_records", "[]")
    node.config.stash[STATE].records.extend(MachineRecord.from_json(r) for r in json.loads(records))


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("orbstack_list"):
        kept = kept_machines(Registry(), getpass.getuser(), str(config.rootpath))
        engine_for = functools.cache(get_backend)  # one backend per engine named
        engine = config.getoption("orbstack_backend") or config.getini("orbstack_backend") or None
        try:
            kept = on_engine(kept, lambda name: [m.name for m in engine_for(name).list()])
            cached = cache.listing(config, engine_for(resolve_name(engine)))
        except MachineError as exc:
            print(f"orbstack: list failed: {exc}")
            return 1
        for line in [*listing(kept, engine_for), *cached]:
            print(line)
        return 0
    scope = config.getoption("orbstack_prune")
    if not scope:
        return None
    if scope not in PRUNE_SCOPES:
        raise pytest.UsageError(f"--orbstack-prune={scope}: use {' or '.join(PRUNE_SCOPES)}")
    mine = dict(project=str(config.rootpath), user=getpass.getuser()) if scope == "project" else {}
    engine = config.getoption("orbstack_backend") or config.getini("orbstack_backend") or None
    try:
        names = engines.requested(config) or [resolve_name(engine)]
        cached = [ref for name in names for ref in cache.prune(config, get_backend(name), scope)]
        rows = prune(Registry(), get_backend, include_kept=True, images_on=names, **mine)
    except MachineError as exc:
        print(f"orbstack: prune failed: {exc}")
        return 1
    if cached:
        print(f"orbstack: removed {len(cached)} cached golden machine(s): {' '.join(cached)}")
    deleted = [what for _, outcome, what in rows if outcome == "deleted"]
    images = [what for _, outcome, what in rows if outcome == "image"]
    where = f"this project ({config.rootpath})" if scope == "project" else "this host"
    print(f"orbstack: pruned {len(deleted)} machine(s) of {where}{': ' if deleted else ''}{' '.join(deleted)}")
    if images:
        print(f"orbstack: removed {len(images)} image(s) no machine needs: {' '.join(images)}")
    for session, outcome, what in rows:
        if outcome not in ("deleted", "image"):
            print(f"orbstack: {outcome} {'session ' + session + ': ' if session != '-' else ''}{what}")
    return 0


@pytest.hookimpl(trylast=True)  # after pytest has torn down the fixtures still up
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's last word, in the only process or the xdist controller (after every
    worker is down): shared and golden machines go (or are kept), then anything this session
    still owns is swept (Ctrl-C, SIGTERM, a crashed worker), and the session is closed."""
    state = session.config.stash[STATE]
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED  # Ctrl-C, SIGTERM, SIGHUP
    if state.is_worker:
        if state.lifecycle is not None:  # before the controller deletes the golden machines
            state.lifecycle.spares.delete_all(wait=not interrupted)
        records = [r.as_json() for r in state.all_records()]
        session.config.workeroutput["orbstack_records"] = json.dumps(records)  # type: ignore[attr-defined]
        return
    for lifecycle in [state.lifecycle] if state.lifecycle is not None else state.lifecycles_of_workers():
        lifecycle.finish_shared(state.failed, interrupted)
        swept = lifecycle.reap()
        if swept:
            state.notices.progress(f"orbstack: swept {len(swept)} machine(s) left by the session")
    state.stop_watcher(late=interrupted)  # a spare's clone still under way may make its machine later
    for session_id in {state.session_id, *state.engine_sessions.values()}:
        shutil.rmtree(state.shared_dir_of(session_id), ignore_errors=True)

