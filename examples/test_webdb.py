"""Example: prove a multi-host deploy (web + db) with two disposable machines.

``orbstack_machines`` makes one machine per name, puts each in the inventory group of its
name and runs the deploy once across both, as ``pyinfra inventory.py webdb/deploy.py`` would;
``check_idempotent`` runs it a second time and fails if anything changed again, except what
``allow_changes`` names.
"""

def test_web_queries_the_database_by_name(orbstack_machines):
    group = orbstack_machines({"web": dict(image="debian:bookworm"),
                               "db": dict(image="debian:bookworm")},
                              deploy="webdb/deploy.py", check_idempotent=True,
                              # pyinfra cannot read a password back: it sets it on every run
                              allow_changes=["The app's role"])
    web, db = group["web"], group["db"]
    assert db.host.service("postgresql").is_running
    assert not db.host.package("nginx").is_installed  # only the web group's operations ran there
    assert web.host.service("nginx").is_running
    assert f"PGHOST={db.domain}\n" in web.host.file("/etc/app.env").content_string
    query = web.run("set -a && . /etc/app.env && psql -tAc 'select current_user'")
    assert query.stdout.strip() == "app", query.stderr
