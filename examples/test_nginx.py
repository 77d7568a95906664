"""Example: prove the nginx deploy with disposable machines.

Each test gets its own machine, cloned from a golden machine on which the deploy ran
(pytest-orbstack's fast path), so the suite pays for `apt-get install nginx` only once. With
`check_idempotent=True` the golden machine gets the deploy twice and every test fails if the
second run changed anything.
"""

import pytest

DEPLOY = "nginx/deploy.py"

pytestmark = pytest.mark.orbstack(image="debian:bookworm", deploy=DEPLOY, check_idempotent=True)


def test_nginx_is_installed_running_and_enabled(orbstack):
    assert orbstack.host.package("nginx").is_installed
    nginx = orbstack.host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_site_listens_on_the_templated_port(orbstack):
    assert orbstack.host.socket("tcp://0.0.0.0:8080").is_listening
    config = orbstack.host.file("/etc/nginx/sites-available/default")
    assert config.contains("listen 8080 default_server")
    assert config.user == "root" and config.mode == 0o644


def test_page_is_served(orbstack):
    page = orbstack.run("curl -fsS http://localhost:8080/")
    assert page.succeeded, page.stderr
    assert "hello from pyinfra" in page.stdout


def test_a_clone_is_converged(orbstack):
    # A clone is the golden machine as the deploy left it: applying it again changes nothing.
    assert [op.name for op in orbstack.apply(DEPLOY).changed] == []


def test_host_data_changes_the_port(orbstack_machine):
    machine = orbstack_machine(deploy=DEPLOY, data={"nginx_port": 9090, "nginx_message": "nine"},
                               clone=False)
    assert machine.host.socket("tcp://0.0.0.0:9090").is_listening
    assert "nine" in machine.run("curl -fsS http://localhost:9090/").stdout


def test_another_machine_reaches_the_site_by_name(orbstack, orbstack_machine):
    client = orbstack_machine()
    # On OrbStack NAME.orb.local is a relay address of its own, not the machine's ip4
    # (orbstack/orbstack#2676, #2057): what holds is that the name resolves and the site answers.
    assert client.dns(orbstack.domain)
    reach = client.connectivity(orbstack.domain, method="http", port=8080)
    assert reach["reachable"] and reach["status"] == 200, reach
