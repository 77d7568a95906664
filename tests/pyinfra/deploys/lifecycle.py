"""Machine lifecycle through pytest-orbstack's operations, run on the OrbStack host (@local).

Host data: base, copy, legacy, renamed (machine names; legacy exists beforehand), memory.
"""

from pyinfra import host

from pytest_orbstack import operations as orb

base, copy = host.data.base, host.data.copy

orb.machine(name="base machine", machine=base, image="debian:bookworm", user="deploy")
orb.machine_username(name="base username", machine=base, username="deploy")
orb.clone(name="clone base", source=base, machine=copy)
orb.machine(name="stop the clone", machine=copy, running=False)
orb.rename(name="rename legacy", old=host.data.legacy, new=host.data.renamed)
orb.config(name="memory", key="memory_mib", value=host.data.memory)
