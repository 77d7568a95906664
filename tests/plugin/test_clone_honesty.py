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


# Units left in a state a fresh boot does not give them, and the stale configurations the check
# once missed (an active oneshot, a link, a removed file, a reload systemd did not see). LIES
# is the deploy a clone would hide; HONEST does the same work as a real server needs it.
UNITS = r'''
from io import StringIO
from pyinfra.operations import files, server, systemd

def unit(name, start, extra=""):
    text = f"[Service]\nExecStart={start}\n{extra}[Install]\nWantedBy=multi-user.target\n"
    files.put(name=f"unit {name}", src=StringIO(text), dest=f"/etc/systemd/system/{name}", _sudo=True)

def put(path, text):
    return files.put(name=f"put {path}", src=StringIO(text), dest=path, _sudo=True)

SLEEP = "/bin/sleep infinity"
for name in ("never", "off", "stop", "rt"):
    unit(f"{name}.service", SLEEP)
put("/usr/lib/systemd/system/mask.service",  # as a package ships it (mask links over /etc)
    f"[Service]\nExecStart={SLEEP}\n[Install]\nWantedBy=multi-user.target\n")
unit("once.service", "/bin/true", "Type=oneshot\n")
unit("parent.service", "/bin/true", "Type=oneshot\nRemainAfterExit=yes\nEnvironmentFile=/etc/parent.conf\n")
unit("done.service", "/bin/true")  # a job that ends by itself
unit("poll.service", "/bin/true", "Restart=always\nRestartSec=30\n")  # a loop without a timer
unit("crash.service", "/bin/sh -c 'test -f /etc/crash.key && exec sleep infinity'")
unit("rules.service", "/bin/sh -c 'cat /etc/rules.conf > /run/rules'",
     "Type=oneshot\nRemainAfterExit=yes\n")
unit("link.service", "/bin/sh -c 'cat /etc/link.d/* > /run/link; exec sleep infinity'")
unit("gone.service", "/bin/sh -c 'cat /etc/gone.d/* > /run/gone; exec sleep infinity'")
unit("hup.service", "/bin/sh -c 'cat /etc/hup.conf > /run/hup; trap \"\" HUP; exec sleep infinity'",
     "ExecReload=/bin/kill -HUP $MAINPID\n")
put("/etc/systemd/system/job.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
TIMER = "[Timer]\nOnCalendar={}\n[Install]\nWantedBy=timers.target\n"
put("/etc/systemd/system/job.timer", TIMER.format("daily"))
put("/etc/rules.conf", "v1\n")
put("/etc/parent.conf", "v1\n")
put("/etc/link.d/base.conf", "base\n")
put("/etc/gone.d/keep.conf", "keep\n")
put("/etc/gone.d/old.conf", "old\n")
put("/etc/hup.conf", "v1\n")
put("/opt/app.conf", "app\n")
systemd.daemon_reload(name="Load the units", _sudo=True)
for name in ("off", "stop", "mask", "once", "done", "poll", "parent", "rules", "link", "gone", "hup", "job.timer"):
    systemd.service(name=f"Start {name}", service=name, running=True, enabled=True, _sudo=True)
put("/etc/rules.conf", "v2\n")
put("/etc/parent.conf", "v2\n")  # read by nothing: parent.service runs only true
files.link(name="Link the app", path="/etc/link.d/app.conf", target="/opt/app.conf", _sudo=True)
files.file(name="Remove old", path="/etc/gone.d/old.conf", present=False, _sudo=True)
put("/etc/hup.conf", "v2\n")
'''
LIES = UNITS + r'''
server.shell(name="Enable never", commands=["systemctl enable never"], _sudo=True)
systemd.service(name="Start crash", service="crash", running=True, enabled=True, _sudo=True)
put("/etc/crash.key", "key\n")
server.shell(name="Disable off", commands=["systemctl disable off"], _sudo=True)
server.shell(name="Stop stop", commands=["systemctl stop stop"], _sudo=True)
server.shell(name="Runtime rt", commands=["systemctl enable --runtime --now rt"], _sudo=True)
server.shell(name="Mask mask", commands=["systemctl mask mask"], _sudo=True)
server.shell(name="Reload hup itself", commands=["kill -HUP $(systemctl show -P MainPID hup)"],
             _sudo=True)
put("/etc/systemd/system/job.timer", TIMER.format("hourly"))  # after the last enable's reload
'''
HONEST = UNITS + r'''
systemd.service(name="Start never", service="never", running=True, enabled=True, _sudo=True)
put("/etc/crash.key", "key\n")
systemd.service(name="Start crash", service="crash", running=True, enabled=True, _sudo=True)
systemd.service(name="Stop off", service="off", running=False, enabled=False, _sudo=True)
systemd.service(name="Start rt", service="rt", running=True, enabled=True, _sudo=True)
put("/etc/systemd/system/job.timer", TIMER.format("hourly"))
systemd.daemon_reload(name="Load the new timer", _sudo=True)
for name in ("rules", "link", "gone"):
    systemd.service(name=f"Restart {name}", service=name, restarted=True, _sudo=True)
systemd.service(name="Reload hup", service="hup", reloaded=True, _sudo=True)
'''


