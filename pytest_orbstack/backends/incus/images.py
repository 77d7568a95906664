"""The Incus images machines start from, named as OrbStack names them: ``debian:bookworm``,
``debian:12`` -> ``pytest-orbstack/debian/bookworm`` (``.../cloud`` when the machine has
user-data, as OrbStack uses the ``cloud`` variant then). An image this daemon has is used; else
the image server's (``images:debian/bookworm[/cloud]``) when it answers; else a Debian suite is
built offline (:mod:`.rootfs`) and imported once per host, under a file lock other processes wait
on. ``python -m pytest_orbstack.backends.incus.images [--cloud] IMAGE...`` does the same for
``scripts/dev.sh incus``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from filelock import FileLock

from pytest_orbstack import settings
from pytest_orbstack.backends.debootstrap import why_not_buildable
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus import rootfs
from pytest_orbstack.backends.incus.cli import IncusCLI
from pytest_orbstack.backends.process import last_line, told
from pytest_orbstack.errors import CommandTimeout, MachineError, UnknownImage
from pytest_orbstack.model.inputs import image_codename

REMOTE_TIMEOUT = 30.0  # `incus image info images:...`: the image server answers or not


def has_image(cli: IncusCLI, ref: str, timeout: float | None = None) -> str | None:
    """None when the daemon has (or can fetch) image ``ref``, else why not in one line."""
    try:
        done = cli.call(cmd.image_info(ref), check=False, timeout=timeout)
    except CommandTimeout:
        return f"no answer in {timeout:.0f}s"
    return None if done.returncode == 0 else last_line(done.stderr, f"exit status {done.returncode}")


def image_ref(cli: IncusCLI, image: str, cloud: bool = False,
              notice: Callable[[str], None] = lambda line: None) -> str:
    """The Incus image reference machines of ``image`` (with cloud-init: ``cloud``) start from,
    built offline when neither this daemon nor the image server has it; UnknownImage saying
    why each way failed."""
    alias = cmd.image_alias(image, cloud)
    if has_image(cli, cli.at(alias)) is None:
        return cli.at(alias)
    remote = cmd.remote_image(image, cloud)
    unreachable = has_image(cli, remote, REMOTE_TIMEOUT)
    if unreachable is None:
        return remote
    if cli.remote:
        raise UnknownImage(f"image {image!r} is not on incus remote {cli.remote}: no {alias} there and "
                           f"{remote} failed ({unreachable}); copy it there once: incus image copy "
                           f"{alias} {cli.remote}: --copy-aliases (docs/scale.md)")
    with FileLock(settings.lock_path(f"incus-image-{alias.replace('/', '-')}"), timeout=settings.BASE_IMAGE_LOCK_WAIT):
        if has_image(cli, alias) is not None:
            cannot = build_here(cli, image, cloud, notice)
            if cannot is not None:
                raise UnknownImage(f"image {image!r} is not available to Incus: no image {alias} here, "
                                   f"{remote} failed ({unreachable}) and it cannot be built here: {cannot}")
    return alias


def build_here(cli: IncusCLI, image: str, cloud: bool, notice: Callable[[str], None]) -> str | None:
    """Build and import the image of ``image`` on this host (the cloud variant from the plain
    image when this daemon has it: one debootstrap for both); None, or why it could not."""
    distro, codename = image_codename(image)
    cannot = why_not_buildable() if distro == "debian" else "only Debian is built without an image server"
    if cannot is not None:
        return cannot
    alias, plain = cmd.image_alias(image, cloud), cmd.image_alias(image)
    base = plain if cloud and has_image(cli, plain) is None else None
    how = f"from {base} and cloud-init" if base else "with debootstrap"
    try:
        with told(notice, f"building Incus image {alias} {how} (once per host)"):
            rootfs.build(cli, distro, codename, alias, cloud, base)
    except (UnknownImage, CommandTimeout) as exc:
        return str(exc)
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Make sure each image given is there (building it when missing); one line each."""
    parser = argparse.ArgumentParser(prog="python -m pytest_orbstack.backends.incus.images",
                                     description="Build and import the Incus images of OrbStack image names.")
    parser.add_argument("--cloud", action="store_true", help="the cloud variant (with cloud-init)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="e.g. debian:bookworm, debian:13")
    args = parser.parse_args(argv)
    cli = IncusCLI()
    for image in args.images:
        try:
            alias = cmd.image_alias(image, args.cloud)
            if has_image(cli, alias) is None:
                print(f"image {alias} already imported", file=sys.stderr)
                continue
            print(f"image {image}: {image_ref(cli, image, args.cloud, notice=_stderr)}", file=sys.stderr)
        except MachineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
