"""What a machine may be made from, checked once and before any engine call.

Images, default users, deploys and cloud-init files are validated here and only here; the
fixtures, the engines and the pyinfra operations all call these functions. Each error is an
:class:`~pytest_orbstack.errors.InvalidInput` whose message names the problem in one line.

Relative paths (``deploy=``, ``cloud_init=``, ``machine.apply(path)``) follow one rule: they
are looked up in the folder of the test file that asks for them, then in pytest's rootdir
(outside pytest: the current directory); the first that exists wins.
"""

from __future__ import annotations

import hashlib
import os
import re
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Union

from pytest_orbstack import settings
from pytest_orbstack.errors import InvalidInput, UnknownImage
from pytest_orbstack.model.types import Resources

Deploy = Union[str, "os.PathLike[str]", Callable[[], Any]]

# The distros OrbStack offers (orbstack.dev/docs/machines/distros; nicholasq/raycast-extension-
# orbstack lists the same 16).
DISTROS = frozenset("alma alpine arch centos debian devuan fedora gentoo kali nixos openeuler "
                    "opensuse oracle rocky ubuntu void".split())
# Release numbers -> codenames, and the default release, of the distros the Docker engine can
# build. A numeric version missing here is an error; a codename is passed through.
RELEASES: dict[str, tuple[dict[str, str], str]] = {
    "debian": ({"11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"}, "bookworm"),
    "ubuntu": ({"20.04": "focal", "22.04": "jammy", "24.04": "noble", "24.10": "oracular",
                "25.04": "plucky", "25.10": "questing"}, "noble"),
}
# OrbStack offers these, but they run OpenRC or runit: a machine never becomes ready, since
# readiness is systemd's (docs.orbstack.dev/architecture: "systemd, OpenRC, and runit")
NON_SYSTEMD = frozenset({"alpine", "devuan", "gentoo", "void"})
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def parse_image(image: object) -> tuple[str, str | None]:
    """``"ubuntu:24.04"`` -> ``("ubuntu", "24.04")``; UnknownImage for a distro OrbStack does
    not offer, one without systemd, or a release number that does not exist."""
    if not isinstance(image, str) or not image:
        raise UnknownImage(f"invalid image {image!r}: use distro[:version], e.g. debian:bookworm")
    distro, _, version = image.partition(":")
    if distro not in DISTROS:
        raise UnknownImage(f"unknown image {image!r}: OrbStack distros are "
                           f"{', '.join(sorted(DISTROS - NON_SYSTEMD))}")
    if distro in NON_SYSTEMD:
        raise UnknownImage(
            f"image {image!r}: {distro} machines run OpenRC or runit, not systemd, and "
            f"pytest-orbstack waits for systemd to call a machine ready: use a systemd distro "
            f"(debian, ubuntu, fedora, arch, alma, rocky, ...)")
    releases = RELEASES.get(distro, ({}, ""))[0]
    if version and releases and version[0].isdigit() and version not in releases:
        known = ", ".join(f"{number} ({name})" for number, name in releases.items())
        raise UnknownImage(f"unknown {distro} version {version!r} in image {image!r}: "
                           f"known releases are {known}")
    return distro, version or None


