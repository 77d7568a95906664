from pyinfra import host
from pyinfra.operations import files

files.line(name="Greeting in motd", path="/etc/motd", line=f"greeting: {host.data.greeting}")
