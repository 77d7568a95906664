"""The @orbstack connector on Docker machines: output streams live through pyinfra's own reader
under the CLI, the Machine's engine object reaches the connector, the control arguments work,
and the connector documents itself the way pyinfra's docs generator reads connectors."""

from __future__ import annotations

import inspect
import os
import secrets
import subprocess
import sys
import time

import pytest
from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import server

from pytest_orbstack.backends.docker import DockerBackend
from pytest_orbstack.connector import OrbStackConnector
from pytest_orbstack.deploy import apply_deploy


class CountingDocker(DockerBackend):
    """A Docker engine that counts the commands it is asked to run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.execs = 0

    def exec_argv(self, *args, **kwargs):
        self.execs += 1
        return super().exec_argv(*args, **kwargs)


@pytest.fixture(scope="module")
def web():
    engine = DockerBackend()
    name = f"cs-{secrets.token_hex(3)}"
    engine.create(name, "debian:bookworm")
    yield name
    engine.delete(name)


def test_output_streams_live_and_interleaved_under_the_cli(web):
    script = "echo out1; echo err1 >&2; sleep 3; echo out2"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    proc = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", "-vvv", f"@orbstack/{web}", "exec",
                             "--data", "orbstack_backend=docker", "--", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: dict[str, float] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        for word in ("out1", "err1", "out2"):
            if line.rstrip().endswith(word) and ">>>" not in line:
                seen.setdefault(word, time.monotonic())
    assert proc.wait() == 0
    assert set(seen) == {"out1", "err1", "out2"}, seen
    assert seen["out2"] - seen["out1"] > 2.0  # out1 was shown while the command still ran
    assert seen["err1"] < seen["out2"]  # stderr in its place, not after all of stdout


def test_the_machines_own_engine_object_reaches_the_connector(web):
    engine = CountingDocker(env={"DOCKER_HOST": "unix:///var/run/docker.sock"})
    result = apply_deploy(web, lambda: server.shell(name="hi", commands=["true"]), backend=engine)
    assert result.success, result.summary()
    assert engine.execs >= 1  # no fresh engine was built from a kind string
    assert engine.exec_argv(web, "true", user="root")[:3] == ["docker", "-H", "unix:///var/run/docker.sock"]


def test_timeout_exit_codes_stdin_and_pty(web):
    values = {}

    def deploy():
        values["stdin"] = host.get_fact(Command, command="cat", _stdin="from stdin")
        server.shell(name="exit 3 is fine here", commands=["exit 3"], _success_exit_codes=[3])
        server.shell(name="too slow", commands=["sleep 30"], _timeout=2, _ignore_errors=True)
        server.shell(name="wants a pty", commands=["true"], _get_pty=True, _ignore_errors=True)

    started = time.monotonic()
    result = apply_deploy(web, deploy, backend=DockerBackend())
    assert time.monotonic() - started < 20
    assert values["stdin"] == "from stdin"
    ops = {op.name: op for op in result.operations}
    assert ops["exit 3 is fine here"].success and ops["exit 3 is fine here"].changed is not None
    assert not result.error
    pty = ops["wants a pty"]
    assert "_get_pty=True is not supported by @orbstack" in pty.stderr


def test_the_connector_documents_itself_as_pyinfra_connectors_do():
    doc = inspect.getdoc(OrbStackConnector) or ""
    assert "pyinfra @orbstack/web deploy.py" in doc and "orbstack_backend=docker" in doc
    meta = OrbStackConnector.data_meta
    assert {"orbstack_machine", "orbstack_backend", "orbstack_user"} <= set(meta)
    assert all(meta[key].description for key in meta)


def test_every_machine_form_honours_the_data_flag(web):
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ORBSTACK_BACKEND"}
    env["PATH"] = "/usr/bin:/bin"  # no orbctl: auto would pick docker too, the flag must decide
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "@orbstack", "exec", "--data",
                           "orbstack_backend=docker", "--", "hostname"], capture_output=True, text=True,
                          env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"[@orbstack/{web}] Connected" in out or f"@orbstack/{web}" in out, out
    assert "@orbstack/pto-" not in out  # pytest sessions' machines are not ours to touch
    explicit = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "@orbstack", "exec", "--data",
                               "orbstack_backend=orbstack", "--", "hostname"], capture_output=True,
                              text=True, env=env, timeout=300)
    assert explicit.returncode != 0 and "'orbctl' not found on PATH" in explicit.stdout + explicit.stderr
