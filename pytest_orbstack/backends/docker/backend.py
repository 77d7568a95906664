"""Machines on Docker: containers running systemd that behave like OrbStack machines.

Machines are found again through their labels (``pytest-orbstack=1``, ``.user``, ``.image``),
so every process using the same engine sees the same machines. Every docker command comes from
:mod:`.docker_commands` and runs through the one subprocess policy (:mod:`.process`); nothing
assumes the engine is local (``DOCKER_HOST`` is honoured): files move through ``docker exec``.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from filelock import FileLock

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.backends.docker import cloudinit
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.commands import (
    LABEL,
    SETUP_DONE,
    check_docker_resources,
    default_login,
    parse_inspect,
)
from pytest_orbstack.backends.docker.host_limits import boot_failure_hint
from pytest_orbstack.backends.docker.images import prepared_image
from pytest_orbstack.backends.process import call_timeout, describe, map_error, run_text
from pytest_orbstack.backends.process import last_line as _last_line
from pytest_orbstack.errors import EngineUnavailable, MachineError, MachineExists, MachineNotFound, UnknownImage
from pytest_orbstack.model.inputs import check_cloud_init, image_codename
from pytest_orbstack.model.names import validate_machine_name
from pytest_orbstack.model.types import NO_RESOURCES, READY_STATES, EngineMachine, Image, MachineInfo, Resources
from pytest_orbstack.paths import lock_path, remove_lock

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_ARCHITECTURES: dict[tuple[str, str], str] = {}  # (docker binary, DOCKER_HOST) -> architecture
ERRORS = (("No such container", MachineNotFound), ("is already in use", MachineExists))
NOT_RUNNING = re.compile(r"Error response from daemon: Container [0-9a-f]+ is not running\s*")
UNREACHABLE = ("Cannot connect to the Docker daemon", "error during connect",
               "permission denied while trying to connect")


class DockerBackend(Backend):
    """Machines as systemd containers on a Docker engine (``env`` extends os.environ)."""

    kind = "docker"

    def __init__(self, docker: str = "docker", env: dict[str, str] | None = None) -> None:
        self.docker = docker
        self.env_overrides = dict(env or {})
        self.env = {**os.environ, **env} if env else None
        self._tags: dict[str, str] = {}  # image -> prepared tag (the base does not change mid-session)
        self._users: dict[str, str] = {}  # machine -> default user
        self._network_ready = False
        self._frozen: dict[str, tuple[str, dict[str, str]]] = {}  # golden -> its snapshot, labels
        self._known: dict[str, tuple[str, str | None]] = {}  # machine -> (id, its clone image) once inspected

    # -- plumbing ---------------------------------------------------------------------------
    def call(self, argv: builtins.list[str], *, timeout: float | None = None, check: bool = True,
             ok: tuple[str, ...] = (), input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a builder's docker argv with this engine's binary and environment. A failure
        raises the matching typed error, unless ``check`` is false or the stderr contains one of
        ``ok``; the process is returned then. ``timeout`` defaults to :func:`call_timeout`."""
        argv = [self.docker, *argv[1:]]
        missing = f"{self.docker} not found on PATH: install Docker (apt-get install docker.io) or use OrbStack"
        done = run_text(argv, timeout=timeout or call_timeout(), env=self.env, missing=missing, input=input)
        if check and done.returncode != 0 and not any(s in done.stderr for s in ok):
            raise self._error(done)
        return done

    def _error(self, proc: subprocess.CompletedProcess[str]) -> MachineError:
        if any(s in proc.stderr for s in UNREACHABLE):
            host = (self.env or os.environ).get("DOCKER_HOST")
            where = f"DOCKER_HOST={host}" if host else "the local socket"
            return EngineUnavailable(f"docker daemon not answering at {where}: {_last_line(proc.stderr)}",
                                     stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        if "no space left on device" in proc.stderr:
            return MachineError(f"{describe(proc.args)}: the docker engine's disk is full (no space left "
                                "on device): free space (docker system df; docker system prune) and rerun",
                                stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        return map_error(proc.args, proc.returncode, proc.stderr, ERRORS)

    def _find(self, name: str) -> dict[str, Any] | None:
        """``docker container inspect`` of the container named exactly ``name``, or None."""
        proc = self.call(cmd.inspect(validate_machine_name(name)), ok=("No such",))
        data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        return data[0] if data and data[0]["Name"] == f"/{name}" else None

    def _inspect(self, name: str) -> dict[str, Any]:
        """Like :meth:`_find`, for a machine: MachineNotFound unless this package made it."""
        data = self._find(name)
        labels = (data["Config"].get("Labels") or {}) if data else {}
        if data is None or labels.get(LABEL) != "1":
            raise MachineNotFound(f"machine not found: {name!r}")
        self._known[name] = (data["Id"], labels.get(f"{LABEL}.clone-image"))
        return data

    def exec_root(self, name: str, script: str, *, input: str | None = None,
                  timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run shell ``script`` as root in container ``name``."""
        argv = cmd.exec_(name, script, user="root", stdin=input is not None)
        return self.call(argv, input=input, timeout=timeout, check=check)

    def _ensure_network(self) -> None:
        """Create network ``pytest-orbstack`` unless it exists. Docker 20.10 lets two concurrent
        creates make two networks of one name (then every ``run`` fails as "ambiguous"), so
        creation happens under a lock, and a duplicate left by older versions is removed."""
        if self._network_ready:
            return
        with FileLock(lock_path("network"), timeout=120):
            ids = self.call(cmd.network_ids()).stdout.split()
            if not ids:
                self.call(cmd.network_create(), ok=("already exists",))
            for extra in ids[1:]:  # keep the first; one in use stays ("has active endpoints")
                self.call(cmd.network_remove(extra), ok=("active endpoints", "not found"))
        self._network_ready = True

    def _remove_image(self, image: str) -> None:
        self.call(cmd.remove_image(image), ok=("conflict", "No such image"))

    def prepare(self, image: str) -> str:
        """What a machine of ``image`` needs before ``docker run``: the machines' network and
        the prepared image (built once); returns the image's tag."""
        self._ensure_network()
        if image not in self._tags:
            self._tags[image] = prepared_image(self, image)
        return self._tags[image]

    def _run_container(self, name: str, image_ref: str, labels: dict[str, str]) -> None:
        """``docker run`` a machine (within the resources its labels record); a failed or timed
        out run leaves no container behind."""
        self._ensure_network()
        with self._removed_on_failure(name):  # a run that timed out: the engine may still make it
            proc = self.call(cmd.run(name, image_ref, labels, cmd.label_resources(labels)), check=False)
        if proc.returncode != 0:
            if "is already in use" in proc.stderr:
                raise MachineExists(f"machine already exists: {name!r}", stderr=proc.stderr)
            self.call(cmd.delete(name), check=False)
            raise self._error(proc)

    @contextmanager
    def _removed_on_failure(self, name: str, image: str | None = None) -> Iterator[None]:
        """Remove container ``name`` (and ``image``) if the block raises, then re-raise."""
        try:
            yield
        except BaseException:
            try:
                self.call(cmd.delete(name), check=False)
                if image:
                    self._remove_image(image)
            except MachineError:
                pass  # the original error matters more
            raise

    # -- machines -------------------------------------------------------------------------------
    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None,
               resources: Resources = NO_RESOURCES) -> MachineInfo:
        """Run ``name`` from ``image``, wait for systemd, add the default user (passwordless
        sudo), then run ``cloud_init`` (Debian's cloud-init; a failure is only logged, as on
        OrbStack). OrbStack adds its default user after cloud-init (orbstack/orbstack#1446);
        here it exists first, as in :func:`pytest_orbstack.pyinfra.operations.machine`, so a machine
        listed by the engine always has its user."""
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        path = check_cloud_init(cloud_init)
        ref = self.prepare(image)
        # a name in use fails `docker run` itself ("is already in use" -> MachineExists)
        check_docker_resources(resources)
        self._run_container(name, ref, {**(labels or {}), **cmd.machine_labels(login, image, resources)})
        with self._removed_on_failure(name):
            # the user is added while systemd boots, in the first readiness probe
            self.wait_ready(name, setup=cmd.user_setup(login) if login != "root" else None)
            if path is not None:
                cloudinit.run(self, name, path)
            return self.info(name)

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        """Commit ``source`` to an image and run ``name`` from it like :meth:`create` (own
        hostname); the source keeps running. With ``frozen_source`` (a golden machine that no
        longer changes) one snapshot image of the source serves every clone; it goes with the
        source, and this process asks the engine about the source only for its first clone."""
        validate_machine_name(name)
        if frozen_source and source in self._frozen:  # asked once per process: a golden is fixed
            (image, source_labels), owned = self._frozen[source], None  # a name in use: run fails
        else:
            source_labels = self._inspect(source)["Config"].get("Labels") or {}
            if self._find(name) is not None:
                raise MachineExists(f"machine already exists: {name!r}")
            marks = [f"LABEL {key}={value}" for key, value in (labels or {}).items()]  # the session's
            if frozen_source:
                image, owned = self._snapshot(source, marks), None
                self._frozen[source] = (image, source_labels)
            else:
                image = owned = f"pytest-orbstack-clone:{name}"
                self.call(cmd.commit(source, image, f"LABEL {LABEL}.clone-of={source}", *marks), timeout=600)
        labels = {**(labels or {}), LABEL: "1",
                  **{k: v for k, v in source_labels.items() if k in cmd.INHERITED_LABELS}}
        if owned:
            labels[f"{LABEL}.clone-image"] = owned
        try:
            self._run_container(name, image, labels)
        except BaseException:
            if owned:
                self._remove_image(owned)
            raise
        with self._removed_on_failure(name, owned):
            self.wait_ready(name)
            return self.info(name)

    def _snapshot(self, source: str, marks: builtins.list[str]) -> str:
        """The snapshot image of ``source``, committed once (a file lock spans processes)."""
        image = f"pytest-orbstack-snapshot:{source}"
        with FileLock(lock_path(f"snapshot-{source}"), timeout=600):
            if self.call(cmd.image_id(image), check=False).returncode != 0:
                self.call(cmd.commit(source, image, f"LABEL {LABEL}.snapshot-of={source}", *marks),
                          timeout=600)
        return image

    def remove_session_images(self, session_id: str) -> None:
        """Remove the session's snapshot and clone images (labelled with it) no container uses."""
        for image in self.call(cmd.session_images(session_id)).stdout.split():
            self._remove_image(image)

    def remove_unused_images(self, removable: Callable[[Mapping[str, str]], bool]) -> builtins.list[str]:
        """See :meth:`.Backend.remove_unused_images` and :mod:`.docker_leftovers`."""
        from pytest_orbstack.backends.docker.leftovers import remove_unused
        return remove_unused(self, removable)

    def start(self, name: str) -> None:
        self.call(cmd.start(self._inspect(name)["Id"]))
        self.wait_ready(name)

    def stop(self, name: str) -> None:
        self.close_shells(name)
        self.call(cmd.stop(self._inspect(name)["Id"]))

    def delete(self, name: str) -> None:
        """Remove the container and its volumes, and its clone image unless still in use. A
        machine this process has inspected (every one it made) is removed by the id it had
        then, without asking the engine again; MachineNotFound if that container is gone."""
        if name not in self._known:
            self._inspect(name)
        cid, clone_image = self._known.pop(name)
        self.close_shells(name)
        self._users.pop(name, None)
        self._frozen.pop(name, None)
        proc = self.call(cmd.delete(cid), check=False)
        if proc.returncode != 0 or "No such container" in proc.stderr:  # (`rm -f` exits 0 then)
            raise self._error(proc)
        if clone_image:
            self._remove_image(clone_image)
        if os.path.exists(lock_path(f"snapshot-{name}")):  # it was a frozen source: a snapshot
            self._remove_image(f"pytest-orbstack-snapshot:{name}")
            remove_lock(f"snapshot-{name}")

    def info(self, name: str) -> MachineInfo:
        info = parse_inspect(self._inspect(name), self._architecture())
        assert info is not None  # _inspect checked the label
        return info

    def list(self) -> builtins.list[EngineMachine]:
        out = self.call(cmd.list_machines()).stdout
        rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 4]
        return sorted((self._machine(cid, name, state == "running", user or None, image)
                       for cid, name, state, user, image in rows), key=lambda m: m.name)

    def _architecture(self) -> str:
        """The engine's architecture, asked once per process and engine (``docker info``)."""
        key = (self.docker, (self.env or os.environ).get("DOCKER_HOST", ""))
        if key not in _ARCHITECTURES:
            arch = self.call(cmd.architecture()).stdout.strip()
            _ARCHITECTURES[key] = ARCHES.get(arch, arch)
        return _ARCHITECTURES[key]

    def _machine(self, cid: str, name: str, running: bool, user: str | None, image: str) -> EngineMachine:
        try:
            distro, codename = image_codename(image)
        except UnknownImage:
            distro, codename = "", ""
        return EngineMachine(id=cid, name=name, image=Image(distro, codename, self._architecture()),
                             state="running" if running else "stopped", default_username=user)

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        """``docker exec -i -u USER [-w DIR] NAME sh -c COMMAND``, with ``-H HOST`` first when
        ``env`` sets DOCKER_HOST (the argv runs in the caller's environment, not ``env``)."""
        validate_machine_name(name)
        host = ["-H", self.env_overrides["DOCKER_HOST"]] if "DOCKER_HOST" in self.env_overrides else []
        if user is None:  # the label never changes: one inspect per machine, not per command
            user = self._users.get(name) or self._users.setdefault(name, self.default_user(name))
        return [self.docker, *host, *cmd.exec_(name, command, user=user, workdir=workdir)[1:]]

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes]) -> MachineError | None:
        """A stopped machine (killed, stopped from outside, or its engine restarted: ``docker
        exec`` says "Container ... is not running") or an engine gone, rather than the command's
        own exit code."""
        stderr = proc.stderr.decode(errors="replace")
        if any(stderr.startswith(s) for s in UNREACHABLE):
            return self._error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
        if not NOT_RUNNING.fullmatch(stderr):
            return None
        state = (self._find(name) or {}).get("State") or {}
        how = f" (exit code {state['ExitCode']} at {state['FinishedAt'][:19]}Z)" if "ExitCode" in state else ""
        return MachineError(f"machine {name} is not running{how}: it was stopped or killed, or the "
                            "docker engine restarted", stderr=stderr, returncode=proc.returncode)

    def logs(self, name: str) -> str:
        """``docker logs``, and when running the boot journal and the cloud-init output."""
        data = self._inspect(name)
        proc = self.call(cmd.logs(data["Id"]), check=False)
        parts = [proc.stdout + proc.stderr]
        if data["State"]["Running"]:
            parts.append(self.exec_root(name, (
                f"journalctl -b --no-pager -n 300 2>&1; if [ -s {cloudinit.LOG} ]; then "
                f"echo '--- {cloudinit.LOG} ---'; cat {cloudinit.LOG}; fi")).stdout)
        return "\n".join(part for part in parts if part)

    def wait_ready(self, name: str, timeout: float = 90.0, *, setup: str | None = None) -> str:
        """Wait for systemd in ``name`` (running or degraded), running ``setup`` as root first.

        One ``docker exec`` (:func:`.docker_commands.ready`) does it all; polling follows only
        if that did not end ready. Fails at once if the container exits while booting."""
        proc = self.call(cmd.ready(name, int(timeout), setup), check=False, timeout=timeout + 30)
        self._raise_if_stopped(name, proc)
        words = proc.stdout.split()
        if setup is not None and SETUP_DONE not in words:
            raise MachineError(f"default user setup failed in {name}: {_last_line(proc.stderr)}",
                               stderr=proc.stderr)
        if words and words[-1] in READY_STATES:
            return words[-1]
        return super().wait_ready(name, timeout)

    def _raise_if_stopped(self, name: str, proc: subprocess.CompletedProcess[str]) -> None:
        if "is not running" in proc.stderr or "No such container" in proc.stderr:
            tail = self.call(cmd.logs(name, tail=5), check=False)
            last = _last_line(tail.stdout + tail.stderr, _last_line(proc.stderr))
            hint = boot_failure_hint((self.env or os.environ).get("DOCKER_HOST"))
            raise MachineError(f"machine {name} stopped while booting: {last}{hint}")
