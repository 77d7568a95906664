"""Machine names: what OrbStack accepts, checked before any engine call."""

from __future__ import annotations

import hashlib
import re

from pytest_orbstack.errors import InvalidName

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
RESERVED = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})
# The name becomes the machine's hostname (LXC's lxc.uts.name): OrbStack checks no length,
# LXC refuses 65 bytes and more at the machine's first start (OrbStack's source, orbstack/
# swift-nio cheru/danny/next scon/start.go; lxc/lxc confile.c set_config_uts_name).
MAX_LENGTH = 64
DNS_LABEL = 63  # names the package makes stay reachable as NAME.orb.local (one DNS label)


def validate_machine_name(name: object) -> str:
    """Return ``name`` if OrbStack accepts it, else raise InvalidName saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"invalid machine name {name!r}: must be a non-empty string")
    if name.lower() in RESERVED:
        raise InvalidName(f"invalid machine name {name!r}: reserved by OrbStack "
                          f"({', '.join(sorted(RESERVED))})")
    if len(name) > MAX_LENGTH:
        raise InvalidName(f"invalid machine name {name!r}: longer than {MAX_LENGTH} characters "
                          "(it becomes the hostname)")
    if not NAME_RE.match(name):
        raise InvalidName(f"invalid machine name {name!r}: use 2+ characters from a-z A-Z 0-9 - . "
                          "starting with a letter or digit (no '_' or spaces)")
    return name


PREFIX = "pto-"  # every machine pytest-orbstack makes: pto-<session id>-<test>-<hash>
SESSION_LABEL = "pytest-orbstack.session"  # on a session's machines and images: its id
PROJECT_LABEL = "pytest-orbstack.project"  # and its user and project: project_tag()


def project_tag(user: str, project: str) -> str:
    """The label value naming a session's user and project (a hash: any path fits a label)."""
    return hashlib.sha1(f"{user}\0{project}".encode()).hexdigest()[:12]


def session_prefix(session_id: str) -> str:
    """Every machine of a session is named ``pto-<session id>-...``: the one place that says so."""
    return f"{PREFIX}{session_id}"


def readable(key: str) -> str:
    """The readable part of a test key: ``tests/sub/test_web.py::test_x[a]#0`` ->
    ``test_web::test_x[a]#0`` (folders and ``.py`` dropped; other keys unchanged)."""
    path, sep, rest = key.partition("::")
    if not sep:
        return key
    return f"{path.rsplit('/', 1)[-1].removesuffix('.py')}::{rest}"


def slug_name(prefix: str, text: str, max_length: int = DNS_LABEL) -> str:
    """A valid, deterministic machine name ``prefix-<slug>-<hash>`` for any text: the slug is
    the readable start of ``text`` (cut at the end when too long, keeping what follows its
    last ``#``: a machine's name in its test), the hash of all of it keeps names unique."""
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    head, sep, tail = readable(text).rpartition("#")
    if not sep:
        head, tail = tail, ""
    slugs = [re.sub(r"[^a-zA-Z0-9]+", "-", part).strip("-").lower() for part in (head, tail)]
    slugs[1] = slugs[1][:24].strip("-")
    room = max_length - len(prefix) - len(digest) - 2 - (len(slugs[1]) + 1 if slugs[1] else 0)
    slugs[0] = slugs[0][:room].strip("-") if room > 0 else ""
    return validate_machine_name("-".join(p for p in (prefix, *slugs, digest) if p))
