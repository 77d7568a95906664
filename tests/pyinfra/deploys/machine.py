"""One machine through pytest-orbstack's `machine` operation, on the engine host data or the
environment choose (`--data orbstack_backend=docker`). Host data: web (the machine's name)."""

from pyinfra import host

from pytest_orbstack import operations as orb

orb.machine(name="web machine", machine=host.data.web, image="debian:bookworm", user="deploy")
