"""Deploy functions, as ``pyinfra INVENTORY module.function`` runs them: a ``@deploy``-decorated
(or plain) function passed as ``deploy=``, or named ``deploy="tasks.web.install"``, runs from
the folder its module is imported from, with that folder's ``config.py`` and ``group_data/``."""

from __future__ import annotations

from innerpytest import run

# The machines' default user is not root: only the user's config.py (SUDO = True) lets the
# deploy write to /etc; group_data/all.py gives the greeting. pyinfra's own api/config.py
# (what the folder of @deploy's wrapper holds) must not be run.
WEB = '''
from io import StringIO

from pyinfra import config, host
from pyinfra.api import deploy
from pyinfra.operations import files


@deploy("Install web")
def install():
    files.put(name="web motd", dest="/etc/motd-web",
              src=StringIO(f"{host.data.greeting} sudo={config.SUDO}\\n"))


def plain():
    files.put(name="plain motd", dest="/etc/motd-plain", src=StringIO(f"{host.data.greeting}\\n"))


NOT_A_FUNCTION = 3
'''
FUNCTIONS = '''
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files


@deploy()
def install_nginx():
    files.put(name="nginx marker", dest="/etc/nginx-marker", src=StringIO(f"{host.data.greeting}\\n"))
'''


def _project(inner) -> None:
    (inner.path / "tasks").mkdir()
    (inner.path / "tasks" / "__init__.py").write_text("")
    (inner.path / "tasks" / "web.py").write_text(WEB)
    (inner.path / "tasks" / "broken.py").write_text("import not_installed_anywhere\n")
    (inner.path / "deploy_functions.py").write_text(FUNCTIONS)
    (inner.path / "config.py").write_text("from pyinfra import config\n\nconfig.SUDO = True\n")
    (inner.path / "group_data").mkdir()
    (inner.path / "group_data" / "all.py").write_text('greeting = "hello"\n')


def test_function_deploys_run_as_the_cli_runs_them(inner):
    _project(inner)
    inner.makepyfile(test_functions='''
        from tasks.web import install

        def test_decorated(orbstack_machine):
            machine = orbstack_machine(deploy=install, clone=False)
            assert machine.host.file("/etc/motd-web").content_string == "hello sudo=True\\n"

        def test_named(orbstack_machine):
            machine = orbstack_machine(deploy="tasks.web.install", clone=False)
            assert machine.host.file("/etc/motd-web").content_string == "hello sudo=True\\n"
            assert machine.apply("deploy_functions.install_nginx").changed
            assert machine.host.file("/etc/nginx-marker").content_string == "hello\\n"
            machine.apply("tasks.web:plain")
            assert machine.host.file("/etc/motd-plain").content_string == "hello\\n"
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(passed=2)


def test_a_bad_function_name_is_one_line_before_any_machine(inner):
    _project(inner)
    inner.makepyfile(test_bad='''
        import pytest

        @pytest.mark.parametrize("deploy", ["tasks.web.instal", "taskz.web.install",
                                            "tasks.web.NOT_A_FUNCTION", "tasks.broken.install"])
        def test_bad(orbstack_machine, deploy):
            orbstack_machine(deploy=deploy)
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "FAILED *tasks.web.instal?*deploy 'tasks.web.instal': module tasks.web has no 'instal' "
        "(did you mean 'install'?)",
        "FAILED *taskz.web.install?*deploy 'taskz.web.install': no such module: taskz.web (looked in *",
        "FAILED *NOT_A_FUNCTION?*deploy 'tasks.web.NOT_A_FUNCTION' is not callable: int 3",
        "FAILED *tasks.broken.install?*deploy 'tasks.broken.install': importing its module raised "
        "tasks/broken.py:1: ModuleNotFoundError: No module named 'not_installed_anywhere'",
    ])
    out = result.stdout.str()
    assert "Traceback" not in out and "pytest_orbstack/" not in out  # one line, nothing from inside
    assert "orbstack machines" not in out  # no machine was made
