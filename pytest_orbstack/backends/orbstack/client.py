"""A typed client of OrbStack's command line, ``orbctl``.

Each method runs one ``orbctl`` command (argv list, no shell), parses its output and turns
failures into the typed errors of :mod:`pytest_orbstack.errors` carrying the CLI's stderr.
Machine names are validated before any call. Shapes parsed are the documented ones:
``list -f json`` items, ``info -f json`` in both its 2025+ form ``{"record":..., "ip4":...}``
and the older flat record, ``config`` as ``key: value`` lines or bare values. Each behaviour
relied on is recorded, with its public source, in ``tests/contracts/orbstack/``.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import time

from pytest_orbstack import settings
from pytest_orbstack.backends.orbstack import commands as cmd
from pytest_orbstack.backends.orbstack.commands import parse_config, parse_config_value, parse_info, parse_machine
from pytest_orbstack.backends.process import map_error, run_text
from pytest_orbstack.errors import (
    CommandTimeout,
    EngineUnavailable,
    InvalidInput,
    InvalidName,
    MachineError,
    MachineExists,
    MachineNotFound,
    UnknownConfigKey,
    UnknownImage,
)
from pytest_orbstack.model.inputs import check_cloud_init, check_user, parse_image
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import NO_RESOURCES, EngineMachine, MachineInfo, Resources

# stderr text -> error class (where each text comes from: docs/orbstack.md, "Error texts")
ERRORS = (("machine not found", MachineNotFound), ("already exists", MachineExists),
          ("Unknown configuration key", UnknownConfigKey), ("Unknown machine config key", UnknownConfigKey),
          ("invalid machine name", InvalidName), ("invalid distro", UnknownImage),
          ("image not found", UnknownImage), ("make rootfs: download", EngineUnavailable),
          ("make rootfs: fetch index", EngineUnavailable),
          ("timed out waiting for network", EngineUnavailable))
# stderr text -> what it means, appended to the error's message.
HINTS = (
    ("image not found", "OrbStack offers no such image (any more): choose another release"),
    ("make rootfs: download", "OrbStack could not download the image: check the network or proxy"),
    ("make rootfs: fetch index", "OrbStack could not fetch its image index: check the network or proxy"),
    ("timed out waiting for network", "the machine had no network: check the network or proxy"),
    ("machine crashed on startup", "the machine crashed while booting, an OrbStack fault for some "
     "distro/architecture pairs (#2476): try another image or update OrbStack"),
    ("canceled by machine shutdown", "the machine shut down during its initial setup, e.g. a "
     "cloud-init reboot (#2555, fixed in OrbStack 2.2.2)"),
    ("missing IP address", "the machine got no address in time (#2213, #2663)"),
)
# feature -> (oldest OrbStack that has it, source)
FEATURES = {
    "clone": ((2, 0, 0), "clone arrived in OrbStack 2.0 (orbstack/orbstack#654)"),
    "isolated": ((2, 1, 0), "isolated machines arrived in OrbStack 2.1.0 (orbstack/orbstack#2396)"),
    "resources": ((2, 2, 0), "per-machine --cpus/--memory/--disk limits were released in OrbStack "
                             "2.2.0 (orbstack/orbstack#789)"),
}
DAEMON_ERROR = re.compile(r"\[-\d+\] [^\n]+")  # one line: an error of OrbStack's daemon
_VERSIONS: dict[tuple[str, str], tuple[int, int, int]] = {}  # (binary, PATH) -> version: once a process

CREATE_TIMEOUT = settings.ORBSTACK_CREATE_TIMEOUT


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``Version: 2.2.3 (2020300)`` (or a bare ``2.2.3``) -> ``(2, 2, 3)``; None if absent."""
    match = re.search(r"(?:^|Version:\s*)(\d+)\.(\d+)(?:\.(\d+))?", text.strip(), re.MULTILINE)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


