"""One Docker engine as a command line: the ``docker`` binary, the environment it runs in (its
``DOCKER_HOST``), and what every docker command of this package shares: the one subprocess
policy, the stderr -> typed error mapping, the machines' network, the engine's architecture.

:class:`DockerCLI` knows no machines of its own (it runs commands and reads what docker prints
of one): :class:`~.backend.DockerBackend` composes it (as pyinfra's
``DockerConnector`` composes a ``LocalConnector``), and the prepared images
(:mod:`.images`), the debootstrap builds (:mod:`.debootstrap`), cloud-init (:mod:`.cloudinit`)
and the leftover images (:mod:`.leftovers`) take it instead of the backend.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.host_limits import boot_failure_hint, disk_hint
from pytest_orbstack.backends.process import ErrorPatterns, describe, last_line, map_error, run_text
from pytest_orbstack.errors import EngineUnavailable, MachineError, MachineExists, MachineNotFound
from pytest_orbstack.model.types import MachineInfo

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_ARCHITECTURES: dict[tuple[str, str], str] = {}  # (docker binary, DOCKER_HOST) -> architecture
ERRORS = (("No such container", MachineNotFound), ("is already in use", MachineExists))
REMOVING = "is already in progress"  # `docker rm` while another process removes the container
NOT_RUNNING = re.compile(r"Error response from daemon: Container [0-9a-f]+ is not running\s*")
UNREACHABLE = ("Cannot connect to the Docker daemon", "error during connect",
               "permission denied while trying to connect")


def local_name(listed: str) -> str:
    """The name an image was given, from the name the engine lists it by (Podman lists a local
    image as ``localhost/NAME``)."""
    return listed.removeprefix("localhost/")


def unreachable_reason(stderr: str) -> str:
    """The last line of ``stderr``; for an ``ssh://`` engine only what ssh itself said (docker
    wraps it: ``error during connect: ... command [ssh ...] has exited with exit status 255,
    make sure the URL is valid, ...: stderr=ssh: connect to host H port P: Connection refused``)."""
    line = last_line(stderr)
    said = line.rsplit("stderr=", 1)[1].strip() if "] has exited with" in line and "stderr=" in line else ""
    return said or line


class DockerCLI:
    """The ``docker`` binary run with ``env`` (which extends this process's environment; None: that environment)."""

    install = "install Docker (apt-get install docker.io) or use OrbStack"  # when the binary is missing
    engine = "docker"  # the engine's name in messages and the commands they suggest
    errors: ErrorPatterns = ERRORS  # what its stderr says for each typed error
    unreachable: tuple[str, ...] = UNREACHABLE  # what it says when its daemon is away
    not_running = NOT_RUNNING  # what `exec` in a stopped machine says
    stopped_words = ("is not running", "No such container")  # a machine that ended while booting
    detached = False  # its client may be killed mid-call: the daemon finishes or undoes the change

    def __init__(self, docker: str = "docker", env: dict[str, str] | None = None) -> None:
        self.docker = docker
        self.env_overrides = dict(env or {})
        self.env = settings.child_env(env) if env else None
        self._network_ready = False

    def argv(self, builder_argv: list[str]) -> list[str]:
        """A builder's argv (``docker ...``) with this binary."""
        return [self.docker, *builder_argv[1:]]

    def host(self) -> str | None:
        """The ``DOCKER_HOST`` these commands reach (None: the local socket)."""
        return settings.docker_host(self.env) or None

    def engine_url(self) -> str:
        """Where the engine is: ``DOCKER_HOST``, else the current docker context's endpoint
        (``""`` when neither says: the local socket). Asked on error paths only."""
        if self.host():
            return self.host() or ""
        proc = self.call(cmd.context_endpoint(), check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def host_flags(self) -> list[str]:
        """The global flags an argv run in the caller's environment needs: ``-H HOST`` when
        ``env`` sets DOCKER_HOST."""
        return ["-H", self.env_overrides["DOCKER_HOST"]] if "DOCKER_HOST" in self.env_overrides else []

    def exec_argv(self, name: str, command: str, *, user: str, workdir: str | None = None) -> list[str]:
        """:func:`.commands.exec_` with this binary and :meth:`host_flags` first: the argv runs
        in the caller's environment, not ``env``."""
        return [self.docker, *self.host_flags(), *cmd.exec_(name, command, user=user, workdir=workdir)[1:]]

    def call(self, argv: list[str], *, timeout: float | None = None, check: bool = True,
             ok: tuple[str, ...] = (), input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a builder's docker argv with this binary and environment. A failure raises the
        matching typed error, unless ``check`` is false or the stderr contains one of ``ok``;
        the process is returned then. ``timeout`` defaults to :func:`~pytest_orbstack.settings.call_timeout`."""
        missing = f"{self.docker} not found on PATH: {self.install}"
        done = run_text(self.argv(argv), timeout=timeout or settings.call_timeout(), env=self.env, missing=missing,
                        input=input, detached=self.detached)
        if check and done.returncode != 0 and not any(s in done.stderr for s in ok):
            raise self.error(done)
        return done

    def error(self, proc: subprocess.CompletedProcess[str]) -> MachineError:
        """The typed error a failed command means (a daemon not answering, a full disk, a missing
        or existing container, else MachineError)."""
        if any(s in proc.stderr for s in self.unreachable):
            host = self.host()
            where = f"DOCKER_HOST={host}" if host else "the local socket"
            return EngineUnavailable(f"docker daemon not answering at {where}: {unreachable_reason(proc.stderr)}",
                                     stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        if "no space left on device" in proc.stderr:
            where = self._disk_where()
            return MachineError(f"{describe(proc.args)}: the {self.engine} engine's disk is full (no space left "
                                f"on device): free space ({self.engine} system df; {self.engine} system prune) "
                                f"and rerun{where}", stderr=proc.stderr, argv=proc.args, returncode=proc.returncode)
        return map_error(proc.args, proc.returncode, proc.stderr, self.errors)

    def _disk_where(self) -> str:
        """:func:`.host_limits.disk_hint` for this engine's data-root; ``""`` when the engine does
        not say where that is (or does not answer: the full disk's error matters more)."""
        try:
            root = self.call(cmd.root_dir(), check=False)
            return disk_hint(self.engine_url(), root.stdout.strip() if root.returncode == 0 else "")
        except MachineError:
            return ""

    def find(self, name: str) -> dict[str, Any] | None:
        """``docker container inspect`` of the container named exactly ``name`` (a name the
        backend checked, or one it wrote in a label), or None."""
        proc = self.call(cmd.inspect(name), ok=("No such",))
        data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        return data[0] if data and data[0]["Name"] == f"/{name}" else None

    def machine_info(self, data: dict[str, Any]) -> MachineInfo | None:
        """:func:`.commands.parse_inspect` of an inspected container, with this engine's architecture."""
        return cmd.parse_inspect(data, self.architecture())

    def exec_root(self, name: str, script: str, *, input: str | None = None,
                  timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run shell ``script`` as root in container ``name``."""
        argv = cmd.exec_(name, script, user="root", stdin=input is not None)
        return self.call(argv, input=input, timeout=timeout, check=check)

    def removed_elsewhere(self, cid: str, proc: subprocess.CompletedProcess[str]) -> bool:
        """Whether ``docker rm`` of container ``cid`` (``proc``) was refused because another
        process (a session's watcher, a prune) removes it; then returns once it is gone (at most
        the call timeout), as ``docker ps -a`` lists it until then."""
        if REMOVING not in proc.stderr:
            return False
        deadline = time.monotonic() + settings.call_timeout()
        while self.call(cmd.inspect(cid, "{{.Id}}"), check=False).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        return True

    def remove_image(self, image: str) -> None:
        """Remove ``image`` unless a container still uses it (or it is gone)."""
        self.call(cmd.remove_image(image), ok=("conflict", "No such image"))

    @contextmanager
    def removed_on_failure(self, name: str, image: str | None = None) -> Iterator[None]:
        """Remove container ``name`` (and ``image``) if the block raises, then re-raise."""
        try:
            yield
        except BaseException:
            try:
                self.call(cmd.delete(name), check=False)
                if image:
                    self.remove_image(image)
            except MachineError:
                pass  # the original error matters more
            raise

    def ensure_network(self) -> None:
        """Create network ``pytest-orbstack`` unless it exists. Docker 20.10 lets two concurrent
        creates make two networks of one name (then every ``run`` fails as "ambiguous"), so
        creation happens under a lock, and a duplicate left by older versions is removed."""
        if self._network_ready:
            return
        with FileLock(settings.lock_path("network"), timeout=settings.NETWORK_LOCK_WAIT):
            ids = self.call(cmd.network_ids()).stdout.split()
            if not ids:
                self.call(cmd.network_create(), ok=("already exists",))
            for extra in ids[1:]:  # keep the first; one in use stays ("has active endpoints")
                self.call(cmd.network_remove(extra), ok=("active endpoints", "not found"))
        self._network_ready = True

    def architecture(self) -> str:
        """The engine's architecture, asked once per process and engine (``docker info``)."""
        key = (self.docker, self.host() or "")
        if key not in _ARCHITECTURES:
            arch = self.call(cmd.architecture()).stdout.strip()
            _ARCHITECTURES[key] = ARCHES.get(arch, arch)
        return _ARCHITECTURES[key]

    def refusal(self, name: str, proc: subprocess.CompletedProcess[bytes], engine: str) -> MachineError | None:
        """A stopped machine (killed, stopped from outside, or its engine restarted: ``docker
        exec`` says "Container ... is not running") or an engine gone, rather than the command's
        own exit code; None for the command's own failure."""
        stderr = proc.stderr.decode(errors="replace")
        if any(stderr.startswith(s) for s in self.unreachable):
            return self.error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
        if not self.not_running.fullmatch(stderr):
            return None
        state = (self.find(name) or {}).get("State") or {}
        how = f" (exit code {state['ExitCode']} at {state['FinishedAt'][:19]}Z)" if "ExitCode" in state else ""
        return MachineError(f"machine {name} is not running{how}: it was stopped or killed, or the "
                            f"{engine} engine restarted", stderr=stderr, returncode=proc.returncode)

    def raise_if_stopped(self, name: str, proc: subprocess.CompletedProcess[str]) -> None:
        """MachineError with the machine's last log line when ``proc`` (a readiness wait) says
        the machine ended while booting."""
        if any(word in proc.stderr for word in self.stopped_words):
            tail = self.call(cmd.logs(name, tail=5), check=False)
            last = last_line(tail.stdout + tail.stderr, last_line(proc.stderr))
            raise MachineError(f"machine {name} stopped while booting: {last}{boot_failure_hint(self.engine_url())}")
