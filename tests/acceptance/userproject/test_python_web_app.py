"""pyinfra-examples' python-web-app: its deploy (base packages, then tasks/database.py or
tasks/web.py by host data through local.include; _sudo from its group_data/all.py), on one
machine and across the machines of a pyinfra inventory file, as ``pyinfra
inventories/orbstack.py deploy.py`` runs it."""

import pytest

DEPLOY = "vendor/pyinfra-examples/python-web-app/deploy.py"


@pytest.mark.orbstack(deploy=DEPLOY)
def test_base_packages(orbstack):
    for package in ("python3-pip", "git"):
        assert orbstack.host.package(package).is_installed
    assert not orbstack.host.package("mariadb-server").is_installed  # no is_database here


def test_database_server(orbstack_machines):
    group = orbstack_machines(inventory="inventories/orbstack.py", deploy=DEPLOY)
    db, web = group["dbserver"], group["webserver"]
    assert db.host.service("mariadb").is_running
    assert db.host.file("/etc/mysql/mariadb.conf.d/50-server.cnf").contains("^bind-address = 0.0.0.0$")
    assert "python_app" in db.run("mysql -N -e 'show databases'").stdout.split()
    assert "python-app" in db.run("mysql -N -e 'select user from mysql.user'").stdout.split()
    assert not web.host.package("mariadb-server").is_installed
    # the web server reaches the database: tasks/database.py binds it to every address
    assert web.connectivity(db.domain, method="tcp", port=3306)
