"""Build a Debian base image without a registry: ``debootstrap`` a minimal tree of any suite
(bullseye, bookworm, trixie, ...) from a Debian mirror and ``docker import`` it, with systemd as
its command. The same tree scripts/dev.sh builds for ``debian:bookworm`` (both read the package
list from the file ``debian-base-packages`` beside this module); this one serves every other
suite a machine asks for."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from pytest_orbstack import settings
from pytest_orbstack.backends.debootstrap import BUILD_TIMEOUT, debootstrap
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.cli import DockerCLI
from pytest_orbstack.backends.process import last_line
from pytest_orbstack.errors import UnknownImage


def build_debian(docker: DockerCLI, suite: str, tag: str) -> None:
    """Build ``tag`` (e.g. ``debian:trixie``) from ``suite``; UnknownImage naming debootstrap's
    last line when it fails. The tree lives under /var/tmp (``/tmp`` may be mounted noexec)
    and is removed whatever happens."""
    scratch = Path(tempfile.mkdtemp(prefix="pytest-orbstack-build.", dir=settings.scratch_dir()))
    try:
        rootfs = scratch / "rootfs"
        debootstrap(suite, rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        load = subprocess.run(docker.argv(cmd.import_rootfs(tag)), stdin=tar.stdout,
                              capture_output=True, text=True, env=docker.env, timeout=BUILD_TIMEOUT)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if load.returncode != 0 or tar.returncode != 0:
            raise UnknownImage(f"docker import of the debootstrap tree failed: {last_line(load.stderr)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
