"""The @orbstack connector's output and engine, against a real Docker machine
(the live output and both streams: on Incus and Podman too).

Output reaches the terminal line by line while a command runs, stdout and stderr in the order
they were written, under the pyinfra CLI (gevent monkey-patched) and through the API (not
patched); the engine object handed to ``apply_deploy`` is the one the connector uses; the
control arguments keep working; the connector documents itself as pyinfra's docs read it.
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import subprocess
import sys
import threading
import time

import pytest
from incusenv import incus_machine
from podmanenv import podman_machine
from pyinfra import host
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.connect import disconnect_all
from pyinfra.api.connectors import get_all_connectors
from pyinfra.facts.server import Command
from pyinfra.operations import server
from pyinfra_runs import apply_deploy

import pytest_orbstack.pyinfra.connector as connector_module
from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.docker.backend import DockerBackend
from pytest_orbstack.pyinfra.connector import OrbStackConnector

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# out1/err1/out2 close together, then a pause: a connector that prints only when the command
# ends shows all four at once, and one that prints stdout before stderr shows err1 after out2
SCRIPT = "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; echo out2; sleep 2; echo err2 >&2"
MARKERS = ("out1", "err1", "out2", "err2")
DOCKER_SOCKET = "unix:///var/run/docker.sock"


class CountingDocker(DockerBackend):
    """A Docker engine that counts the commands it is asked to build."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.execs = 0

    def exec_argv(self, *args, **kwargs):
        self.execs += 1
        return super().exec_argv(*args, **kwargs)


@pytest.fixture(scope="module")
def machine(request) -> str:
    engine = get_backend("docker")
    name = f"co-{secrets.token_hex(3)}"
    request.addfinalizer(lambda: engine.delete_if_exists(name))  # also after a failed create
    engine.create(name, "debian:bookworm")
    return name


@pytest.fixture(scope="module", params=["docker", "incus", "podman"])
def engine_machine(request, machine) -> tuple[str, str]:
    """(engine name, machine) on Docker (``machine``), on Incus and on Podman."""
    if request.param == "docker":
        return "docker", machine
    made = incus_machine if request.param == "incus" else podman_machine
    return request.param, made(request, "co")[1]


def _marker(line: str) -> str | None:
    """``out1`` for the output line ``[@orbstack/NAME] out1`` (not for the ``>>>`` input line)."""
    text = ANSI.sub("", line).strip()
    return next((word for word in MARKERS if text.endswith(f"] {word}")), None)


def test_cli_shows_each_line_as_it_comes_in_order(engine_machine):
    kind, machine = engine_machine
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", "-vvv", f"@orbstack/{machine}",
                             "exec", "--data", f"orbstack_backend={kind}", "--", SCRIPT],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    seen: dict[str, float] = {}
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            word = _marker(line)
            if word:
                seen.setdefault(word, time.monotonic())
        assert proc.wait() == 0, "".join(lines)
    finally:
        watchdog.cancel()
    assert list(seen) == list(MARKERS), "".join(lines)  # arrival order = the order written
    assert seen["err2"] - seen["out2"] > 1.5, seen  # out2 was shown while the command still ran


def test_api_run_collects_both_streams_and_stays_interruptible(engine_machine):
    """Under pytest (pyinfra's API, no monkey patching) nobody watches the output live, and a
    wait inside gevent's hub would delay Ctrl-C (tests/plugin/test_endings.py): the pipes are
    read at once and every line of both streams is kept."""
    from gevent import monkey
    assert not monkey.is_module_patched("subprocess")
    kind, machine = engine_machine
    inventory = Inventory(([(f"@orbstack/{machine}", {"orbstack_backend": kind})], {}))
    state = State(inventory, Config())
    target = inventory.get_host(f"@orbstack/{machine}")
    target.connect(raise_exceptions=True)
    try:
        ok, output = target.run_shell_command(StringCommand(SCRIPT))
    finally:
        disconnect_all(state)
    assert ok
    assert sorted((line.buffer_name, line.line) for line in output) == [
        ("stderr", "err1"), ("stderr", "err2"), ("stdout", "out1"), ("stdout", "out2")]


