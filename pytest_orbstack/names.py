"""Machine names: what OrbStack accepts, checked before any engine call."""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidName

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
RESERVED = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})
MAX_LENGTH = 63  # the name becomes the machine's hostname


def validate_machine_name(name: object) -> str:
    """Return ``name`` if OrbStack accepts it, else raise InvalidName saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"invalid machine name {name!r}: must be a non-empty string")
    if name.lower() in RESERVED:
        raise InvalidName(f"invalid machine name {name!r}: reserved by OrbStack "
                          f"({', '.join(sorted(RESERVED))})")
    if len(name) > MAX_LENGTH:
        raise InvalidName(f"invalid machine name {name!r}: longer than {MAX_LENGTH} characters")
    if not NAME_RE.match(name):
        raise InvalidName(f"invalid machine name {name!r}: use 2+ characters from a-z A-Z 0-9 - . "
                          "starting with a letter or digit (no '_' or spaces)")
    return name


def slug_name(prefix: str, text: str, max_length: int = MAX_LENGTH) -> str:
    """A valid, deterministic machine name ``prefix-<readable slug>-<hash>`` for any text."""
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    room = max_length - len(prefix) - len(digest) - 2
    slug = slug[-room:].strip("-") if room > 0 else ""
    return validate_machine_name("-".join(p for p in (prefix, slug, digest) if p))
