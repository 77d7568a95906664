"""Apply a PyInfra deploy to machines exactly as ``pyinfra -y INVENTORY deploy.py`` does, run in
this process by pyinfra's own CLI code, and report what each operation did on each machine.

A deploy is a deploy file or a Python callable that calls operations. Its folder plays the CLI's
current directory: ``group_data/*.py`` and ``config.py`` there are loaded, and ``local.include``
and relative ``src=`` paths resolve from it, as they do for ``cd FOLDER && pyinfra INVENTORY
deploy.py``; a callable's folder is the one ``pyinfra INVENTORY module.function`` would be run
from (:func:`.deploy_refs.function_folder`). pyinfra's code does the work:

- ``config.py``: ``pyinfra_cli.util.exec_file`` with the run's Config in context, then the
  ``config=`` overrides (the CLI's ``--sudo`` etc.), then ``Config.lock_current_state``;
- inventory and group data: ``pyinfra_cli.inventory.make_inventory_from_files``; ``data=`` is
  its override data (``--data``: above host, group and ``all`` data);
- the deploy: ``pyinfra_cli.util.load_deploy_file`` (a callable: ``load_func``, as
  ``pyinfra INVENTORY module.func``) with ``pyinfra.is_cli`` set for the run, so ``local.include``
  works and operations are ordered by their line in the deploy, as on the command line;
- the run: ``pyinfra.api.operations.run_ops``; what each operation did: :mod:`.deploy_results`;
- ``dry``: pyinfra's plan, as ``pyinfra --dry``: the State checks for changes (it is not ``-y``),
  each operation is loaded against the machine's facts and none runs;
- ``diff``: what each operation changed, read before and after it (:mod:`.idempotence`).
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyinfra
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_config, ctx_inventory, ctx_state

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.model.cli_modules import UnexpectedExternalError, cli_util, make_inventory_from_files
from pytest_orbstack.model.deploy_refs import function_folder
from pytest_orbstack.model.inputs import CheckedDeploy, DeployFile, describe, display_path
from pytest_orbstack.model.results import DeployResult
from pytest_orbstack.pyinfra.deploy_results import Recorder, collect, output_in_results


@dataclass
class Target:
    """One machine of a run: its engine name, the inventory groups it is in and its host data
    (with an inventory file: ``alias`` is its name there, ``@orbstack/ALIAS``)."""
    machine: str
    groups: Sequence[str] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    alias: str | None = None

    @property
    def host_name(self) -> str:
        return f"@orbstack/{self.alias or self.machine}"


def _user_error(exc: BaseException) -> tuple[str, list[str]]:
    """``FILE:LINE: Type: message`` for an exception raised by deploy code, and the deploy's
    own frames (pyinfra's and pytest-orbstack's frames left out)."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = str(Path(__file__).resolve().parent.parent)  # the whole package
    pyinfra_dirs = tuple(str(Path(inspect.getfile(m)).resolve().parent) for m in (pyinfra, cli_util))
    own = [f for f in frames if not f.filename.startswith((here, *pyinfra_dirs, "src/gevent/"))
           and "importlib" not in f.filename and "/gevent/" not in f.filename]
    where = f"{display_path(own[-1].filename)}:{own[-1].lineno}: " if own else ""
    text = " ".join(str(exc).split()) or "(no message)"
    lines = [f"{display_path(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in own]
    return f"{where}{type(exc).__name__}: {text}", lines


def _folder_of(deploy: CheckedDeploy) -> Path:
    return function_folder(deploy) if callable(deploy) else Path(os.fspath(deploy)).parent


@contextmanager
def _cli_mode(folder: Path) -> Iterator[None]:
    """What ``cd FOLDER && pyinfra ...`` sets for a run, undone afterwards: CLI mode, the
    current directory (a deploy's ``open(".env")``) and it on ``sys.path`` (a deploy may import
    modules next to it). Compiled deploy files are forgotten, so a file edited between two runs
    of one process is read again. (One deploy runs at a time in a process: spare clones run
    beside it, with absolute paths only.)"""
    was_cli, old_path, old_cwd = pyinfra.is_cli, list(sys.path), os.getcwd()
    pyinfra.is_cli = True
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    cli_util.PYTHON_CODES.clear()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        pyinfra.is_cli = was_cli
        sys.path[:] = old_path


def _inventory(targets: Sequence[Target], folder: Path, engine: dict[str, Any],
               override: dict[str, Any]) -> Inventory:
    """The inventory ``pyinfra INVENTORY`` would build for ``targets`` run from ``folder``:
    pyinfra loads ``group_data/`` (``all.py``, one file per group) exactly as for a host list;
    the targets' groups and host data are then attached as an inventory file would attach them."""
    loaded = make_inventory_from_files(",".join(t.host_name for t in targets), override_data=override,
                                       cwd=str(folder))
    members: dict[str, list[str]] = {}
    for target in targets:
        for group in target.groups:
            members.setdefault(group, []).append(target.host_name)
    names = [(t.host_name, {**engine, **t.data}) for t in targets]
    groups = {name: (members.get(name, []), dict(loaded.group_data.get(name, {})))
              for name in {*members, *loaded.group_data} - {"all"}}
    return Inventory((names, dict(loaded.data)), override_data=override, **groups)


def _file_inventory(path: Path, targets: Sequence[Target], folder: Path, engine: dict[str, Any],
                    override: dict[str, Any]) -> Inventory:
    """The inventory ``pyinfra INVENTORY_FILE`` builds (its groups, host data and both
    ``group_data/`` folders, by pyinfra's loader), with each ``@orbstack/ALIAS`` host pointed
    at the machine made for it."""
    inventory = make_inventory_from_files(str(path), override_data=override, cwd=str(folder))
    for target in targets:
        inventory.host_data[target.host_name].update(engine, orbstack_machine=target.machine)
    return inventory


def inventory_machines(path: Path) -> dict[str, dict[str, Any]]:
    """The machines an inventory file asks for, read by pyinfra's loader: ``{NAME: {"image":
    ...}}`` for each ``@orbstack/NAME`` host (image: its host data ``orbstack_image``, else the
    default); InvalidInput naming any other kind of host."""
    with ctx_state.use(State()):
        try:
            inventory = make_inventory_from_files(str(path), cwd=str(path.parent))
        except Exception as exc:  # the user's inventory code
            raise InvalidInput(f"inventory {display_path(path)}: {_user_error(exc)[0]}") from None
    machines = {}
    for host in inventory:
        if not host.name.startswith("@orbstack/") or host.name == "@orbstack/":
            raise InvalidInput(f"inventory {display_path(path)}: host {host.name!r} is not "
                               "@orbstack/NAME; only those hosts become machines")
        machines[host.name.removeprefix("@orbstack/")] = {"image": host.data.get("orbstack_image")}
    if not machines:
        raise InvalidInput(f"inventory {display_path(path)} has no hosts")
    return machines


def run_deploy(targets: Sequence[Target], deploy: CheckedDeploy, *, backend: Backend | str,
               data: Mapping[str, Any] | None = None, inventory_file: Path | None = None,
               config: Mapping[str, Any] | None = None, dry: bool = False,
               diff: bool = False) -> dict[str, DeployResult]:
    """Run ``deploy`` (checked by :func:`.inputs.check_deploy`: a :class:`.DeployFile` or a
    callable) once across ``targets`` (machines on ``backend``), as the pyinfra CLI would run
    it on an inventory of them; what every operation did, per machine.

    Never raises for a failing operation or deploy: each result says what failed. ``data`` is
    the CLI's ``--data`` (override data); ``config`` sets Config attributes after ``config.py``,
    as the CLI's flags do (e.g. ``{"SUDO": True}`` for ``--sudo``). ``dry``: only pyinfra's
    plan (``pyinfra --dry``; the result's ``changed`` are the operations it says will change).
    ``diff``: each changed operation's ``difference`` is filled (:class:`.idempotence.Differ`).
    """
    started = time.monotonic()
    folder = _folder_of(deploy)
    # the engine object itself reaches the connector (its env, caches, binary); an engine's
    # name goes to the registry there (an unknown one is the host's connect error)
    engine = {"_orbstack_engine": backend} if isinstance(backend, Backend) else {"orbstack_backend": backend}
    state = State(check_for_changes=dry)  # pyinfra -y, or pyinfra --dry
    state.cwd = str(folder)
    recorder = Recorder()
    error: str | None = None
    frames: list[str] = []
    raised: BaseException | None = None
    inventory = None
    with _cli_mode(folder), ctx_state.use(state), output_in_results():
        cfg = Config()
        try:
            with ctx_config.use(cfg):
                if (folder / "config.py").exists():
                    cli_util.exec_file(str(folder / "config.py"))
                for key, value in (config or {}).items():
                    setattr(cfg, key, value)
                cfg.lock_current_state()
                inventory = (_file_inventory(inventory_file, targets, folder, engine, dict(data or {}))
                             if inventory_file else _inventory(targets, folder, engine, dict(data or {})))
            with ctx_inventory.use(inventory), ctx_config.use(cfg):
                _run(state, inventory, cfg, recorder, deploy, dry=dry, diff=diff)
        except UnexpectedExternalError as exc:  # deploy code raised (pyinfra wraps it)
            raised = exc.exception
        except PyinfraError as exc:  # "No hosts remaining": what failed is collected below
            error = str(exc) if "No hosts remaining" not in str(exc) else None
        except (Exception, SystemExit) as exc:  # an error in the user's callable or group data, sys.exit()
            raised = exc
        finally:
            if inventory is not None and state.initialised:
                disconnect_all(state)
    if raised is not None:  # (its paths shown from the test's current directory, not the deploy's)
        error, frames = _user_error(raised)
    return _results(targets, state, inventory, recorder,
                    DeployResult(describe(deploy), [], error, time.monotonic() - started, frames, dry=dry))


def _run(state: State, inventory: Inventory, cfg: Config, recorder: Recorder,
         deploy: CheckedDeploy, dry: bool, diff: bool) -> None:
    """Connect, load the deploy (pyinfra's loaders: a checked deploy file's code, compiled
    when it was checked, is what ``exec_file`` runs) and run its operations (not when
    ``dry``; watched by a :class:`.Differ` with ``diff``)."""
    state.init(inventory, cfg)
    state.add_callback_handler(recorder)
    state.set_stage(StateStage.Connect)
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    if callable(deploy):
        cli_util.load_func(state, deploy)
    else:
        if isinstance(deploy, DeployFile):
            cli_util.PYTHON_CODES[str(deploy)] = deploy.code
        cli_util.load_deploy_file(state, str(deploy))
    cfg.reset_locked_state()
    if dry:
        return
    if diff:  # (its fact classes are loaded only for a run that is watched)
        from pytest_orbstack.pyinfra.idempotence import Differ
        Differ(recorder.differences).watch(state)
    state.set_stage(StateStage.Execute)
    run_ops(state)


def _results(targets: Sequence[Target], state: State, inventory: Inventory | None,
             recorder: Recorder, run: DeployResult) -> dict[str, DeployResult]:
    """Each target's result: what its operations did, with the ``run``'s error (or the
    target's connect error), duration and frames."""
    order = state.get_op_order() if state.initialised else []  # a topological sort: once a run
    results = {}
    for target in targets:
        host = inventory.get_host(target.host_name) if inventory is not None else None
        operations = (collect(state, order, host, recorder, run.dry)
                      if host is not None and host in state.ops else [])
        why = recorder.connect_errors.get(target.host_name)
        result = DeployResult(run.deploy, operations, f"cannot connect: {why}" if why else run.error,
                              run.duration, run.traceback, run.dry)
        if result.error is None and not result.success and not result.failed:
            result.error = "deploy failed before running its operations"
        results[target.machine] = result
    return results
