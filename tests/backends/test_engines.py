"""The engine registry: one table name -> backend class, ``auto`` resolved once per process, the
only place in the package that makes a backend object; engine-specific text on the backend."""

from __future__ import annotations

import ast
import stat
from pathlib import Path

import pytest

import pytest_orbstack
from pytest_orbstack import backends
from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import EngineUnavailable

PACKAGE = Path(pytest_orbstack.__file__).parent


@pytest.mark.parametrize("name", list(backends.ENGINES))
def test_each_engine_is_its_backend_class(name: str) -> None:
    cls = backends.backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name
    engine = backends.get_backend(name)
    assert type(engine) is cls and engine.name == name == engine.kind


def test_login_and_start_hints_come_from_the_engine() -> None:
    docker, orbstack = backends.get_backend("docker"), backends.get_backend("orbstack")
    assert docker.login_command("pto-a-b") == "docker exec -it pto-a-b bash -l"
    assert docker.start_command("web") == "docker start web"
    assert orbstack.login_command("web") == "orb -m web"
    assert orbstack.start_command("web") == "orbctl start web"
    incus = backends.get_backend("incus")
    assert incus.login_command("web") == "incus exec web -- bash -l"
    assert incus.start_command("web") == "incus start web"
    podman = backends.get_backend("podman")
    assert podman.login_command("web") == "podman exec -it web bash -l"
    assert podman.start_command("web") == "podman start web"


def test_an_unknown_engine_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    choices = "auto, orbstack, podman, docker, incus"
    with pytest.raises(EngineUnavailable, match=rf"^unknown backend 'podmn': choose one of {choices}$"):
        backends.get_backend("podmn")
    monkeypatch.setenv("PYTEST_ORBSTACK_BACKEND", "Docker")
    assert backends.resolve_name(None) == "docker"


def test_auto_is_resolved_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``orbctl`` answering: Docker; an ``orbctl`` that answers appearing later does not change
    this process's choice (until the cache is cleared, as a new process would)."""
    monkeypatch.delenv("PYTEST_ORBSTACK_BACKEND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    backends._auto.cache_clear()
    try:
        assert backends.resolve_name("auto") == "docker"
        orbctl = tmp_path / "orbctl"
        orbctl.write_text("#!/bin/sh\nexit 0\n")
        orbctl.chmod(orbctl.stat().st_mode | stat.S_IXUSR)
        assert backends.resolve_name("auto") == "docker"
        assert backends.resolve_name(None) == "docker"
        backends._auto.cache_clear()
        assert backends.resolve_name("auto") == "orbstack"
    finally:
        backends._auto.cache_clear()


def test_auto_takes_podman_only_on_a_host_without_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``podman`` that answers and no ``docker``: Podman; with a ``docker`` command too: Docker."""
    monkeypatch.delenv("PYTEST_ORBSTACK_BACKEND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    podman = tmp_path / "podman"
    podman.write_text("#!/bin/sh\necho amd64\n")
    podman.chmod(podman.stat().st_mode | stat.S_IXUSR)
    backends._auto.cache_clear()
    try:
        assert backends.resolve_name("auto") == "podman"
        (tmp_path / "docker").symlink_to(podman)
        backends._auto.cache_clear()
        assert backends.resolve_name("auto") == "docker"
    finally:
        backends._auto.cache_clear()


def _tool(folder: Path, name: str, code: int) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\nexit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("docker", "incus", "chosen"), [
    (None, None, "docker"), (1, None, "docker"), (0, 0, "docker"), (1, 0, "incus"), (None, 0, "incus"),
    (None, 1, "docker")])
def test_auto_picks_incus_only_when_docker_does_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          docker: int | None, incus: int | None,
                                                          chosen: str) -> None:
    """Docker before Incus (either answering: its exit code; None: not on PATH); neither: Docker."""
    monkeypatch.delenv("PYTEST_ORBSTACK_BACKEND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    for name, code in (("docker", docker), ("incus", incus)):
        if code is not None:
            _tool(tmp_path, name, code)
    backends._auto.cache_clear()
    try:
        assert backends.resolve_name("auto") == chosen
    finally:
        backends._auto.cache_clear()


def test_only_the_registry_makes_backend_objects() -> None:
    """No module of the package calls a backend class (tests may)."""
    classes = {backends.ENGINES[name].rpartition(":")[2] for name in backends.ENGINES}
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes:
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls == []


def test_a_docker_engine_elsewhere_is_named_in_hints_and_its_host_reached_as_docker_reaches_it() -> None:
    from pytest_orbstack.backends.docker.backend import DockerBackend
    from pytest_orbstack.backends.docker.engine_host import engine_host
    remote = DockerBackend(env={"DOCKER_HOST": "ssh://ci@build-host:2222"})
    assert remote.login_command("web") == "docker -H ssh://ci@build-host:2222 exec -it web bash -l"
    assert remote.start_command("web") == "docker -H ssh://ci@build-host:2222 start web"
    assert engine_host(None).local and engine_host("unix:///run/docker.sock").local
    ssh = engine_host("ssh://ci@build-host:2222")
    assert not ssh.local and ssh.label() == "the engine's host ssh://ci@build-host:2222"
    assert ssh.prefix == ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222", "-l", "ci",
                          "--", "build-host")
    assert engine_host("tcp://build-host:2376").prefix is None  # no way in: the checks say so
    assert engine_host("tcp://build-host:2376").run(["true"]) is None
