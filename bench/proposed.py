"""Fixes that docs/performance.md names for pytest_orbstack/ and that the package does not have
yet (as of commit 29fc496), applied here so their effect can be measured side by side without
touching the package. Benchmarks only.

``ProposedDockerBackend(DockerBackend)``:

* ``delete`` does not run ``docker rmi pytest-orbstack-snapshot:NAME`` for every machine (only
  golden machines have a snapshot; ``delete_snapshot``, which Lifecycle would call when it
  deletes a golden machine, removes it);
* ``default_user`` is remembered per machine (the label it reads never changes), so commands
  run as the default user (``user=None``) no longer cost a ``docker container inspect`` each.

``no_stdin_testinfra_host``: testinfra commands through ``docker exec`` without ``-i``.

``PersistentShell``: prototype of commands without one ``docker exec`` per command.
"""

from __future__ import annotations

from pytest_orbstack.backends.docker import DockerBackend
from pytest_orbstack.backends.docker_commands import LABEL


class ProposedDockerBackend(DockerBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._users: dict[str, str] = {}

    def default_user(self, name: str) -> str:
        if name not in self._users:
            self._users[name] = super().default_user(name)
        return self._users[name]

    def delete(self, name: str) -> None:
        self._users.pop(name, None)
        data = self._inspect(name)
        self.call(["docker", "rm", "-f", "-v", data["Id"]])
        clone_image = (data["Config"].get("Labels") or {}).get(f"{LABEL}.clone-image")
        if clone_image:
            self._remove_image(clone_image)

    def delete_snapshot(self, name: str) -> None:
        self._remove_image(f"pytest-orbstack-snapshot:{name}")


def use_in_pytest() -> None:
    """Make the pytest plugin of this process use ProposedDockerBackend for ``docker`` (called
    from a generated conftest.py of an inner pytest run; xdist workers import it too)."""
    import pytest_orbstack.state as plugin
    real = plugin.get_backend

    def get_backend(kind=None):
        backend = real(kind)
        return ProposedDockerBackend() if backend.kind == "docker" else backend
    plugin.get_backend = get_backend


class PersistentShell:
    """Prototype: commands without a ``docker exec`` each. One ``docker exec -i``
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
    """A testinfra Host like ``orbstack://USER@NAME`` whose ``docker exec`` has no
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
