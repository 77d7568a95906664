"""The fixes docs/performance.md proposes for pytest_orbstack/, applied in a subclass so their
effect can be measured side by side without touching the package (benchmarks only).

``ProposedDockerBackend`` differs from ``DockerBackend`` in exactly these points:

1. ``create`` no longer runs ``docker container inspect NAME`` before ``docker run``: a name
   clash already fails ``docker run`` with "is already in use", which ``_run_container`` turns
   into MachineExists.
2. The prepared image tag is cached per image name for the backend's life, so ``create`` no
   longer runs ``docker image inspect BASE`` each time (a session does not see its base image
   change under it; ``--orbstack-prune``/a new session resolves it again).
3. The default user is added in the same ``docker exec`` as the readiness wait instead of one
   more ``docker exec`` after boot (``useradd`` needs no running systemd).
4. Readiness is one ``docker exec`` blocking in ``systemctl is-system-running --wait`` (systemd
   >= 240) instead of a ``docker exec`` every 0.2s: no 0.2s quantization, and no probe
   processes competing with the booting machine for CPU.
5. ``delete`` no longer runs ``docker rmi pytest-orbstack-snapshot:NAME`` for every machine:
   only golden machines have a snapshot, and ``delete_snapshot`` (which Lifecycle would call
   when it deletes a golden machine) removes it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pytest_orbstack.backends.base import READY_STATES
from pytest_orbstack.backends.docker import LABEL, DockerBackend, default_login, image_codename
from pytest_orbstack.errors import OrbStackError
from pytest_orbstack.names import validate_machine_name
from pytest_orbstack.orbctl import MachineInfo

SETUP_DONE = "pytest-orbstack-setup-done"


class ProposedDockerBackend(DockerBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._tags: dict[str, str] = {}

    def _prepared_image(self, image: str) -> str:  # fix 2
        if image not in self._tags:
            self._tags[image] = super()._prepared_image(image)
        return self._tags[image]

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | Path | None = None, labels: dict[str, str] | None = None) -> MachineInfo:
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        script = self._cloud_init_script(cloud_init)
        ref = self._prepared_image(image)  # fix 1: no _find(name) here
        self._run_container(name, ref, {**(labels or {}), LABEL: "1", f"{LABEL}.user": login,
                                        f"{LABEL}.image": image})
        with self._removed_on_failure(name):
            setup = None
            if login != "root":
                q, sudoers = shlex.quote(login), "/etc/sudoers.d/90-pytest-orbstack"
                setup = (f"(id -u {q} >/dev/null 2>&1 || useradd -m -s /bin/bash {q}) && "
                         f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q} > {sudoers} && chmod 0440 {sudoers}")
            self._wait_ready_after(name, setup)  # fix 3
            if script is not None:
                self._apply_cloud_init(name, script)
            return self.info(name)

    def delete(self, name: str) -> None:  # fix 5
        data = self._inspect(name)
        self._docker("rm", "-f", "-v", data["Id"])
        clone_image = (data["Config"].get("Labels") or {}).get(f"{LABEL}.clone-image")
        if clone_image:
            self._remove_image(clone_image)

    def delete_snapshot(self, name: str) -> None:
        self._remove_image(f"pytest-orbstack-snapshot:{name}")

    def _wait_ready_after(self, name: str, setup: str | None, timeout: float = 90.0) -> str:
        """One ``docker exec`` that runs ``setup``, waits for systemd's socket, then blocks in
        ``systemctl is-system-running --wait`` until boot finished (fix 4); falls back to
        DockerBackend.wait_ready's polling if that does not end in a ready state."""
        script = (f"until [ -S /run/systemd/private ]; do sleep 0.05; done; "
                  f"timeout {int(timeout)} systemctl is-system-running --wait")
        if setup is not None:
            script = f"{{ {setup}; }} >&2 && echo {SETUP_DONE}; {script}"
        proc = self._exec_root(name, script, check=False, timeout=timeout + 30)
        lines = proc.stdout.split()
        if "is not running" in proc.stderr or "No such container" in proc.stderr:
            raise OrbStackError(f"machine {name} stopped while booting")
        if setup is not None and SETUP_DONE not in lines:
            raise OrbStackError(f"default user setup failed in {name}: {proc.stderr.strip()}")
        if lines and lines[-1] in READY_STATES:
            return lines[-1]
        return self.wait_ready(name, timeout)


def use_in_pytest() -> None:
    """Make the pytest plugin of this process use ProposedDockerBackend for ``docker`` (called
    from a generated conftest.py of an inner pytest run; xdist workers import it too)."""
    import pytest_orbstack.plugin as plugin
    real = plugin.get_backend

    def get_backend(kind=None):
        backend = real(kind)
        return ProposedDockerBackend() if backend.kind == "docker" else backend
    plugin.get_backend = get_backend


class PersistentShell:
    """Prototype of fix 6 (commands without a ``docker exec`` each): one ``docker exec -i``
    running ``sh`` stays open; each command is written to its stdin and runs in a subshell
    with stdin from /dev/null, followed by a marker line carrying its exit code. Latency
    prototype only: stderr is merged into stdout, no timeouts, no concurrency."""

    def __init__(self, argv: list[str]) -> None:
        import subprocess
        import uuid
        self.marker = f"__pto_{uuid.uuid4().hex}__"
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def run(self, command: str) -> tuple[int, str]:
        self.proc.stdin.write(f"( {command}\n) </dev/null 2>&1; echo \"{self.marker} $?\"\n".encode())
        self.proc.stdin.flush()
        out = []
        for line in iter(self.proc.stdout.readline, b""):
            text = line.decode(errors="replace")
            if text.startswith(self.marker):
                return int(text.split()[1]), "".join(out)
            out.append(text)
        raise EOFError("the shell ended")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def no_stdin_testinfra_host(name: str, engine, user: str = "root"):
    """Fix 7: a testinfra Host like ``orbstack://USER@NAME`` whose ``docker exec`` has no
    ``-i`` (testinfra commands never get stdin; ``-i`` makes the docker CLI attach and close a
    stdin stream for every command)."""
    import subprocess

    import testinfra.host
    from pytest_orbstack.testinfra_backend import OrbStackTestinfraBackend

    class NoStdinBackend(OrbStackTestinfraBackend):
        def run(self, command: str, *args: str, **kwargs):
            cmd = self.get_command(command, *args)
            argv = self.engine.exec_argv(self.name, cmd, user=self.user)
            if "exec" in argv and argv[argv.index("exec") + 1] == "-i":
                del argv[argv.index("exec") + 1]
            proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                  env=self.engine.env)
            return self.result(proc.returncode, self.encode(cmd), proc.stdout, proc.stderr)

    backend = NoStdinBackend(f"{user}@{name}", engine=engine)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
