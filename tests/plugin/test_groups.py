"""Several machines, one deploy: ``orbstack_machines`` makes a named group and runs ONE
multi-host deploy across it, as ``pyinfra inventory.py deploy.py`` does with groups."""

from __future__ import annotations

from innerpytest import run

# db serves a line on TCP 7000 (a systemd socket: nothing to install); web learns db's name
# from the inventory and writes it to its config. group_data/all.py gives _sudo (the
# machines' default user is not root), group_data/db.py the port.
GROUP_DEPLOY = '''
from io import StringIO

from pyinfra import host, inventory
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

if "db" in host.groups:
    socket = files.put(name="db socket", dest="/etc/systemd/system/db.socket", src=StringIO(
        f"[Socket]\\nListenStream={host.data.db_port}\\nAccept=yes\\n[Install]\\nWantedBy=sockets.target\\n"))
    service = files.put(name="db service", dest="/etc/systemd/system/db@.service", src=StringIO(
        "[Service]\\nExecStart=/bin/echo db-says-hi\\nStandardOutput=socket\\n"))
    systemd.daemon_reload(name="units reloaded", _if=any_changed(socket, service))
    systemd.service(name="db listening", service="db.socket", running=True, enabled=True)

if "web" in host.groups:
    db = inventory.get_group("db")[0]
    files.put(name="web config", dest="/etc/web.env", src=StringIO(
        f"DB={db.data.orbstack_machine}.orb.local:{db.data.db_port}\\n"))
'''


def test_web_reaches_db_by_name(inner):
    inner.makefile(".py", deploy=GROUP_DEPLOY)
    (inner.path / "group_data").mkdir()
    (inner.path / "group_data" / "all.py").write_text("_sudo = True\n")
    (inner.path / "group_data" / "db.py").write_text("db_port = 7000\n")
    inner.makepyfile(test_group='''
        def test_group(orbstack_machines):
            group = orbstack_machines({"web": dict(), "db": dict(groups=["backend"])},
                                      deploy="deploy.py", check_idempotent=True)
            web, db = group["web"], group["db"]
            assert [op.name for op in web.deploys[0].changed] == ["web config"]
            assert len(db.deploys[0].changed) == 4 and len(db.deploys) == 2
            address = web.host.file("/etc/web.env").content_string.strip()
            assert address == f"DB={db.domain}:7000"
            host, port = address[3:].split(":")
            reply = web.run(f"bash -c 'exec 3<>/dev/tcp/{host}/{port} && cat <&3'")
            assert reply.stdout.strip() == "db-says-hi", reply.stderr

        def test_groups_attach(orbstack_machines):
            from pyinfra import host
            seen = {}
            group = orbstack_machines({"a": dict(groups=["x"]), "b": dict(data={"colour": "blue"})})
            group.apply(lambda: seen.update({host.data.orbstack_machine: (sorted(set(host.groups)),
                                                                         host.data.get("colour"))}))
            assert seen == {group["a"].name: (["@orbstack", "a", "x"], None),
                            group["b"].name: (["@orbstack", "b"], "blue")}
    ''')
    result = run(inner)
    result.assert_outcomes(passed=2)


