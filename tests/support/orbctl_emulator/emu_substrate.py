"""The orbctl emulator's substrate: what its machines really are. ``ORBCTL_EMULATOR_SUBSTRATE``
chooses ``docker`` (the default: a Docker container running systemd, emu_docker.py) or
``incus`` (an Incus LXC system container, emu_incus.py: what an OrbStack machine is).

Each substrate is a module with the same functions, all a machine's commands use:

- ``machines()``, ``lookup(name, size)``: this home's machines as dicts ``{"Id": handle,
  "name", "labels", "running", "ip4", "ip6", "size"}`` (``ip4``/``ip6``/``size`` may be None);
- ``has_image(image)``, ``machine_image(image, cloud)``: a local ``distro:version`` image, and
  what a machine of it runs (with cloud-init when ``cloud``);
- ``create(name, labels, image, cpus, memory_mib, isolated)``: make and start a machine
  (None, or why not); ``clone(src, new, labels)``: a stopped copy; ``rename(c, new)``;
  ``start(c)``, ``stop(c)``, ``remove(c)``, ``drop_home_if_unused()``;
- ``execute(handle, argv, user, input, binary, check)``: a command in a machine (a
  CompletedProcess); ``exec_argv(handle, user, tty)``: the argv prefix ``run`` replaces itself
  with, through ``replace_process(argv)``; ``logs(c)``: the substrate's own log of the machine;
- ``NOT_RUNNING``: the text of an exec into a stopped machine; ``NAME``.
"""

from __future__ import annotations

import os

SUBSTRATES = ("docker", "incus")
WANTED = os.environ.get("ORBCTL_EMULATOR_SUBSTRATE") or "docker"

if WANTED == "incus":
    import emu_incus as substrate
else:
    import emu_docker as substrate

__all__ = ["SUBSTRATES", "substrate"]
