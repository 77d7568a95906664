"""The images Docker machines run: a base image (``debian:bookworm``, pulled when a registry
has it, else built offline by scripts/dev.sh) plus what a machine needs (Debian's cloud-init
among it, set up disabled: :mod:`pytest_orbstack.backends.docker.cloudinit`), prepared once per base image id
and recipe and cached under ``pytest-orbstack/<distro>:<codename>-<base id>-<recipe>``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.backends.debootstrap import why_not_buildable
from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.cli import DockerCLI, local_name
from pytest_orbstack.backends.docker.cloudinit import IMAGE_SETUP
from pytest_orbstack.backends.docker.debootstrap import build_debian
from pytest_orbstack.backends.process import last_line as _last_line
from pytest_orbstack.backends.process import told
from pytest_orbstack.errors import CommandTimeout, UnknownImage
from pytest_orbstack.model.inputs import image_codename

# what a machine needs -> the Debian package that provides it
REQUIRED = {"systemctl": "systemd", "sudo": "sudo", "ip": "iproute2", "ps": "procps",
            "getent": "libc-bin", "useradd": "passwd", "/sbin/init": "systemd-sysv"}
CLOUD_INIT = {"cloud-init": "cloud-init"}  # installed after the tools: a refusal names those first
# what a prepared image is made of: a new recipe makes new images (and removes the old ones)
RECIPE = hashlib.sha256(repr((REQUIRED, CLOUD_INIT, IMAGE_SETUP)).encode()).hexdigest()[:6]
PULL_TIMEOUT = settings.DOCKER_PULL_TIMEOUT


def base_image_id(docker: DockerCLI, image: str, base: str,
                  notice: Callable[[str], None] = lambda line: None) -> str:
    """Id of docker image ``base``: there already, else pulled from a registry, else (Debian)
    built offline with debootstrap; UnknownImage saying why each way failed."""
    proc = docker.call(cmd.image_id(base), ok=("No such image",))
    if proc.returncode == 0:
        return proc.stdout.strip()
    with FileLock(settings.lock_path(f"base-{base.replace(':', '-')}"), timeout=settings.BASE_IMAGE_LOCK_WAIT):
        if docker.call(cmd.image_id(base), check=False).returncode != 0:
            _pull_or_build(docker, image, base, notice)
    return docker.call(cmd.image_id(base)).stdout.strip()


def _pull_or_build(docker: DockerCLI, image: str, base: str, notice: Callable[[str], None]) -> None:
    try:
        pull = docker.call(cmd.pull(base), timeout=PULL_TIMEOUT, check=False)
        reason = _last_line(pull.stderr, f"exit status {pull.returncode}") if pull.returncode else ""
    except CommandTimeout:
        reason = f"docker pull {base} timed out after {PULL_TIMEOUT:.0f}s"
    if not reason:
        return
    distro, suite = base.split(":")
    cannot = why_not_buildable() if distro == "debian" else "only Debian is built without a registry"
    if cannot is None:
        try:
            with told(notice, f"building image {base} with debootstrap (once per host)"):
                build_debian(docker, suite, base)
            return
        except UnknownImage as exc:
            cannot = str(exc)
    raise UnknownImage(f"image {image!r} is not available to docker: no registry has it ({reason}) "
                       f"and it cannot be built here: {cannot}")


def prepared_image(docker: DockerCLI, image: str,
                   notice: Callable[[str], None] = lambda line: None) -> str:
    """Tag of the image machines of ``image`` run, built once per base image id and
    :data:`RECIPE` (a file lock makes concurrent processes wait for the one that builds)."""
    distro, codename = image_codename(image)
    base = f"{distro}:{codename}"
    short_id = base_image_id(docker, image, base, notice).split(":")[-1][:12]
    tag = f"pytest-orbstack/{distro}:{codename}-{short_id}-{RECIPE}"
    lock = settings.lock_path(f"image-{distro}-{codename}-{short_id}-{RECIPE}")
    with FileLock(lock, timeout=settings.MACHINE_IMAGE_LOCK_WAIT):
        if docker.call(cmd.image_id(tag), check=False).returncode != 0:
            with told(notice, f"preparing image {tag} (once per base image)"):
                _build(docker, image, base, tag)
            _remove_stale(docker, f"pytest-orbstack/{distro}", f"{codename}-", keep=tag)
    return tag


def _remove_stale(docker: DockerCLI, repository: str, prefix: str, keep: str) -> None:
    """Remove the prepared images of older base images (a rebuilt ``debian:bookworm``) or
    recipes; one still used by a machine stays ("conflict")."""
    tags = docker.call(cmd.image_tags(repository)).stdout.split()
    for old in tags:
        name = local_name(old)
        if name.startswith(f"{repository}:{prefix}") and name != keep:
            docker.call(cmd.remove_image(old), ok=("conflict", "No such image", "being used"))


def _build(docker: DockerCLI, image: str, base: str, tag: str) -> None:
    temp = f"pytest-orbstack-prepare-{uuid.uuid4().hex[:12]}"
    try:  # a sleeper that fails to start is still a container
        docker.call(cmd.sleeper(temp, base))
        _add_missing_tools(docker, image, temp, REQUIRED)
        _add_missing_tools(docker, image, temp, CLOUD_INIT)
        docker.exec_root(temp, IMAGE_SETUP)
        # an empty machine-id makes systemd give each machine its own on first boot
        docker.exec_root(temp, "[ ! -s /etc/machine-id ] || : > /etc/machine-id; [ ! -f "
                               "/var/lib/dbus/machine-id ] || ln -sf /etc/machine-id /var/lib/dbus/")
        # commit ignores 'ENTRYPOINT []' (sleep would stay); an ENTRYPOINT also resets CMD
        docker.call(cmd.commit(temp, tag, 'ENTRYPOINT ["/sbin/init"]'), timeout=settings.DOCKER_COMMIT_TIMEOUT)
    finally:
        docker.call(cmd.delete(temp), check=False, timeout=settings.DOCKER_REMOVE_TIMEOUT)


def _add_missing_tools(docker: DockerCLI, image: str, container: str,
                       required: dict[str, str]) -> None:
    """apt-get install what provides the missing ``required`` tools; UnknownImage if
    something is missing and can't be installed."""
    check = (f"for c in {' '.join(required)}; do "
             "command -v $c >/dev/null 2>&1 || [ -x \"$c\" ] || echo $c; done")
    missing = docker.exec_root(container, check).stdout.split()
    if not missing:
        return
    packages = " ".join(sorted({required[tool] for tool in missing}))
    script = ("command -v apt-get >/dev/null || exit 3; export DEBIAN_FRONTEND=noninteractive; "
              f"apt-get update -q && apt-get install -y -q --no-install-recommends {packages}")
    proc = docker.exec_root(container, script, timeout=settings.IMAGE_SETUP_TIMEOUT, check=False)
    if proc.returncode == 0 and not docker.exec_root(container, check).stdout.split():
        return
    why = ("it has no apt-get to install them" if proc.returncode == 3
           else f"apt-get install {packages} failed: {_last_line(proc.stderr or proc.stdout)}")
    raise UnknownImage(f"image {image!r} cannot run as a machine on docker: it lacks "
                       f"{', '.join(missing)} and {why}")
