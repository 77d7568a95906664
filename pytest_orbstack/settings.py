"""Every setting pytest-orbstack reads from the environment, and every timeout default, in one
place (as testcontainers' ``testcontainers.core.config``), and the folders and lock files on the
host that follow from them. Variables are read when asked, not at
import, so a test that sets one (``monkeypatch.setenv``) sees it take effect. No module of the
package reads ``os.environ`` but this one; the README's table of variables is checked against
:data:`VARIABLES` by a test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pytest_orbstack.errors import InvalidInput

VARIABLES = {
    "PYTEST_ORBSTACK_BACKEND": "the engine when neither the option nor the ini value names one: "
                               "`auto`, `orbstack` or `docker`",
    "PYTEST_ORBSTACK_STATE_DIR": "the session files' folder (default: `$XDG_STATE_HOME/pytest-orbstack`)",
    "XDG_STATE_HOME": "base of the state and lock folder (default `~/.local/state`)",
    "PYTEST_ORBSTACK_ENGINE_TIMEOUT": "seconds one engine control call may take (default 120)",
    "PYTEST_ORBSTACK_SHELL": "`off`: one engine process per command instead of a persistent shell",
    "PYTEST_ORBSTACK_DEBIAN_MIRROR": "the mirror debootstrap builds Debian base images from "
                                     "(default `http://deb.debian.org/debian`)",
    "PYTEST_ORBSTACK_SCRATCH_DIR": "where debootstrap's tree is built (default `/var/tmp`)",
    "PYTEST_ORBSTACK_INCUS_REMOTE": "the `incus remote` (added and trusted beforehand) the incus engine "
                                    "makes its machines on (default: the local daemon)",
    "PYTEST_ORBSTACK_INCUS_TARGET": "the cluster member the incus engine puts machines on (default: the "
                                    "cluster's scheduler places them)",
    "PYTEST_ORBSTACK_CACHE": "`on`, `off` or `refresh`: the golden cache when neither `--orbstack-cache` nor "
                             "the ini value says (default: `on`, `off` under `CI`)",
    "CI": "set (not `false`/`0`): a CI job, whose golden cache is off unless asked for (docs/design.md)",
    "DOCKER_HOST": "the Docker engine to use (Docker's own variable; default: the local socket)",
    "USER": "a Docker machine's default user when none is given (unless root; else `dev`)",
    "PATH": "where `orbctl` and `docker` are found",
}

INCUS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # an Incus remote's or cluster member's name

# -- timeout defaults, seconds -------------------------------------------------------------
CALL_TIMEOUT = 120.0  # one engine control call (docker run/rm/inspect, orbctl list...)
PROBE_TIMEOUT = 20.0  # `orbctl version` when auto chooses the engine
COMMAND_TIMEOUT = 600.0  # a command in a machine (Machine.run, Backend.execute)
DOWNLOAD_TIMEOUT = 300.0  # a file read from a machine
BOOT_TIMEOUT = 90.0  # systemd in a new machine reaching running (or degraded)
POLL_TIMEOUT = 30.0  # one quick check in a machine (systemd state, `true`), a `kill`, `ps`
SHELL_EXIT_TIMEOUT = 5.0  # a persistent shell's engine process ending once closed
CHECK_TIMEOUT = 3600.0  # a testinfra check's command (testinfra has none of its own)
ORBSTACK_CREATE_TIMEOUT = 600.0  # `orbctl create` / `clone`, which download and boot
DOCKER_PULL_TIMEOUT = 120.0  # `docker pull` of a base image
DOCKER_COMMIT_TIMEOUT = 600.0  # `docker commit` of a machine (a clone's or an image's snapshot)
DOCKER_REMOVE_TIMEOUT = 60.0  # removing an image build's temporary container
IMAGE_SETUP_TIMEOUT = 900.0  # the machine image's setup script (packages installed)
CLOUD_INIT_TIMEOUT = 900.0  # Debian's cloud-init run in a Docker machine
DEBOOTSTRAP_TIMEOUT = 1800.0  # debootstrap of a base image, and its `docker import`
PS_TIMEOUT = 10.0  # `ps` asked for a process's start time
INCUS_CREATE_TIMEOUT = 600.0  # `incus launch` / `copy` / `snapshot`, which may download and boot
INCUS_STOP_TIMEOUT = 60.0  # `incus stop`
INCUS_DELETE_TIMEOUT = 300.0  # `incus delete`
# -- lock waits, seconds
NETWORK_LOCK_WAIT = 120.0  # the Docker machines' network, made once per host
SNAPSHOT_LOCK_WAIT = 600.0  # a golden machine's snapshot, taken once
BASE_IMAGE_LOCK_WAIT = 1800.0  # a base image pulled or built once per host
MACHINE_IMAGE_LOCK_WAIT = 900.0  # a machine image prepared once per host
GOLDEN_LOCK_WAIT = 1800.0  # a golden or session machine made once per session
REGISTRY_LOCK_WAIT = 60.0  # a session file's lock
# -- the watcher
ORPHAN_WAIT = 900.0  # a dead owner's engine calls ending (OrbStack create: 600)
LATE_SWEEPS = (3.0, 3.0)  # pauses before each extra sweep after the owner is gone
RETRY_SWEEP = 2.0  # then the pause before each sweep again while a machine's deletion failed


def _get(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """Variable ``name`` (one of :data:`VARIABLES`) of ``env``, else of this process; ``default``
    when it is unset."""
    assert name in VARIABLES, name
    return (os.environ if env is None else env).get(name, default)


def engine_name() -> str | None:
    """``$PYTEST_ORBSTACK_BACKEND``, if set."""
    return _get("PYTEST_ORBSTACK_BACKEND") or None


def user_state_dir() -> Path:
    """``$XDG_STATE_HOME/pytest-orbstack`` (default ``~/.local/state/pytest-orbstack``)."""
    return Path(_get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pytest-orbstack"


def state_dir() -> Path:
    """Where session files live: ``$PYTEST_ORBSTACK_STATE_DIR``, else :func:`user_state_dir`."""
    value = _get("PYTEST_ORBSTACK_STATE_DIR")
    return Path(value) if value else user_state_dir()


def call_timeout() -> float:
    """Seconds one engine control call (``docker run``/``rm``/``inspect``, ``orbctl list``...)
    may take before it is killed and raises CommandTimeout: ``$PYTEST_ORBSTACK_ENGINE_TIMEOUT``,
    default :data:`CALL_TIMEOUT`. Image builds, commits, creates on OrbStack and boot waits have
    their own, longer limits."""
    value = _get("PYTEST_ORBSTACK_ENGINE_TIMEOUT", f"{CALL_TIMEOUT:g}")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise InvalidInput(f"PYTEST_ORBSTACK_ENGINE_TIMEOUT={value!r}: expected a number of seconds above 0")
    return seconds


def cache_mode() -> str:
    """The golden cache's mode when neither option nor ini value says: ``PYTEST_ORBSTACK_CACHE``,
    else ``off`` in a CI job (``CI`` set, not ``false``/``0``), else ``on``."""
    in_ci = _get("CI", "").lower() not in ("", "false", "0", "no")
    return _get("PYTEST_ORBSTACK_CACHE", "off" if in_ci else "on").lower()


def shell_enabled() -> bool:
    """Whether commands use persistent shells (``PYTEST_ORBSTACK_SHELL=off`` disables them)."""
    return _get("PYTEST_ORBSTACK_SHELL", "on").lower() not in ("off", "0", "false", "no")


def debian_mirror() -> str:
    return _get("PYTEST_ORBSTACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def scratch_dir() -> str:
    return _get("PYTEST_ORBSTACK_SCRATCH_DIR", "/var/tmp")


def docker_host(env: Mapping[str, str] | None = None) -> str:
    """``$DOCKER_HOST`` of ``env`` (an engine's environment), else of this process; "" if unset."""
    return _get("DOCKER_HOST", env=env)


def _incus_name(variable: str, value: str) -> str:
    if value and not INCUS_NAME_RE.match(value):
        raise InvalidInput(f"{variable}={value!r}: expected the name of an Incus remote or cluster member "
                           "(letters, digits, '.', '_', '-')")
    return value


def incus_remote(env: Mapping[str, str] | None = None) -> str:
    """``$PYTEST_ORBSTACK_INCUS_REMOTE`` of ``env``, else of this process: the name of an
    ``incus remote`` the Incus engine addresses as ``REMOTE:NAME``; "" (the default remote) if unset."""
    return _incus_name("PYTEST_ORBSTACK_INCUS_REMOTE", _get("PYTEST_ORBSTACK_INCUS_REMOTE", env=env))


def incus_target(env: Mapping[str, str] | None = None) -> str:
    """``$PYTEST_ORBSTACK_INCUS_TARGET``: the cluster member new machines are pinned to
    (``--target``); "" (the cluster's scheduler places them) if unset."""
    return _incus_name("PYTEST_ORBSTACK_INCUS_TARGET", _get("PYTEST_ORBSTACK_INCUS_TARGET", env=env))


def search_path(env: Mapping[str, str] | None = None) -> str:
    """``$PATH`` of ``env``, else of this process."""
    return _get("PATH", env=env)


def login_user() -> str:
    """``$USER``, "" if unset."""
    return _get("USER")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``extra`` on top, for a command run with a changed one."""
    return {**os.environ, **extra}


def lock_path(name: str) -> str:
    """A lock file shared by every process of this user on this host, whatever its session
    state dir (never in /tmp, which a killed session would litter)."""
    locks = user_state_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return str(locks / f"{name}.lock")


def remove_lock(name: str) -> None:
    """Remove a lock file nobody can need any more (its machine is gone)."""
    (user_state_dir() / "locks" / f"{name}.lock").unlink(missing_ok=True)
