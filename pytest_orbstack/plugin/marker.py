"""The ``orbstack`` marker and the keywords every machine factory takes: their signature
(:func:`orbstack_marker`), their check against it, the platform matrix a marker's image list
makes, the defaults filled in and inputs checked before any engine call
(:func:`machine_args`), and what pytest's items say about their machines: their key
(:func:`item_key`) and whether the next test asks for the same ones (:func:`same_machines`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.model.inputs import (
    Deploy,
    check_cloud_init,
    check_deploy,
    check_names,
    check_resources,
    check_user,
    closest,
    image_list,
    parse_image,
)
from pytest_orbstack.plugin.state import STATE


def orbstack_marker(image: str | None = None, *, deploy: Deploy | None = None,
                    user: str | None = None, cloud_init: str | None = None,
                    clone: bool | None = None, data: dict[str, Any] | None = None,
                    check_idempotent: bool = False, allow_changes: Sequence[str] = (),
                    allow_stale: Sequence[str] = (), cpus: float | None = None, memory: str | int | None = None,
                    disk: str | int | None = None, isolated: bool = False,
                    capabilities: Sequence[str] = (), vm: bool = False, target: str | None = None,
                    check_dry_run: bool = False) -> dict[str, Any]:
    """``@pytest.mark.orbstack(image=None, *, deploy=None, user=None, cloud_init=None,
    clone=None, data=None, check_idempotent=False, allow_changes=(), allow_stale=(), cpus=None,
    memory=None, disk=None, isolated=False, capabilities=(), vm=False, target=None,
    check_dry_run=False)``: the machine the ``orbstack`` fixture makes; the factories take the
    same keywords.

    ``image``: ``distro[:version]`` (default: ``--orbstack-image`` / ini ``orbstack_image``).
    ``deploy``: a pyinfra deploy file, a callable (plain or ``@deploy``) or a
    ``module.function`` name, applied to the machine as ``pyinfra -y @orbstack/NAME deploy.py``
    (``... module.function``) would. ``user``: the machine's default user
    (passwordless sudo; default: ini ``orbstack_user``, else the engine's default).
    ``cloud_init``: a cloud-init user-data file applied at creation. ``clone``: run the deploy
    once on a golden machine and clone it per test (default: ini ``orbstack_clone``, true).
    ``data``: host data for the deploy, as ``--data``. ``check_idempotent``: apply the deploy a
    second time and fail if an operation changed again (on the golden machine, before it is
    cloned: two applies in all); ``allow_changes``: name patterns (``fnmatch``, as pyinfra
    prints operation names) of operations that may change every time. ``allow_stale``: unit
    name patterns of services that may run on configuration the deploy changed after they
    started (a golden machine fails otherwise: its clones would hide it). ``cpus``, ``memory``
    (``"4G"``), ``disk`` (``"64G"``, whole GiB, OrbStack only): the machine's limits (OrbStack 2.2.0+;
    Docker's own limits). ``isolated``: no access to the host's files (OrbStack 2.1+; Docker
    machines never have any). ``capabilities``: Linux capabilities the machine's root gets on
    Docker (``["NET_ADMIN"]`` for iptables/nftables; OrbStack machines have them already).
    ``vm``: a virtual machine with its own kernel (Incus ``--vm``); where the engine or host
    cannot make one, the test fails in one line saying why before any machine is made.
    ``target``: the Incus cluster member the machine (and a golden machine's clones) is put on;
    elsewhere the test fails in one line before any machine is made.
    ``check_dry_run``: run pyinfra's plan (``--dry``) on the fresh machine first and fail
    naming each operation the apply changed that the plan did not name, and fail if a plan
    after the apply still proposes a change (:mod:`pytest_orbstack.model.dry_run`).
    Relative paths are looked up in the running test's folder, then in the rootdir.
    """
    return dict(image=image, deploy=deploy, user=user, cloud_init=cloud_init, clone=clone,
                data=data, check_idempotent=check_idempotent, allow_changes=allow_changes,
                allow_stale=allow_stale, cpus=cpus, memory=memory, disk=disk, isolated=isolated,
                capabilities=capabilities, vm=vm, target=target, check_dry_run=check_dry_run)


KEYWORDS = tuple(inspect.signature(orbstack_marker).parameters)
RESOURCE_KEYWORDS = ("cpus", "memory", "disk", "isolated", "capabilities", "vm", "target")


def machine_keywords(args: Sequence[Any], kwargs: Mapping[str, Any],
                     where: str = "@pytest.mark.orbstack") -> dict[str, Any]:
    """``args``/``kwargs`` checked against :func:`orbstack_marker`; InvalidInput naming the
    wrong argument (with the closest right one) otherwise."""
    for key in kwargs:
        if key not in KEYWORDS:
            raise InvalidInput(f"{where} got an unknown argument {key!r}"
                               f"{closest(key, KEYWORDS)}; it takes {', '.join(KEYWORDS)}")
    try:
        return orbstack_marker(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"{where}: {exc}".replace("orbstack_marker() ", ""))


def marker_kwargs(marker: pytest.Mark) -> dict[str, Any]:
    """The marker's arguments, checked (see :func:`machine_keywords`); ``image`` may be a list
    of images (a platform matrix: the test runs once per image)."""
    kwargs = machine_keywords(marker.args, marker.kwargs)
    if isinstance(kwargs["image"], (list, tuple)):
        image_list(kwargs["image"], "@pytest.mark.orbstack(image=[...])")
    return kwargs


MATRIX_FIXTURES = frozenset({"orbstack", "orbstack_machine", "orbstack_machines"})
CHECKS = ("check_idempotent", "check_dry_run")
MARKER_ONLY = ("deploy", "data", "check_idempotent", "check_dry_run", "allow_changes", "allow_stale", "cloud_init")


def marker_warnings(item: pytest.Item) -> list[str]:
    """What a test's own ``orbstack`` marker silently drops (warned at collection): a check a
    farther marker (module, class) turns on, since the closest marker alone describes the
    ``orbstack`` machine; and deploy-side arguments on a test without the ``orbstack`` fixture,
    which alone reads them (the factories take their own keywords)."""
    own = [m for m in getattr(item, "own_markers", ()) if m.name == "orbstack"]
    if not own:
        return []
    mine = own[0].kwargs
    warnings = []
    for farther in list(item.iter_markers("orbstack"))[1:]:
        dropped = [c for c in CHECKS if farther.kwargs.get(c) and c not in mine]
        if dropped:
            warnings.append(f"{item.nodeid}: its @pytest.mark.orbstack replaces the farther one, so "
                            f"{', '.join(f'{c}=True' for c in dropped)} does not apply to it: repeat it there")
            break
    unread = [k for k in MARKER_ONLY if mine.get(k) not in (None, False, ())]
    if unread and "orbstack" not in getattr(item, "fixturenames", ()):
        warnings.append(f"{item.nodeid}: its @pytest.mark.orbstack({', '.join(f'{k}=...' for k in unread)}) "
                        "is read only by the orbstack fixture, which this test does not use: pass them to the "
                        "factory (orbstack_machine(deploy=...))")
    return warnings


def image_matrix(config: pytest.Config, marker: pytest.Mark | None) -> tuple[list[str], list[str]] | None:
    """The images a test runs on, once each, and those ``--orbstack-image`` left out; None
    when it is not a matrix (one image, not given as a list). The matrix is the marker's image
    list, else the ini ``orbstack_image`` list (or ``--orbstack-image``) when it has several."""
    state = config.stash[STATE]
    image = marker_kwargs(marker)["image"] if marker is not None else None
    if isinstance(image, str):
        return None
    if image is None:
        return (state.images, []) if len(state.images) > 1 else None
    chosen = [i for i in image if state.narrow is None or i in state.narrow]
    return chosen, [i for i in image if i not in chosen]


def machine_args(config: pytest.Config, kwargs: dict[str, Any], default_image: str | None = None,
                 dirs: Sequence[Path] = ()) -> dict[str, Any]:
    """Factory keywords with the defaults filled in (``default_image``: the test's image in a
    platform matrix), every input checked (paths resolved to absolute ones, relative ones
    looked up in ``dirs``) before any engine call."""
    state = config.stash[STATE]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.setdefault("image", default_image or state.image)
    kwargs.setdefault("user", config.getini("orbstack_user") or None)
    kwargs.setdefault("clone", config.getini("orbstack_clone"))
    parse_image(kwargs["image"])
    check_user(kwargs["user"])
    if "deploy" in kwargs:
        kwargs["deploy"] = check_deploy(kwargs["deploy"], dirs)
    if "cloud_init" in kwargs:
        kwargs["cloud_init"] = check_cloud_init(kwargs["cloud_init"], dirs)
    if kwargs.get("data") is not None and not isinstance(kwargs["data"], dict):
        raise InvalidInput(f"data= must be a dict of host data, not {type(kwargs['data']).__name__}")
    kwargs["allow_changes"] = check_names(kwargs.get("allow_changes", ()), "allow_changes=")
    kwargs["allow_stale"] = check_names(kwargs.get("allow_stale", ()), "allow_stale=")
    kwargs["resources"] = check_resources(**{k: kwargs.pop(k) for k in RESOURCE_KEYWORDS if k in kwargs})
    if (kwargs.get("check_idempotent") or kwargs.get("check_dry_run") or kwargs["allow_changes"]
            or kwargs["allow_stale"]) and "deploy" not in kwargs:
        raise InvalidInput("check_idempotent=, check_dry_run=, allow_changes= and allow_stale= need a "
                           "deploy= to check")
    return kwargs


def same_machines(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Whether ``nextitem`` will likely ask for the machines ``item`` asked for, with the same
    arguments: another run of the same test function, or a test whose ``orbstack`` fixture has
    the same closest marker; with the same image in a platform matrix, and not marked skip."""
    if nextitem is None or any(nextitem.iter_markers("skip")) or any(nextitem.iter_markers("skipif")):
        return False
    if _param(item, "_orbstack_image") != _param(nextitem, "_orbstack_image"):
        return False
    if "orbstack" in getattr(item, "fixturenames", ()) and "orbstack" in getattr(nextitem, "fixturenames", ()):
        return _marker(item) == _marker(nextitem)
    function = getattr(item, "function", None)
    return function is not None and function is getattr(nextitem, "function", None)


def _param(item: pytest.Item, name: str) -> Any:
    return getattr(getattr(item, "callspec", None), "params", {}).get(name)


def _marker(item: pytest.Item) -> tuple[Any, Any] | None:
    marker = item.get_closest_marker("orbstack")
    return None if marker is None else (marker.args, marker.kwargs)


def worker_id(config: pytest.Config) -> str:
    """The xdist worker's id (``gw0``...), ``main`` without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "main"


def item_key(config: pytest.Config, item: pytest.Item) -> str:
    """The key of a test's machines: its node id (and its worker's id where every worker runs
    every test, ``--dist each``)."""
    key = item.nodeid
    if config.getoption("dist", "no") == "each":  # every worker runs every test
        key += f"@{worker_id(config)}"
    return key