def test_a_clone_does_not_hide_units_a_boot_would_change(inner):
    inner.makefile(".py", lies_deploy=LIES, honest_deploy=HONEST)
    inner.makepyfile(test_units='''
        import pytest

        @pytest.mark.orbstack(deploy="lies_deploy.py")
        def test_lies(orbstack):
            pass

        @pytest.mark.orbstack(deploy="honest_deploy.py")
        def test_honest(orbstack):
            assert orbstack.run("cat /run/rules /run/link /run/gone /run/hup").stdout.split() == [
                "v2", "app", "base", "keep", "v2"]
            assert orbstack.host.service("never").is_running
            assert not orbstack.host.service("off").is_running
            assert orbstack.host.service("stop").is_running and orbstack.host.service("rt").is_running
    ''')
    result = run(inner, "-v")
    result.stdout.fnmatch_lines(["*test_lies ERROR*", "*test_honest PASSED*"])
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*deploy *lies_deploy.py leaves * running on old configuration*",
        "*  gone.service: /etc/gone.d/ (an entry removed)",
        "*  hup.service: /etc/hup.conf",
        "*  link.service: /etc/link.d/app.conf",
        "*  rules.service: /etc/rules.conf",
        "*a reload systemd does not see (nginx -s reload, kill -HUP*",
        "*deploy *lies_deploy.py leaves * in a state a clone would not boot into*",
        "*  crash.service: enabled but failed (exit-code): a fresh boot starts it again",
        "*  job.timer: its unit file changed after systemd loaded it, without systemctl daemon-reload*",
        "*  never.service: enabled but never started: a fresh boot starts it",
        "*  off.service: disabled but running: a fresh boot does not start it",
        "*  rt.service: enabled with --runtime (its links are in /run) and active: a fresh boot*",
        "*  stop.service: enabled but stopped: a fresh boot starts it",
    ])
    result.stdout.fnmatch_lines(["*  mask.service: masked but it runs: a fresh boot does not start it"])
    for name in ("once", "done", "poll", "parent"):  # ended by themselves (started, then enabled); true
        assert f"  {name}.service: " not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_a_clone_does_not_hide_a_change_to_the_engines_own_files(inner):
    """Docker gives each container its own /etc/resolv.conf, /etc/hosts and /etc/hostname (bind
    mounts a commit does not hold): a deploy that changes one fails its golden machine, since
    the clones would not have the change; without a clone the change is there."""
    inner.makefile(".py", resolv_deploy='''
from io import StringIO
from pyinfra.operations import files
files.put(name="Resolver", src=StringIO("nameserver 192.0.2.53\\n"), dest="/etc/resolv.conf", _sudo=True)
''')
    inner.makepyfile(test_resolv='''
        import pytest

        @pytest.mark.orbstack(deploy="resolv_deploy.py")
        def test_cloned(orbstack):
            assert "192.0.2.53" in orbstack.host.file("/etc/resolv.conf").content_string

        @pytest.mark.orbstack(deploy="resolv_deploy.py", clone=False)
        def test_fresh(orbstack):
            assert "192.0.2.53" in orbstack.host.file("/etc/resolv.conf").content_string
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(passed=1, errors=1)
    assert ("deploy resolv_deploy.py changed /etc/resolv.conf on the golden machine, which docker gives "
            "every machine itself (a bind mount no snapshot holds): its clones would not have the change. "
            "Use clone=False") in result.stdout.str(), result.stdout.str()


def test_on_incus_a_change_to_the_hosts_file_fails_the_golden(incus_inner):
    """Incus writes /etc/hosts and /etc/hostname from its image templates on every copy: a clone
    would lose the deploy's change (red team 2, finding 1); the golden machine fails instead."""
    incus_inner.makefile(".py", hosts_deploy='''
from pyinfra.operations import files
files.line(name="Pin a name", path="/etc/hosts", line="10.9.9.9 db.internal", _sudo=True)
''')
    incus_inner.makepyfile(test_hosts='''
        import pytest

        @pytest.mark.orbstack(deploy="hosts_deploy.py")
        def test_cloned(orbstack):
            assert orbstack.dns("db.internal") == ["10.9.9.9"]

        @pytest.mark.orbstack(deploy="hosts_deploy.py", clone=False)
        def test_fresh(orbstack):
            assert orbstack.dns("db.internal") == ["10.9.9.9"]
    ''')
    result = run(incus_inner, "-ra")
    result.assert_outcomes(passed=1, errors=1)
    assert ("deploy hosts_deploy.py changed /etc/hosts on the golden machine, which incus gives every "
            "machine itself (its image's templates, written again on every copy)") in result.stdout.str()
