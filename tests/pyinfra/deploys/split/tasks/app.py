from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server


@deploy("App user and files")
def app(path: str) -> None:
    server.group(name="App group", group="app")
    server.user(name="App user", user="app", group="app", home=path, create_home=False)
    files.directory(name="App folder", path=path, user="app", group="app", mode="750")
    files.put(name="App config", src="files/app.conf", dest=f"{path}/app.conf",
              user="app", group="app", mode="640")


app(host.data.app_path)
