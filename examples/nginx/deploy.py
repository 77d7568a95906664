"""Example deploy: nginx serving a page on a templated port.

    pyinfra @orbstack/web deploy.py                      # on an OrbStack machine
    pyinfra @orbstack/web deploy.py --data nginx_port=9090

Host data: ``nginx_port`` (default 8080), ``nginx_message`` (the page's text),
``nginx_server_name`` (default ``_``, any name).
"""

from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, systemd

port = int(host.data.get("nginx_port", 8080))
message = host.data.get("nginx_message", "hello from pyinfra")

apt.packages(
    name="Install nginx and curl",
    packages=["nginx", "curl"],
    update=True,
    cache_time=3600,
    _sudo=True,
)

site = files.template(
    name="Configure the site",
    src="templates/site.conf.j2",
    dest="/etc/nginx/sites-available/default",  # sites-enabled/default links here
    port=port,
    server_name=host.data.get("nginx_server_name", "_"),
    mode="644",
    _sudo=True,
)

files.put(
    name="Publish the page",
    src=StringIO(f"<h1>{message}</h1>\n"),
    dest="/var/www/html/index.html",
    mode="644",
    _sudo=True,
)

systemd.service(
    name="Run nginx",
    service="nginx",
    running=True,
    enabled=True,
    _sudo=True,
)

systemd.service(
    name="Reload nginx for a new site config",
    service="nginx",
    reloaded=True,
    _if=site.did_change,
    _sudo=True,
)
