# The hosts of vendor/pyinfra-examples/python-web-app as machines: its inventories/docker.py
# reaches two Docker containers over SSH; here each @orbstack/NAME host becomes a machine, with
# the same host data.
#
# The webserver gets no is_web: tasks/web.py clones https://github.com/Fizzadar/Flask-Web-App-Tutorial
# and pip-installs its requirements, which needs GitHub and PyPI; this project's tests run
# where only the Debian mirror answers. It still gets deploy.py's base packages.
inventory = (
    [
        ("@orbstack/webserver", {}),
        ("@orbstack/dbserver", {"is_database": True}),
    ],
    {},
)