def image_list(value: object, what: str = "image") -> list[str]:
    """Images from a list, or from a string of them separated by spaces or commas (the ini
    option, ``--orbstack-image``), each checked, in order, without repeats."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise UnknownImage(f"{what} must be an image or a list of images, not {value!r}")
    for image in items:
        parse_image(image)
    return list(dict.fromkeys(items))


def image_codename(image: str) -> tuple[str, str]:
    """``distro[:version]`` -> ``(distro, codename)``: ``ubuntu:24.04`` -> ``noble``."""
    distro, version = parse_image(image)
    releases, default = RELEASES.get(distro, ({}, "latest"))
    return distro, releases.get(version, version) if version else default


def check_user(user: object) -> str | None:
    """``user`` if it is a valid Linux user name (or None, the engine's default)."""
    if user is None or user == "root":
        return user
    if not isinstance(user, str) or not USER_RE.match(user):
        raise InvalidInput(f"invalid user name {user!r}: use a-z 0-9 _ - (at most 32, "
                           "starting with a letter or _)")
    return user


def default_login(user: str | None) -> str:
    """The machine's default user: ``user``, else ``$USER`` if valid and not root, else ``dev``."""
    checked = check_user(user)
    if checked is not None:
        return checked
    env_user = settings.login_user()
    return env_user if env_user != "root" and USER_RE.match(env_user) else "dev"


def search_dirs(*dirs: str | os.PathLike[str] | None) -> list[Path]:
    """The folders a relative path is looked up in, in order, without repeats."""
    return list(dict.fromkeys(Path(d).resolve() for d in dirs if d is not None))


def resolve_path(path: str | os.PathLike[str], what: str, dirs: Sequence[Path] = ()) -> Path:
    """The existing file ``path`` names: absolute as is, relative looked up in ``dirs`` (the
    current directory when none); InvalidInput naming where it was looked for."""
    candidate = Path(os.fspath(path)).expanduser()
    places = [candidate] if candidate.is_absolute() else [d / candidate for d in dirs or [Path.cwd()]]
    for place in places:
        if place.is_file():
            return place.resolve()
    where = " or ".join(str(p) for p in places)
    shown = os.fspath(path)
    shown = repr(shown) if shown != shown.strip() else shown  # a stray space shows
    raise InvalidInput(f"{what} not found: {shown} (looked for {where})")


def check_deploy(deploy: Deploy, dirs: Sequence[Path] = ()) -> CheckedDeploy:
    """A callable (or a checked :class:`DeployFile`) as is; a deploy file resolved to its
    absolute path, read and compiled once (:class:`DeployFile`); a
    ``module.function`` name that is not a file (what ``pyinfra INVENTORY module.function``
    takes) imported as the pyinfra CLI imports it, ``dirs`` playing its current directory
    (:mod:`.deploy_refs`)."""
    if callable(deploy) or isinstance(deploy, DeployFile):
        return deploy
    if not isinstance(deploy, (str, os.PathLike)):
        raise InvalidInput(f"invalid deploy {deploy!r}: use a deploy file path, a "
                           "module.function name or a callable")
    places = dirs or [Path.cwd()]
    if isinstance(deploy, str) and not any((d / deploy).is_file() for d in places):  # a file is a file
        from pytest_orbstack.model.deploy_refs import is_function_name, resolve_function
        if is_function_name(deploy):
            return resolve_function(deploy, places)
    return DeployFile.read(resolve_path(deploy, "deploy file", dirs))


class DeployFile(str):
    """A checked deploy file: its absolute path, with the ``code`` compiled from what was read
    then and that content's ``digest``. Checked once per apply and never read again by this
    package: pyinfra's loader runs this ``code`` (:func:`pytest_orbstack.pyinfra.deploy.run_deploy`)."""

    code: types.CodeType
    digest: str

    @classmethod
    def read(cls, path: Path) -> DeployFile:
        """``path`` read and compiled (a syntax error: ``FILE:LINE: SyntaxError in deploy: ...``)."""
        content = path.read_bytes()
        try:
            code = compile(content, str(path), "exec")
        except SyntaxError as exc:
            raise InvalidInput(f"{display_path(path)}:{exc.lineno}: SyntaxError in deploy: {exc.msg}") from None
        checked = cls(path)
        checked.code, checked.digest = code, hashlib.sha1(content).hexdigest()[:10]
        return checked


CheckedDeploy = Union[DeployFile, Callable[[], Any]]  # what check_deploy returns


def check_cloud_init(cloud_init: str | os.PathLike[str] | None,
                     dirs: Sequence[Path] = ()) -> str | None:
    """The absolute path of an existing cloud-init user-data file (or None)."""
    if cloud_init is None:
        return None
    return str(resolve_path(cloud_init, "cloud-init user-data file", dirs))


CAPABILITY_RE = re.compile(r"^(CAP_)?[A-Z][A-Z_]*[A-Z]$")


def check_names(value: object, what: str) -> tuple[str, ...]:
    """A list/tuple of strings as a tuple (a lone string is a mistake: it is not split)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


SIZE_RE = re.compile(r"^(\d+)\s*([MG])i?B?$", re.IGNORECASE)


def parse_size(value: object, what: str) -> int | None:
    """A size in MiB from ``"512M"``, ``"4G"`` or a number of MiB (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = SIZE_RE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"{what} must be a size such as '512M' or '4G' (or MiB as a number), "
                           f"not {value!r}")
    return int(match.group(1)) * (1024 if match.group(2).upper() == "G" else 1)


def check_resources(cpus: object = None, memory: object = None, disk: object = None,
                    isolated: object = False, capabilities: object = (), vm: object = False,
                    target: object = None) -> Resources:
    """The machine keywords ``cpus=``, ``memory=``, ``disk=``, ``isolated=``,
    ``capabilities=``, ``vm=`` and ``target=`` as one checked :class:`Resources`."""
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0):
        raise InvalidInput(f"cpus= must be a positive number, not {cpus!r}")
    if not isinstance(isolated, bool):
        raise InvalidInput(f"isolated= must be True or False, not {isolated!r}")
    if not isinstance(vm, bool):
        raise InvalidInput(f"vm= must be True or False, not {vm!r}")
    if target is not None and not (isinstance(target, str) and settings.INCUS_NAME_RE.match(target)):
        raise InvalidInput(f"target= must name a cluster member (letters, digits, '.', '_', '-'), not {target!r}")
    return Resources(cpus=cpus, memory_mib=parse_size(memory, "memory="),
                     disk_mib=parse_size(disk, "disk="), isolated=isolated,
                     capabilities=check_capabilities(capabilities), vm=vm, target=target)


def check_capabilities(value: object) -> tuple[str, ...]:
    """Linux capability names (``NET_ADMIN`` or ``CAP_NET_ADMIN``), upper-cased, ``CAP_`` dropped."""
    names = tuple(c.upper() for c in check_names(value, "capabilities="))
    for name in names:
        if not CAPABILITY_RE.match(name):
            raise InvalidInput(f"capabilities=: {name!r} is not a Linux capability name "
                               "(e.g. NET_ADMIN, SYS_TIME)")
    return tuple(n.removeprefix("CAP_") for n in names)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as messages show it: relative to the current directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)


def describe(deploy: Deploy) -> str:
    """How reports name a deploy: a callable's qualified name, a file's (display) path."""
    if callable(deploy):
        return str(getattr(deploy, "__qualname__", deploy))
    return display_path(deploy)


def closest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else ``""``."""
    import difflib
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
