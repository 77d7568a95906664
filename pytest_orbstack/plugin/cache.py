"""The golden cache's options (``--orbstack-cache``, its ini keys) and its lines in
``--orbstack-list`` and ``--orbstack-prune`` (:mod:`pytest_orbstack.machines.cache`)."""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable

import pytest

from pytest_orbstack import settings
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.machines import deploy_reads
from pytest_orbstack.machines.cache import MODES, CachePolicy, GoldenCache, age
from pytest_orbstack.model.names import project_tag

MAX_AGE_HOURS = "168"  # a week: an entry older than that is made anew (a base image's updates)
MAX_COUNT = "10"  # per project: deploys changed and images in a matrix leave several


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """``--orbstack-cache`` and ``orbstack_cache``, ``orbstack_cache_max_age``, ``orbstack_cache_max_count``."""
    group.addoption("--orbstack-cache", default=None, metavar="MODE",
                    help="golden machines cached across runs: on (clone from a cached golden machine whose "
                         "key matches, else make and cache it), off, refresh (make and cache anew). "
                         "Default: ini orbstack_cache, else $PYTEST_ORBSTACK_CACHE, else on (off when $CI is set).")
    parser.addini("orbstack_cache", "golden cache: on, off or refresh (unset: $PYTEST_ORBSTACK_CACHE, "
                  "else on, off under CI)", default="")
    parser.addini("orbstack_cache_max_age", "hours a cached golden machine is used (older: made anew)",
                  default=MAX_AGE_HOURS)
    parser.addini("orbstack_cache_max_count", "cached golden machines kept per project (oldest removed)",
                  default=MAX_COUNT)


def project(config: pytest.Config) -> str:
    """This user's and project's tag (the cache is per project)."""
    return project_tag(getpass.getuser(), str(config.rootpath))


def policy(config: pytest.Config) -> CachePolicy | None:
    """The cache policy the options, ini values and environment say (None: the cache is off);
    UsageError on a bad value."""
    mode = (config.getoption("orbstack_cache") or config.getini("orbstack_cache") or settings.cache_mode()).lower()
    if mode not in MODES:
        raise pytest.UsageError(f"--orbstack-cache / orbstack_cache = {mode!r}: use {', '.join(MODES)}")
    try:
        hours = float(config.getini("orbstack_cache_max_age"))
        count = int(config.getini("orbstack_cache_max_count"))
    except ValueError as exc:
        raise pytest.UsageError(f"orbstack_cache_max_age / orbstack_cache_max_count: {exc}") from None
    if hours <= 0 or count < 1:
        raise pytest.UsageError("orbstack_cache_max_age must be > 0 hours, orbstack_cache_max_count >= 1")
    return CachePolicy(mode, hours * 3600, count, project(config)) if mode != "off" else None


def golden_cache(config: pytest.Config, backend: Backend, progress: Callable[[str], None]) -> GoldenCache | None:
    """The session's cache on ``backend``; None when off or when the engine keeps none."""
    chosen = policy(config)
    store = backend.cache_store() if chosen is not None else None
    return GoldenCache(store, chosen, progress) if store is not None and chosen is not None else None


def listing(config: pytest.Config, backend: Backend) -> list[str]:
    """``--orbstack-list``'s lines of this project's cached golden machines: key, age, what, entry."""
    store = backend.cache_store()
    entries = store.entries(project(config)) if store is not None else []
    if not entries:
        return [f"orbstack: no cached golden machines in this project on {backend.name}"]
    now = time.time()
    lines = [f"{'cached golden (key)':<20}  {'age':>5}  image and deploy / entry"]
    for entry in entries:
        lines.append(f"{entry.digest[:20]:<20}  {age(now - entry.created):>5}  {entry.about}")
        lines.append(f"{'':<20}  {'':>5}  {entry.ref}")
    return lines


def prune(config: pytest.Config, backend: Backend, scope: str) -> list[str]:
    """Remove the cached golden machines of this project (``scope`` all: of every project);
    returns those removed (an entry a machine runs from stays)."""
    store = backend.cache_store()
    if store is None:
        return []
    removed = [entry for entry in store.entries(project(config) if scope == "project" else None)
               if store.remove(entry.ref)]
    for entry in removed:
        deploy_reads.forget(entry.digest)
    return [entry.ref for entry in removed]