class Orbctl:
    """Client of one ``orbctl`` binary. ``binary`` may be a path; ``env`` extends this process's environment.
    Commands come from :mod:`pytest_orbstack.backends.orbstack.commands`."""

    def __init__(self, binary: str = "orbctl", *, timeout: float | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.timeout = timeout
        self.env = settings.child_env(env) if env else None

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, argv: builtins.list[str], *, timeout: float | None = None, check: bool = True,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a builder's argv with this client's binary; a failure raises the typed error."""
        argv = [self.binary, *argv[1:]]
        done = run_text(argv, timeout=timeout or self.timeout or settings.call_timeout(), env=self.env, input=input,
                        missing=self._missing())
        if check and done.returncode != 0:
            raise classify(argv, done.returncode, done.stderr)
        return done

    def _missing(self) -> str:
        return (f"{self.binary!r} not found on PATH: install OrbStack (https://orbstack.dev) "
                "or use the docker backend (pytest --orbstack-backend=docker; pyinfra --data "
                "orbstack_backend=docker)")

    # -- machines ---------------------------------------------------------------------------
    def list(self) -> builtins.list[EngineMachine]:
        """Every machine OrbStack lists (the builtin docker/k8s records left out)."""
        items = json.loads(self._run(cmd.list_machines()).stdout or "[]") or []
        return [m for m in map(parse_machine, items) if not m.builtin]

    def info(self, name: str) -> MachineInfo:
        return parse_info(json.loads(self._run(cmd.info(validate_machine_name(name))).stdout))

    def create(self, image: str, name: str, *, arch: str | None = None, user: str | None = None,
               user_data: str | os.PathLike[str] | None = None,
               resources: Resources = NO_RESOURCES, timeout: float = CREATE_TIMEOUT) -> MachineInfo:
        """Create and start a machine from ``image`` (``distro[:version]``).

        OrbStack's create occasionally hangs after succeeding, or fails transiently with
        "missing IP address" (OrbStack issues #2213, #2653); both are handled once: a hung
        create whose machine is running is taken as done, a transient failure that left
        nothing behind is retried once.
        """
        validate_machine_name(name)
        parse_image(image)
        check_user(user)
        cloud_init = check_cloud_init(user_data)  # absolute: orbctl may run elsewhere
        if resources.disk_mib and resources.disk_mib % 1024:  # (see orbstack_commands.create)
            raise InvalidInput(f"disk= on OrbStack takes whole GiB (\"64G\"), not {resources.disk_mib} MiB")
        if resources.limits:
            self.require("resources")
        if resources.isolated:
            self.require("isolated")
        argv = cmd.create(image, name, user=user, arch=arch, cloud_init=cloud_init, resources=resources)
        for attempt in (1, 2):
            try:
                self._run(argv, timeout=timeout)
                break
            except CommandTimeout:
                info = self._info_or_none(name)
                if info is None or not info.machine.running:
                    raise
                break
            except MachineError as exc:
                transient = "missing IP address" in exc.stderr
                if attempt == 1 and transient and self._info_or_none(name) is None:
                    time.sleep(1)
                    continue
                raise
        return self.info(name)

    def _info_or_none(self, name: str) -> MachineInfo | None:
        try:
            return self.info(name)
        except (MachineNotFound, CommandTimeout):
            return None

    def delete(self, name: str) -> None:
        """Delete a machine by name (``-f``: no prompt). Deleting by ID is never done."""
        self._run(cmd.delete(validate_machine_name(name)))

    def clone(self, source: str, new: str) -> None:
        """Copy-on-write clone; OrbStack leaves the clone stopped. Needs OrbStack 2.0."""
        self.require("clone")
        self._run(cmd.clone(validate_machine_name(source), validate_machine_name(new)),
                  timeout=CREATE_TIMEOUT)

    def start(self, name: str) -> None:
        self._run(cmd.start(validate_machine_name(name)))

    def stop(self, name: str) -> None:
        self._run(cmd.stop(validate_machine_name(name)))

    def restart(self, name: str) -> None:
        self._run(cmd.restart(validate_machine_name(name)))

    def rename(self, old: str, new: str) -> None:
        self._run(cmd.rename(validate_machine_name(old), validate_machine_name(new)))

    def logs(self, name: str) -> str:
        """The machine's console log. OrbStack prints a failure (``[-32098] machine not found:
        'x'``) on stdout and exits 0 (its source, orbstack/swift-nio cheru/danny/next
        scon/cmd/scli/cmd/logs.go): such an answer raises the typed error."""
        done = self._run(cmd.logs(validate_machine_name(name)))
        if DAEMON_ERROR.fullmatch(done.stdout.strip()):
            raise classify(done.args, done.returncode, done.stdout)
        return done.stdout

    # -- OrbStack itself ----------------------------------------------------------------------
    def config_show(self) -> dict[str, str]:
        return parse_config(self._run(cmd.config_show()).stdout)

    def config_get(self, key: str) -> str:
        return parse_config_value(key, self._run(cmd.config_get(key)).stdout)

    def config_set(self, key: str, value: str) -> None:
        self._run(cmd.config_set(key, str(value)))

    def version(self) -> str:
        """The version string, e.g. ``2.2.3`` from ``Version: 2.2.3 (2020300)``."""
        text = self._run(cmd.version()).stdout
        for line in text.splitlines():
            if line.startswith("Version:"):
                return line.split()[1]
        return text.strip()

    def version_tuple(self) -> tuple[int, int, int]:
        """This OrbStack's version, asked once per process and binary (later calls are free).
        An unreadable answer counts as new enough: the feature's own error then speaks."""
        key = (self.binary, settings.search_path(self.env))
        if key not in _VERSIONS:
            _VERSIONS[key] = parse_version(self.version()) or (999, 0, 0)
        return _VERSIONS[key]

    def supports(self, feature: str) -> bool:
        """Whether this OrbStack is new enough for ``feature`` (a key of FEATURES)."""
        return self.version_tuple() >= FEATURES[feature][0]

    def require(self, feature: str) -> None:
        """Raise EngineUnavailable, saying which version is needed and why, when this OrbStack
        is older than ``feature`` (a key of FEATURES) needs."""
        floor, why = FEATURES[feature]
        if not self.supports(feature):
            have = self.version_tuple()
            raise EngineUnavailable(
                f"{feature} needs OrbStack {'.'.join(map(str, floor))} or newer, this one is "
                f"{'.'.join(map(str, have))}: update OrbStack ({why})")

    # -- commands and files in a machine ---------------------------------------------------
    def run_argv(self, name: str, command: str, *, user: str | None = None,
                 workdir: str | None = None) -> builtins.list[str]:
        """argv running shell ``command`` in machine ``name``."""
        argv = cmd.exec_(validate_machine_name(name), command, user=user, workdir=workdir)
        return [self.binary, *argv[1:]]

    def run(self, name: str, command: str, *, user: str | None = None, workdir: str | None = None,
            input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run shell ``command``; returns the process (exit code is the command's, not checked)."""
        argv = cmd.exec_(validate_machine_name(name), command, user=user, workdir=workdir)
        return self._run(argv, timeout=timeout, check=False, input=input)

    def push(self, name: str, source: str, dest: str) -> None:
        """Copy a local file into the machine (``cp`` semantics). Not used for uploads: push
        reads the file through ``/mnt/mac`` (#406; broken on isolated machines before 2.2.0,
        #2469) and wrote as the default user until 2.2.3 (#407); uploads go over stdin."""
        self._run(cmd.push(validate_machine_name(name), source, dest))


def classify(argv: builtins.list[str], returncode: int, stderr: str) -> MachineError:
    """The typed error for a failed orbctl command (ERRORS), its message ending with what the
    text means when it is a known one (HINTS)."""
    error = map_error(argv, returncode, stderr, ERRORS)
    hint = next((text for key, text in HINTS if key in stderr), None)
    if hint is None:
        return error
    return type(error)(f"{error.message} ({hint})", stderr=error.stderr, argv=error.argv,
                       returncode=error.returncode)
