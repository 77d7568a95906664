from pyinfra import host

from pytest_orbstack import operations as orb

for machine in host.data.machines.split(","):
    orb.machine(name=f"delete {machine}", machine=machine, present=False)
