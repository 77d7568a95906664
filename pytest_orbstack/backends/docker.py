"""Machines on Docker: containers running systemd that behave like OrbStack machines.

Each machine is a container with systemd as PID 1 (the flags of :data:`SYSTEMD_FLAGS`, never
``--privileged``) on the bridge network ``pytest-orbstack``, where other machines reach it as
``NAME.orb.local``; ``host.orb.internal`` is the engine's host. Machines are found again through
their labels (``pytest-orbstack=1``, ``.user``, ``.image``), so every process using the same
engine sees the same machines. Every docker call is an argv list with a timeout, and nothing
assumes the engine is local (``DOCKER_HOST`` is honoured): files move through ``docker exec``.
"""

from __future__ import annotations

import builtins
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from .. import cloudinit
from ..errors import (
    CommandTimeout,
    EngineUnavailable,
    MachineExists,
    MachineNotFound,
    OrbStackError,
    UnknownImage,
)
from ..inputs import USER_RE, check_cloud_init, check_user, image_codename
from ..names import validate_machine_name
from ..orbctl import Image, Machine, MachineInfo
from ..registry import lock_path
from .base import READY_STATES, Backend

LABEL = "pytest-orbstack"
NETWORK = "pytest-orbstack"
SYSTEMD_FLAGS = ("--cap-add", "SYS_ADMIN", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                 "--tmpfs", "/run", "--tmpfs", "/run/lock", "--security-opt", "seccomp=unconfined",
                 "--stop-signal", "SIGRTMIN+3")  # docker 20.10 refuses STOPSIGNAL in commit --change
# what a machine needs -> the Debian package that provides it
REQUIRED = {"systemctl": "systemd", "sudo": "sudo", "ip": "iproute2", "ps": "procps",
            "getent": "libc-bin", "useradd": "passwd", "/sbin/init": "systemd-sysv"}
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"
SETUP_DONE = "pytest-orbstack-setup-done"


def default_login(user: str | None) -> str:
    """The machine's default user: ``user``, else ``$USER`` if valid and not root, else ``dev``."""
    checked = check_user(user)
    if checked is not None:
        return checked
    env_user = os.environ.get("USER", "")
    return env_user if env_user != "root" and USER_RE.match(env_user) else "dev"


def _last_line(text: str, fallback: str = "") -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else fallback


