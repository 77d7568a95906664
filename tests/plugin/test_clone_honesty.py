"""A clone must not hide a deploy that forgets to restart a service: the golden machine fails
when its deploy left a running service on configuration it changed after the service started
(pytest_orbstack.machines.machine.Machine.apply_golden), because each clone would boot that service afresh."""

from __future__ import annotations

from innerpytest import run

# demo.service reads /etc/demo.conf (its EnvironmentFile) when it starts, and says what it read
# in /run/demo-port: what runs, as opposed to what the file says.
DEMO = '''
from io import StringIO
from pyinfra.operations import files, systemd

UNIT = """[Unit]
Description=demo
[Service]
EnvironmentFile=/etc/demo.conf
ExecStart=/bin/sh -c 'echo "$PORT" > /run/demo-port; exec sleep infinity'
ExecReload=/bin/sh -c 'echo reloaded >> /run/demo-reloads'
[Install]
WantedBy=multi-user.target
"""
files.put(name="Demo config", src=StringIO("PORT=8080\\n"), dest="/etc/demo.conf", _sudo=True)
files.put(name="Demo unit", src=StringIO(UNIT), dest="/etc/systemd/system/demo.service", _sudo=True)
systemd.service(name="Start demo", service="demo", running=True, enabled=True, daemon_reload=True,
                _sudo=True)
change = files.put(name="Change the port", src=StringIO("PORT=9090\\n"), dest="/etc/demo.conf",
                   _sudo=True)
'''
AFTER = {
    "stale_deploy": "",
    "restart_deploy": 'systemd.service(name="Restart demo", service="demo", restarted=True, '
                      '_if=change.did_change, _sudo=True)\n',
    "reload_deploy": 'systemd.service(name="Reload demo", service="demo", reloaded=True, '
                     '_if=change.did_change, _sudo=True)\n',
}
# The shape of the public example that a clone hid (a config file of the service's package,
# edited after the package started the service, without a restart), with nginx.
NGINX_NO_RELOAD = '''
from io import StringIO
from pyinfra.operations import apt, files, systemd
apt.packages(name="Install nginx", packages=["nginx"], update=True, cache_time=3600, _sudo=True)
systemd.service(name="Run nginx", service="nginx", running=True, _sudo=True)
files.put(name="Listen on 8081", src=StringIO("server { listen 8081; }\\n"),
          dest="/etc/nginx/conf.d/extra.conf", _sudo=True)
'''


def test_a_clone_does_not_hide_a_missing_restart(inner):
    inner.makefile(".py", **{name: DEMO + tail for name, tail in AFTER.items()},
                   nginx_deploy=NGINX_NO_RELOAD)
    inner.makepyfile(test_services='''
        import pytest

        def port(machine):
            return machine.run("cat /run/demo-port").stdout.strip()

        @pytest.mark.orbstack(deploy="stale_deploy.py")
        def test_stale(orbstack):
            assert port(orbstack) == "9090"  # a fresh boot reads the new file: the false green

        @pytest.mark.orbstack(deploy="stale_deploy.py", clone=False)
        def test_what_a_real_server_runs(orbstack):
            assert port(orbstack) == "8080"  # still what the service read when it started

        @pytest.mark.orbstack(deploy="restart_deploy.py")
        def test_restarted(orbstack):
            assert port(orbstack) == "9090"

        @pytest.mark.orbstack(deploy="reload_deploy.py")
        def test_reloaded(orbstack):
            assert orbstack.host.service("demo").is_running

        @pytest.mark.orbstack(deploy="stale_deploy.py", allow_stale=["demo"])
        def test_exempt(orbstack):
            assert port(orbstack) == "9090"

        @pytest.mark.orbstack(deploy="nginx_deploy.py")
        def test_nginx(orbstack):
            assert orbstack.host.socket("tcp://0.0.0.0:8081").is_listening
    ''')
    result = run(inner, "-v")
    result.assert_outcomes(passed=4, errors=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_stale ERROR*",
        "*test_what_a_real_server_runs PASSED*",
        "*test_restarted PASSED*",
        "*test_reloaded PASSED*",
        "*test_exempt PASSED*",
        "*test_nginx ERROR*",
    ])
    result.stdout.fnmatch_lines([
        "*deploy *stale_deploy.py leaves demo.service running on old configuration*",
        "*  demo.service: /etc/demo.conf",
        "*exempt a service that rereads its files by itself with allow_stale=*",
    ])
    result.stdout.fnmatch_lines(["*nginx.service: /etc/nginx/conf.d/extra.conf"])
    assert "Traceback" not in out


def test_allow_stale_needs_a_deploy(inner):
    inner.makepyfile(test_bad='''
        import pytest

        @pytest.mark.orbstack(allow_stale=["x"])
        def test_bad(orbstack):
            pass
    ''')
    result = run(inner)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*allow_stale= need a deploy= to check*"])