def test_bad_group_input_fails_before_any_machine(inner):
    inner.makepyfile(test_bad='''
        import pytest

        @pytest.mark.parametrize("specs, kwargs", [
            ({"web": dict(imgae="debian:bookworm")}, {}),
            ({"web": dict(groups="backend")}, {}),
            ([("web", {})], {}),
            ({"web": {}}, {"deploy": "missing.py"}),
        ], ids=["typo", "groups-string", "not-a-dict", "missing-deploy"])
        def test_bad(orbstack_machines, specs, kwargs):
            orbstack_machines(specs, **kwargs)
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "*test_bad?typo?*orbstack_machines(): 'web' got an unknown argument 'imgae' (did you mean 'image'?)*",
        "*test_bad?groups-string?*groups= must be a list of strings, not 'backend'*",
        "*test_bad?not-a-dict?*orbstack_machines() takes a dict of machine name*",
        "*test_bad?missing-deploy?*missing.py*",
    ])
    assert "orbstack machines" not in result.stdout.str()  # no machine was made


def test_an_inventory_files_hosts_become_machines(inner):
    """``orbstack_machines(inventory=...)``: the same inventory a user passes to
    ``pyinfra inventories/dev.py deploy.py`` (groups, host data, the inventory's own
    ``group_data/``), each ``@orbstack/NAME`` host a fresh machine."""
    inner.makefile(".py", deploy=GROUP_DEPLOY)
    (inner.path / "group_data").mkdir()
    (inner.path / "group_data" / "all.py").write_text("_sudo = True\n")  # next to the deploy
    (inner.path / "inventories" / "group_data").mkdir(parents=True)
    (inner.path / "inventories" / "dev.py").write_text(
        'web = ["@orbstack/web"]\ndb = ([("@orbstack/db", {"orbstack_image": "debian:bookworm"})], {})\n')
    (inner.path / "inventories" / "group_data" / "db.py").write_text("db_port = 7000\n")  # the inventory's
    inner.makepyfile(test_inventory='''
        def test_inventory(orbstack_machines):
            group = orbstack_machines(inventory="inventories/dev.py", deploy="deploy.py")
            assert sorted(group) == ["db", "web"]
            web, db = group["web"], group["db"]
            assert web.deploys[0].changed and len(db.deploys[0].changed) == 4
            address = web.host.file("/etc/web.env").content_string.strip()
            assert address == f"DB={db.domain}:7000"

        def test_bad_inventory(orbstack_machines):
            orbstack_machines(inventory="inventories/other.py")
    ''')
    (inner.path / "inventories" / "other.py").write_text('web = ["@orbstack/web", "plain-ssh-host"]\n')
    result = run(inner, "-ra")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_bad_inventory - Failed: pytest-orbstack: inventory "
                                 "inventories/other.py: host 'plain-ssh-host' is not @orbstack/NAME*"])


# Written for a real inventory: the web host's config names the db server by its OrbStack name.
INVENTORY_DEPLOY = '''
from pyinfra import host
from pyinfra.operations import files

if host.name == "@orbstack/web":
    files.template(name="app config", src="templates/app.conf.j2", dest="/etc/app.conf", _sudo=True)
'''


def test_an_inventorys_names_reach_the_groups_machines(inner):
    """A deploy written for ``@orbstack/web`` and ``@orbstack/dbserver`` works unchanged in a
    group: inside each machine ``dbserver`` and ``dbserver.orb.local`` are the group's db."""
    inner.makefile(".py", deploy=INVENTORY_DEPLOY, inventory='web = ["@orbstack/web"]\n'
                   'dbservers = ["@orbstack/dbserver"]\n')
    (inner.path / "templates").mkdir()
    (inner.path / "templates" / "app.conf.j2").write_text("DB_HOST=dbserver.orb.local\n")
    inner.makepyfile(test_names='''
        def test_names(orbstack_machines):
            group = orbstack_machines(inventory="inventory.py", deploy="deploy.py")
            web, db = group["web"], group["dbserver"]
            assert web.host.file("/etc/app.conf").content_string == "DB_HOST=dbserver.orb.local\\n"
            for name in ("dbserver.orb.local", "dbserver"):
                found = web.run(f"getent hosts {name}")
                assert found.stdout.split()[:1] == [db.ip4], (name, found.stdout, found.stderr)
            assert db.run("getent hosts web.orb.local").stdout.split()[:1] == [web.ip4]
            assert web.connectivity("dbserver.orb.local")["reachable"]
            group.name_each_other()  # again: replaced, not added twice
            assert web.run("grep -c dbserver /etc/hosts").stdout.strip() == "1"
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(passed=1)