class DockerBackend(Backend):
    """Machines as systemd containers on a Docker engine (``env`` extends os.environ)."""

    kind = "docker"
    pull_timeout = 120.0

    def __init__(self, docker: str = "docker", env: dict[str, str] | None = None) -> None:
        self.docker = docker
        self.env_overrides = dict(env or {})
        self.env = {**os.environ, **env} if env else None
        self._prepared: set[str] = set()
        self._tags: dict[str, str] = {}
        self._users: dict[str, str] = {}  # machine -> default user
        self._network_ready = False
        self._arch: str | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _docker(self, *args: str, timeout: float = 120.0, check: bool = True, ok: tuple[str, ...] = (),
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``. A failure raises the matching typed error, unless ``check`` is
        false or the stderr contains one of ``ok``; the process is returned then."""
        argv = [self.docker, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, input=input, env=self.env,
                                  stdin=subprocess.DEVNULL if input is None else None, timeout=timeout)
        except FileNotFoundError:
            raise EngineUnavailable(f"{self.docker} not found on PATH: install Docker "
                                    "(apt-get install docker.io) or use OrbStack", argv=argv) from None
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"docker {' '.join(args[:2])} did not finish in {exc.timeout:.0f}s",
                                 argv=argv) from None
        if check and proc.returncode != 0 and not any(s in proc.stderr for s in ok):
            raise self._error(argv, proc)
        return proc

    def _error(self, argv: list[str], proc: subprocess.CompletedProcess[str]) -> OrbStackError:
        stderr = (proc.stderr or "").strip()
        last = _last_line(stderr, f"exit status {proc.returncode}")
        kwargs: dict[str, Any] = dict(stderr=stderr, argv=argv, returncode=proc.returncode)
        if any(s in stderr for s in ("Cannot connect to the Docker daemon", "error during connect",
                                     "permission denied while trying to connect")):
            host = (self.env or os.environ).get("DOCKER_HOST")
            where = f"DOCKER_HOST={host}" if host else "the local socket"
            return EngineUnavailable(f"docker daemon not answering at {where}: {last}", **kwargs)
        error = MachineNotFound if "No such container" in stderr else OrbStackError
        verb = " ".join(arg for arg in argv[1:3] if not arg.startswith("-"))
        return error(f"docker {verb}: {last}", **kwargs)

    def _find(self, name: str) -> dict[str, Any] | None:
        """``docker container inspect`` of the container named exactly ``name``, or None."""
        proc = self._docker("container", "inspect", validate_machine_name(name), ok=("No such",))
        data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        return data[0] if data and data[0]["Name"] == f"/{name}" else None

    def _inspect(self, name: str) -> dict[str, Any]:
        """Like :meth:`_find`, for a machine: MachineNotFound unless this package made it."""
        data = self._find(name)
        if data is None or (data["Config"].get("Labels") or {}).get(LABEL) != "1":
            raise MachineNotFound(f"machine not found: {name!r}")
        return data

    def _exec_root(self, name: str, script: str, *, input: str | None = None,
                   timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._docker("exec", *(["-i"] if input is not None else []), "-u", "root", name,
                            "sh", "-c", script, input=input, timeout=timeout, check=check)

    # -- images and network -----------------------------------------------------------------
    def _base_image_id(self, image: str, base: str) -> str:
        """Id of docker image ``base``, pulled if missing; UnknownImage if it can't be had."""
        inspect = ("image", "inspect", "-f", "{{.Id}}", base)
        proc = self._docker(*inspect, ok=("No such image",))
        if proc.returncode == 0:
            return proc.stdout.strip()
        try:
            pull = self._docker("pull", base, timeout=self.pull_timeout, check=False)
            reason = _last_line(pull.stderr, f"exit status {pull.returncode}") if pull.returncode else ""
        except CommandTimeout:
            reason = f"docker pull {base} timed out after {self.pull_timeout:.0f}s"
        if reason:
            raise UnknownImage(f"image {image!r} is not available to docker: {reason}; "
                               "load or build it first")
        return self._docker(*inspect).stdout.strip()

    def _prepared_image(self, image: str) -> str:
        """Tag of the image machines of ``image`` run: the base plus what a machine needs,
        built once per base image id (a file lock makes concurrent processes wait)."""
        if image in self._tags:  # one session does not see its base image change under it
            return self._tags[image]
        distro, codename = image_codename(image)
        base = f"{distro}:{codename}"
        short_id = self._base_image_id(image, base).split(":")[-1][:12]
        tag = f"pytest-orbstack/{distro}:{codename}-{short_id}"
        if tag not in self._prepared:
            with FileLock(lock_path(f"image-{distro}-{codename}-{short_id}"), timeout=900):
                if self._docker("image", "inspect", tag, check=False).returncode != 0:
                    self._build_prepared(image, base, tag)
            self._prepared.add(tag)
        self._tags[image] = tag
        return tag

    def _build_prepared(self, image: str, base: str, tag: str) -> None:
        temp = f"pytest-orbstack-prepare-{uuid.uuid4().hex[:12]}"
        self._docker("run", "-d", "--name", temp, "--user", "root", "--entrypoint", "sleep", base,
                     "infinity")
        try:
            self._add_missing_tools(image, temp)
            # an empty machine-id makes systemd give each machine its own on first boot
            self._exec_root(temp, "[ ! -s /etc/machine-id ] || : > /etc/machine-id; [ ! -f "
                                  "/var/lib/dbus/machine-id ] || ln -sf /etc/machine-id /var/lib/dbus/")
            # commit ignores 'ENTRYPOINT []' (sleep would stay); an ENTRYPOINT also resets CMD
            self._docker("commit", "--change", 'ENTRYPOINT ["/sbin/init"]', temp, tag, timeout=600)
        finally:
            self._docker("rm", "-f", "-v", temp, check=False, timeout=60)

    def _add_missing_tools(self, image: str, container: str) -> None:
        """apt-get install what provides the missing :data:`REQUIRED` tools; UnknownImage if
        something is missing and can't be installed."""
        check = (f"for c in {' '.join(REQUIRED)}; do "
                 "command -v $c >/dev/null 2>&1 || [ -x \"$c\" ] || echo $c; done")
        missing = self._exec_root(container, check).stdout.split()
        if not missing:
            return
        packages = " ".join(sorted({REQUIRED[tool] for tool in missing}))
        script = ("command -v apt-get >/dev/null || exit 3; export DEBIAN_FRONTEND=noninteractive; "
                  f"apt-get update -q && apt-get install -y -q --no-install-recommends {packages}")
        proc = self._exec_root(container, script, timeout=900, check=False)
        if proc.returncode == 0 and not self._exec_root(container, check).stdout.split():
            return
        why = ("it has no apt-get to install them" if proc.returncode == 3
               else f"apt-get install {packages} failed: {_last_line(proc.stderr or proc.stdout)}")
        raise UnknownImage(f"image {image!r} cannot run as a machine on docker: it lacks "
                           f"{', '.join(missing)} and {why}")

    def _ensure_network(self) -> None:
        """Create network ``pytest-orbstack`` unless it exists. Docker 20.10 lets two concurrent
        creates make two networks of one name (then every ``run`` fails as "ambiguous"), so
        creation happens under a lock, and a duplicate left by older versions is removed."""
        if self._network_ready:
            return
        with FileLock(lock_path("network"), timeout=120):
            ids = self._docker("network", "ls", "-q", "--no-trunc", "--filter",
                               f"name=^{NETWORK}$").stdout.split()
            if not ids:
                self._docker("network", "create", "--label", f"{LABEL}=1", NETWORK,
                             ok=("already exists",))
            for extra in ids[1:]:  # keep the first; one in use stays ("has active endpoints")
                self._docker("network", "rm", extra, ok=("active endpoints", "not found"))
        self._network_ready = True

    def _remove_image(self, image: str) -> None:
        self._docker("rmi", image, ok=("conflict", "No such image"))

    # -- machines ---------------------------------------------------------------------------
    def _run_container(self, name: str, image_ref: str, labels: dict[str, str]) -> None:
        """``docker run`` machine ``name``; a failed run leaves no container behind."""
        self._ensure_network()
        args = ["run", "-d", "--name", name, "--hostname", name, *SYSTEMD_FLAGS, "--network", NETWORK,
                "--network-alias", f"{name}.orb.local", "--add-host", "host.orb.internal:host-gateway"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        proc = self._docker(*args, image_ref, check=False)
        if proc.returncode != 0:
            if "is already in use" in proc.stderr:
                raise MachineExists(f"machine already exists: {name!r}", stderr=proc.stderr)
            self._docker("rm", "-f", "-v", name, check=False, timeout=60)
            raise self._error([self.docker, *args], proc)

    @contextmanager
    def _removed_on_failure(self, name: str, image: str | None = None) -> Iterator[None]:
        """Remove container ``name`` (and ``image``) if the block raises, then re-raise."""
        try:
            yield
        except BaseException:
            try:
                self._docker("rm", "-f", "-v", name, check=False, timeout=60)
                if image:
                    self._remove_image(image)
            except OrbStackError:
                pass  # the original error matters more
            raise

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | os.PathLike[str] | None = None,
               labels: dict[str, str] | None = None) -> MachineInfo:
        """Run ``name`` from ``image``, wait for systemd, add the default user (passwordless
        sudo), then apply ``cloud_init``, whose failure is only logged (as on OrbStack)."""
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        script = self._cloud_init_script(cloud_init)
        ref = self._prepared_image(image)
        # a name in use fails `docker run` itself ("is already in use" -> MachineExists)
        self._run_container(name, ref, {**(labels or {}), LABEL: "1", f"{LABEL}.user": login,
                                        f"{LABEL}.image": image})
        with self._removed_on_failure(name):
            setup = None
            if login != "root":  # added while systemd boots, in the first readiness probe
                q, sudoers = shlex.quote(login), "/etc/sudoers.d/90-pytest-orbstack"
                setup = (f"(id -u {q} >/dev/null 2>&1 || useradd -m -s /bin/bash {q}) && "
                         f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q} > {sudoers} && chmod 0440 {sudoers}")
            self.wait_ready(name, setup=setup)
            if script is not None:
                self._apply_cloud_init(name, script)
            return self.info(name)

    @staticmethod
    def _cloud_init_script(cloud_init: str | os.PathLike[str] | None) -> str | None:
        path = check_cloud_init(cloud_init)
        return None if path is None else cloudinit.user_data_script(Path(path).read_text())

    def _apply_cloud_init(self, name: str, script: str) -> None:
        """Run the user-data script as root, its output and any failure going to the log."""
        path, log = "/var/lib/pytest-orbstack/user-data", CLOUD_INIT_LOG
        runner = (f"mkdir -p /var/lib/pytest-orbstack && cat > {path} && chmod 0700 {path} && "
                  f"{{ {path}; rc=$?; }} >> {log} 2>&1; [ $rc = 0 ] || "
                  f"echo \"pytest-orbstack: cloud-init user-data failed (exit $rc)\" >> {log}")
        try:
            self._exec_root(name, runner, input=script, timeout=900)
        except CommandTimeout:
            self._exec_root(name, f"echo 'pytest-orbstack: cloud-init user-data timed out' >> {log}")

    def clone(self, source: str, name: str, *, labels: dict[str, str] | None = None,
              frozen_source: bool = False) -> MachineInfo:
        """Commit ``source`` to an image and run ``name`` from it like :meth:`create` (own
        hostname); the source keeps running. With ``frozen_source`` (a golden machine that no
        longer changes) one snapshot image of the source serves every clone; it goes with the
        source."""
        validate_machine_name(name)
        source_labels = self._inspect(source)["Config"].get("Labels") or {}
        if self._find(name) is not None:
            raise MachineExists(f"machine already exists: {name!r}")
        if frozen_source:
            image, owned = self._snapshot(source), None
        else:
            image = owned = f"pytest-orbstack-clone:{name}"
            self._docker("commit", "--change", f"LABEL {LABEL}.clone-of={source}", source, image,
                         timeout=600)
        labels = {**(labels or {}), LABEL: "1",
                  **{k: source_labels.get(k, "") for k in (f"{LABEL}.user", f"{LABEL}.image")}}
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

    def _snapshot(self, source: str) -> str:
        """The snapshot image of ``source``, committed once (a file lock spans processes)."""
        image = f"pytest-orbstack-snapshot:{source}"
        with FileLock(lock_path(f"snapshot-{source}"), timeout=600):
            if self._docker("image", "inspect", image, check=False).returncode != 0:
                self._docker("commit", "--change", f"LABEL {LABEL}.snapshot-of={source}", source,
                             image, timeout=600)
        return image

    def start(self, name: str) -> None:
        self._docker("start", self._inspect(name)["Id"])
        self.wait_ready(name)

    def stop(self, name: str) -> None:
        self._docker("stop", "-t", "10", self._inspect(name)["Id"], timeout=60)

    def delete(self, name: str) -> None:
        """Remove the container and its volumes, and its clone image unless still in use."""
        data = self._inspect(name)
        self._users.pop(name, None)
        self._docker("rm", "-f", "-v", data["Id"])
        clone_image = (data["Config"].get("Labels") or {}).get(f"{LABEL}.clone-image")
        if clone_image:
            self._remove_image(clone_image)
        self._remove_image(f"pytest-orbstack-snapshot:{name}")  # if it was a frozen source

    def info(self, name: str) -> MachineInfo:
        data = self._inspect(name)
        labels = data["Config"].get("Labels") or {}
        running = bool(data["State"]["Running"])
        net = ((data["NetworkSettings"].get("Networks") or {}).get(NETWORK) or {}) if running else {}
        machine = self._machine(data["Id"], name, running, labels.get(f"{LABEL}.user"),
                                labels.get(f"{LABEL}.image", ""))
        return MachineInfo(machine, ip4=net.get("IPAddress") or None,
                           ip6=net.get("GlobalIPv6Address") or None)

    def list(self) -> list[Machine]:
        fmt = "\t".join(["{{.ID}}", "{{.Names}}", "{{.State}}",
                         *(f'{{{{.Label "{LABEL}.{key}"}}}}' for key in ("user", "image"))])
        out = self._docker("ps", "-a", "--no-trunc", "--filter", f"label={LABEL}=1", "--format", fmt).stdout
        rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 4]
        return sorted((self._machine(cid, name, state == "running", user or None, image)
                       for cid, name, state, user, image in rows), key=lambda m: m.name)

    def _machine(self, cid: str, name: str, running: bool, user: str | None, image: str) -> Machine:
        try:
            distro, codename = image_codename(image)
        except UnknownImage:
            distro, codename = "", ""
        if self._arch is None:
            arch = self._docker("info", "-f", "{{.Architecture}}").stdout.strip()
            self._arch = ARCHES.get(arch, arch)
        return Machine(id=cid, name=name, image=Image(distro, codename, self._arch),
                       state="running" if running else "stopped", default_username=user)

    def exec_argv(self, name: str, command: str, *, user: str | None = None,
                  workdir: str | None = None) -> builtins.list[str]:
        """``docker exec -i -u USER [-w DIR] NAME sh -c COMMAND``, with ``-H HOST`` first when
        ``env`` sets DOCKER_HOST (the argv runs in the caller's environment, not ``env``)."""
        validate_machine_name(name)
        host = ["-H", self.env_overrides["DOCKER_HOST"]] if "DOCKER_HOST" in self.env_overrides else []
        if user is None:  # the label never changes: one inspect per machine, not per command
            user = self._users.get(name) or self._users.setdefault(name, self.default_user(name))
        argv = [self.docker, *host, "exec", "-i", "-u", user]
        return argv + (["-w", workdir] if workdir else []) + [name, "sh", "-c", command]

    def logs(self, name: str) -> str:
        """``docker logs``, and when running the boot journal and the cloud-init output."""
        data = self._inspect(name)
        proc = self._docker("logs", data["Id"], check=False)
        parts = [proc.stdout + proc.stderr]
        if data["State"]["Running"]:
            parts.append(self._exec_root(name, (
                f"journalctl -b --no-pager -n 300 2>&1; if [ -s {CLOUD_INIT_LOG} ]; then "
                f"echo '--- {CLOUD_INIT_LOG} ---'; cat {CLOUD_INIT_LOG}; fi")).stdout)
        return "\n".join(part for part in parts if part)

    def wait_ready(self, name: str, timeout: float = 90.0, *, setup: str | None = None) -> str:
        """Wait for systemd in ``name`` (running or degraded), running ``setup`` as root first.

        One ``docker exec`` does it all: ``setup``, a wait for systemd's socket, then
        ``systemctl is-system-running --wait``; polling follows only if that did not end ready.
        Fails at once if the container exits while booting."""
        probe = (f"until [ -S /run/systemd/private ]; do sleep 0.05; done; "
                 f"timeout {int(timeout)} systemctl is-system-running --wait")
        if setup is not None:
            probe = f"{{ {setup}; }} >&2 && echo {SETUP_DONE}; {probe}"
        proc = self._exec_root(name, probe, check=False, timeout=timeout + 30)
        self._raise_if_stopped(name, proc)
        words = proc.stdout.split()
        if setup is not None and SETUP_DONE not in words:
            raise OrbStackError(f"default user setup failed in {name}: {_last_line(proc.stderr)}",
                                stderr=proc.stderr)
        if words and words[-1] in READY_STATES:
            return words[-1]
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = self._exec_root(name, "systemctl is-system-running", check=False, timeout=30)
            state = proc.stdout.strip()
            if state in READY_STATES:
                return state
            self._raise_if_stopped(name, proc)
            time.sleep(0.2)
        raise CommandTimeout(f"machine {name} did not finish booting in {timeout:.0f}s "
                             f"(systemd state: {state or 'unknown'})")

    def _raise_if_stopped(self, name: str, proc: subprocess.CompletedProcess[str]) -> None:
        if "is not running" in proc.stderr or "No such container" in proc.stderr:
            tail = self._docker("logs", "--tail", "5", name, check=False)
            raise OrbStackError(f"machine {name} stopped while booting: "
                                f"{_last_line(tail.stdout + tail.stderr, _last_line(proc.stderr))}")
