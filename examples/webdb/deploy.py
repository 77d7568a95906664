"""Example multi-host deploy: a PostgreSQL database and a web server that uses it, one deploy
for both, branching on the inventory group of each host.

    # an inventory with the groups web and db, e.g. inventory.py:
    #   web = ["@orbstack/web"]
    #   db = ["@orbstack/db"]
    pyinfra inventory.py deploy.py

Group data: ``group_data/all.py`` (``_sudo``), ``group_data/db.py`` (the database's name,
password and PostgreSQL version). The web server finds the database through the inventory
(``inventory.get_group("db")``) and reaches it by its OrbStack name, ``NAME.orb.local``.
"""

from io import StringIO

from pyinfra import host, inventory
from pyinfra.operations import apt, files, postgres, systemd
from pyinfra.operations.util import any_changed

if "db" in host.groups:
    conf_dir = f"/etc/postgresql/{host.data.pg_version}/main"
    apt.packages(name="Install PostgreSQL", packages=["postgresql"], update=True, cache_time=3600)
    listen = files.put(name="PostgreSQL listens on the network", src=StringIO("listen_addresses = '*'\n"),
                       dest=f"{conf_dir}/conf.d/listen.conf")
    access = files.line(name="The app may log in from the network", path=f"{conf_dir}/pg_hba.conf",
                        line=f"host {host.data.db_name} {host.data.db_name} 0.0.0.0/0 scram-sha-256")
    systemd.service(name="Run PostgreSQL", service="postgresql", running=True, enabled=True)
    systemd.service(name="Restart PostgreSQL for its new settings", service="postgresql",
                    restarted=True, _if=any_changed(listen, access))
    postgres.role(name="The app's role", role=host.data.db_name, password=host.data.db_password,
                  login=True, _sudo_user="postgres")
    postgres.database(name="The app's database", database=host.data.db_name,
                      owner=host.data.db_name, _sudo_user="postgres")

if "web" in host.groups:
    db = inventory.get_group("db")[0]
    apt.packages(name="Install nginx and the PostgreSQL client",
                 packages=["nginx", "postgresql-client"], update=True, cache_time=3600)
    files.template(name="Configure the app", src="templates/app.env.j2", dest="/etc/app.env",
                   db_host=f"{db.data.orbstack_machine}.orb.local", db=db.data, mode="600")
    systemd.service(name="Run nginx", service="nginx", running=True, enabled=True)