def test_apply_deploy_uses_the_engine_object_it_is_given(machine, monkeypatch):
    # the process environment points at no daemon: an engine rebuilt from the kind string
    # could not reach the machine; the one handed over has its own DOCKER_HOST
    engine = CountingDocker(env={"DOCKER_HOST": DOCKER_SOCKET})
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(connector_module, "get_backend", lambda *_: pytest.fail("engine rebuilt"))
    seen = {}

    def deploy():
        seen["engine"] = host.connector.backend
        server.shell(name="hi", commands=["true"])

    result = apply_deploy(machine, deploy, backend=engine)
    assert result.success, result.summary()
    assert seen["engine"] is engine
    assert engine.execs >= 1
    assert engine.exec_argv(machine, "true", user="root")[:3] == ["docker", "-H", DOCKER_SOCKET]


def test_apply_deploy_still_takes_a_kind_string(machine):
    result = apply_deploy(machine, lambda: server.shell(name="hi", commands=["true"]), backend="docker")
    assert result.success, result.summary()


def test_timeout_exit_codes_stdin_and_pty(machine):
    values = {}

    def deploy():
        values["str"] = host.get_fact(Command, command="cat", _stdin="one\ntwo")
        values["lines"] = host.get_fact(Command, command="wc -l", _stdin=["a", "b", "c"])
        server.shell(name="exit 3 is fine here", commands=["exit 3"], _success_exit_codes=[3])
        server.shell(name="wants a pty", commands=["true"], _get_pty=True, _ignore_errors=True)
        server.shell(name="too slow", commands=["sleep 30"], _timeout=2)

    started = time.monotonic()
    result = apply_deploy(machine, deploy, backend=DockerBackend())
    assert time.monotonic() - started < 20  # the 30 s command was cut at 2 s
    assert values == {"str": "one\ntwo", "lines": "3"}
    ops = {op.name: op for op in result.operations}
    assert ops["exit 3 is fine here"].ran and ops["exit 3 is fine here"].success
    assert "_get_pty=True is not supported by @orbstack" in ops["wants a pty"].stderr
    assert [op.name for op in result.failed] == ["too slow"]
    assert not result.success


def test_connector_documents_itself_as_pyinfras_docs_read_it():
    assert get_all_connectors()["orbstack"] is OrbStackConnector  # the docs list entry points
    doc = inspect.getdoc(OrbStackConnector) or ""
    for usage in ("pyinfra @orbstack/web deploy.py", "pyinfra @orbstack deploy.py",
                  "--data orbstack_backend=docker"):
        assert usage in doc
    meta = OrbStackConnector.data_meta
    public = {key for key in meta if not key.startswith("_")}  # the docs skip private keys
    assert public == {"orbstack_machine", "orbstack_backend", "orbstack_user"}
    assert all(meta[key].description for key in public)
    assert all(hasattr(meta[key], "default") for key in meta)
    assert meta["orbstack_backend"].default is None and meta["orbstack_user"].default is None
    assert set(meta) == set(OrbStackConnector.data_cls.__annotations__)


def test_every_machine_form_honours_the_data_flag(machine):
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    env["PATH"] = "/usr/bin:/bin"  # no orbctl: auto would pick docker too, the flag must decide
    # --limit: other tests' machines come and go meanwhile; only ours is connected to
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "@orbstack", "--limit", f"@orbstack/{machine}",
                           "exec", "--data", "orbstack_backend=docker", "--", "hostname"],
                          capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"[@orbstack/{machine}] Connected" in out or f"@orbstack/{machine}" in out, out
    assert "@orbstack/pto-" not in out  # pytest sessions' machines are not ours to touch
    explicit = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "@orbstack", "exec", "--data",
                               "orbstack_backend=orbstack", "--", "hostname"], capture_output=True,
                              text=True, env=env, timeout=300)
    assert explicit.returncode != 0 and "'orbctl' not found on PATH" in explicit.stdout + explicit.stderr
