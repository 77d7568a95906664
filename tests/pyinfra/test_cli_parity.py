"""A deploy behaves the same through the plugin (``Machine.apply``) as through the real
``pyinfra`` command line, on two fresh Docker machines: same changed operations, same end
state, nothing changed on a second run. The deploy (tests/pyinfra/deploys/split) is split with
``local.include``, takes ``_sudo = True`` from ``group_data/all.py`` (the machines' default user
is not root), calls a ``@deploy`` function, and has a ``config.py`` and ``--data``."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orbstack import Machine
from pytest_orbstack.backends import get_backend

SPLIT = Path(__file__).parent / "deploys" / "split"
STATE = ("id app; stat -c '%U:%G %a %n' /opt/app /opt/app/app.conf; cat /opt/app/app.conf; "
         "grep greeting /etc/motd")


@pytest.fixture(scope="module")
def engine():
    return get_backend("docker")


@pytest.fixture
def machines(request, engine):
    """Two fresh machines (deleted afterwards, also when creation fails)."""
    names = [f"par-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        request.addfinalizer(lambda name=name: engine.delete_if_exists(name))
        engine.create(name, "debian:bookworm")
    return [Machine(name, engine, "debian:bookworm") for name in names]


def cli(machine: str, deploy: Path, *data: str) -> dict:
    """``cd FOLDER && pyinfra -y --json @orbstack/NAME deploy.py --data ...``: pyinfra's own
    JSON of the run (operations with the hosts they changed)."""
    args = ["--data", "orbstack_backend=docker", *(a for d in data for a in ("--data", d))]
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "--json", f"@orbstack/{machine}",
                           deploy.name, *args], cwd=deploy.parent, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def cli_changed(run: dict) -> list[str]:
    return [op["name"] for op in run["results"]["operations"] if op["success"]]


def test_split_deploy_same_through_the_plugin_and_the_cli(machines):
    plugin_machine, cli_machine = machines
    applied = plugin_machine.apply(SPLIT / "deploy.py", data={"greeting": "hi"})
    first = cli(cli_machine.name, SPLIT / "deploy.py", "greeting=hi")

    assert [op.name for op in applied.changed] == cli_changed(first)
    assert len(applied.operations) == len(first["results"]["operations"])
    assert "tasks/app.py | App user and files | App user" in [op.name for op in applied.changed]
    states = [m.run(STATE) for m in machines]
    assert states[0].rc == 0, states[0].stderr
    assert states[0].stdout == states[1].stdout
    for line in ("app:app 750 /opt/app\n", "app:app 640 /opt/app/app.conf\nlisten = 8080\n",
                 "greeting: hi\n"):  # data= / --data wins over group_data
        assert line in states[0].stdout

    again = plugin_machine.apply(SPLIT / "deploy.py", data={"greeting": "hi"})
    assert again.changed == [], [op.name for op in again.changed]
    assert cli_changed(cli(cli_machine.name, SPLIT / "deploy.py", "greeting=hi")) == []


def test_config_py_and_data_precedence_as_on_the_cli(machines, tmp_path):
    """``config.py`` next to the deploy is loaded (its SUDO makes a root-only write work), data
    is layered as the CLI layers it: ``data=`` > group_data/GROUP.py > group_data/all.py, and
    the deploy's code runs in its folder, as after ``cd FOLDER`` (``open("here.txt")``)."""
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text('colour = "all"\nsize = "all"\n')
    (tmp_path / "group_data" / "@orbstack.py").write_text('size = "group"\n')  # the connector's group
    (tmp_path / "config.py").write_text("from pyinfra import config\nconfig.SUDO = True\n")
    (tmp_path / "here.txt").write_text("cwd\n")  # read by a path relative to the deploy's folder
    (tmp_path / "deploy.py").write_text(
        "from pyinfra import host\nfrom pyinfra.operations import files\n"
        "files.line(name='Data', path='/etc/data.txt', "
        "line=f'{host.data.colour} {host.data.size} {host.data.shape} {open(\"here.txt\").read().strip()}')\n")
    plugin_machine, cli_machine = machines
    plugin_machine.apply(tmp_path / "deploy.py", data={"shape": "data", "colour": "data"})
    cli(cli_machine.name, tmp_path / "deploy.py", "shape=data", "colour=data")
    for machine in machines:
        assert machine.run("cat /etc/data.txt").stdout == "data group data cwd\n", machine
