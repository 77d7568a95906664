"""Never a false green, from a user's seat: this package's wheel installed in a fresh virtualenv
outside this repository runs a user project (tests/acceptance/userproject) whose deploys are
public pyinfra examples nobody here wrote, through the README's paths only: the ``orbstack``
marker with ``deploy=``, the ``orbstack_machine`` factory, ``orbstack_machines`` with an
inventory file, and the debug loop (keep, list, reuse, prune) typed in a shell. Each test
checks one part of what that one run (tests/acceptance/userrepo.py) did; nothing may be left.
"""

from __future__ import annotations

import re
from pathlib import Path

from testenv import ROOT, needs_docker

pytestmark = needs_docker("the acceptance test")

PROJECT = Path(__file__).parent / "userproject"
NAME = r"pto-[0-9a-f]{8}-[a-z0-9-]+"


def outcome(run: dict, test: str) -> dict[str, str]:
    """The outcome of ``test`` in a run (its junit record), or the run's output if it never ran."""
    return run["outcomes"].get(test) or {"outcome": "not run", "message": run["out"][-4000:], "machine": ""}


def line_of(path: str, text: str) -> int:
    """The number of the line of the user project's ``path`` that contains ``text``."""
    lines = (PROJECT / path).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_wheel_installed_outside_this_repository(user_repo):
    install = user_repo["install"]
    assert install["ok"], install.get("out") or install["pip"]["out"]
    assert install["module_file"].startswith(install["venv"] + "/lib/")
    assert not user_repo["work"].startswith(str(ROOT))
    header = user_repo["suite"]["out"]
    assert f"rootdir: {user_repo['work']}/suite" in header
    assert re.search(r"plugins: .*orbstack-\d", header), header[:2000]
    assert user_repo["work_removed"]  # the venv, the wheel and the project copies


def test_marker_applies_a_deploy_function(user_repo):
    """``@pytest.mark.orbstack(deploy=example.install_base_packages, data={"_sudo": True},
    check_idempotent=True)``: the @deploy function on a golden machine, twice, then cloned."""
    result = outcome(user_repo["suite"], "test_deploy_functions.py::test_base_packages")
    assert result["outcome"] == "passed", result["message"]
    assert re.fullmatch(NAME, result["machine"])


def test_failing_operation_of_a_deploy_function_fails_its_test(user_repo):
    """The example's setup_nginx removes nginx.conf, then reloads nginx, which fails: the
    user's test fails naming that operation and its command, not pytest-orbstack."""
    result = outcome(user_repo["suite"], "test_deploy_functions.py::test_nginx")
    assert result["outcome"] == "failed", result["message"]
    assert "Setup nginx server | Reload nginx" in result["message"]
    assert "systemctl reload nginx.service" in result["message"]


def test_deploy_file_with_group_data_on_a_clone(user_repo):
    """``deploy="vendor/.../python-web-app/deploy.py"`` by the marker: its group_data/all.py
    gives _sudo (the example has no other), the test's machine is a clone of the golden."""
    suite = user_repo["suite"]
    result = outcome(suite, "test_python_web_app.py::test_base_packages")
    assert result["outcome"] == "passed", result["message"]
    assert re.search(rf"{result['machine']} +test +debian:bookworm +- +[0-9.]+s ", suite["out"])  # cloned


def test_inventory_file_runs_the_deploy_once_across_its_hosts(user_repo):
    """``orbstack_machines(inventory="inventories/orbstack.py", deploy=...)``: each host gets
    what its host data chose, tasks/database.py by local.include on the database only."""
    out = user_repo["suite"]["out"]
    db = re.search(rf"deploy ({NAME}-dbserver-[0-9a-f]+): (\S+): 6 operations, 6 changed", out)
    web = re.search(rf"deploy ({NAME}-webserver-[0-9a-f]+): (\S+): 1 operations, 1 changed", out)
    assert db and web, out[-6000:]
    assert db[2] == web[2] == "vendor/pyinfra-examples/python-web-app/deploy.py"
    assert "tasks/database.py | Create database" in out


def test_unreachable_database_fails_the_test(user_repo):
    """The example sets MariaDB's bind-address but never restarts it: it still listens on
    127.0.0.1 only. The user's last check, that the web server reaches it, must fail there
    (every check before it passed)."""
    result = outcome(user_repo["suite"], "test_python_web_app.py::test_database_server")
    assert result["outcome"] == "failed", result["message"]
    where = line_of("test_python_web_app.py", "web.connectivity(")
    assert f"test_python_web_app.py:{where}: AssertionError" in result["message"], result["message"]


def test_suite_leaves_nothing(user_repo):
    left = user_repo["suite_leftovers"]
    assert len(left.pop("sessions")) == 1
    assert left == {key: [] for key in left}


def test_bare_keep_flag_before_a_path(user_repo):
    """``pytest --orbstack-keep test_python_web_app.py``: the path is what runs."""
    out = user_repo["loop"]["keep_path"]["out"]
    collected = sorted(line for line in out.splitlines() if "::" in line)
    assert collected == ["test_python_web_app.py::test_base_packages",
                         "test_python_web_app.py::test_database_server"], out


def test_keep_list_reuse(user_repo):
    """Keep, list, reuse twice: the kept machine is listed with its test and login command,
    each reuse runs the test on it (the deploy applied again) and creates nothing."""
    loop = user_repo["loop"]
    kept = outcome(loop["keep"], "test_python_web_app.py::test_base_packages")
    assert kept["outcome"] == "passed", kept["message"]
    name = kept["machine"]
    assert f"kept 1 machine(s); log in with:\n  docker exec -it {name} bash -l" in loop["keep"]["out"]
    for step in ("list", "list_after_reuse"):
        assert re.search(rf"{name} +\S+ +debian:bookworm +test_python_web_app.py::test_base_packages#0\n"
                         rf" +docker exec -it {name} bash -l", loop[step]["out"]), loop[step]["out"]
    for step in ("reuse", "reuse_again"):
        reused = outcome(loop[step], "test_python_web_app.py::test_base_packages")
        assert reused["outcome"] == "passed", reused["message"]
        assert f"orbstack: reusing kept {name} (debian:bookworm)" in loop[step]["out"]
        assert re.search(rf"orbstack: deploy {name}: \S+deploy.py: 1 operations, 0 changed", loop[step]["out"])
    assert loop["created_by_reuse"] == []


def test_prune_ends_the_loop_leaving_nothing(user_repo):
    loop = user_repo["loop"]
    name = outcome(loop["keep"], "test_python_web_app.py::test_base_packages")["machine"]
    assert f"orbstack: pruned 1 machine(s) of this project ({user_repo['work']}/loop): {name}" in loop["prune"]["out"]
    assert "orbstack: no kept machines in this project" in loop["list_after_prune"]["out"]
    left = user_repo["loop_leftovers"]
    assert len(left.pop("sessions")) == 3  # keep and two reuses; list and prune open none
    assert left == {key: [] for key in left}
