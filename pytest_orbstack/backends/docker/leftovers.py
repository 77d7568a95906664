"""Images a Docker engine holds for this package that nothing needs any more.

Snapshot images (one per golden machine, shared by its clones) and clone images carry the
labels of the session that made them. A machine made in one session may be kept, reused and
kept again by later sessions, so no session record says which images it still runs from: the
engine does. An image is needed while a container (any state) runs from it or from an image
built on it, or while the machine it was taken from still exists (its session may clone again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pytest_orbstack.backends.docker import commands as cmd
from pytest_orbstack.backends.docker.cli import DockerCLI
from pytest_orbstack.backends.docker.commands import LABEL

SOURCES = (f"{LABEL}.snapshot-of", f"{LABEL}.clone-of")  # the machine an image was taken from


def labelled_images(docker: DockerCLI) -> list[dict[str, Any]]:
    """``docker image inspect`` of every image labelled with a pytest-orbstack session."""
    ids = sorted(set(docker.call(cmd.labelled_images()).stdout.split()))
    if not ids:
        return []
    proc = docker.call(cmd.image_inspect(*ids), check=False)  # one removed meanwhile: the rest
    return list(json.loads(proc.stdout or "[]"))


def needed(docker: DockerCLI, image: dict[str, Any]) -> bool:
    """Whether a container runs from ``image`` (or from an image built on it), or the machine
    it was taken from still exists."""
    if docker.call(cmd.containers_from(image["Id"])).stdout.split():
        return True
    labels = image["Config"].get("Labels") or {}
    return any(docker.find(labels[key]) is not None for key in SOURCES if labels.get(key))


def remove_unused(docker: DockerCLI, removable: Callable[[Mapping[str, str]], bool]) -> list[str]:
    """Remove the labelled images ``removable`` accepts that are not :func:`needed`; returns
    their names. The engine refuses to remove an image a container started from meanwhile."""
    removed = []
    for image in labelled_images(docker):
        if not removable(image["Config"].get("Labels") or {}) or needed(docker, image):
            continue
        refs = image.get("RepoTags") or [image["Id"]]
        for ref in refs:
            docker.call(cmd.remove_image(ref), ok=("conflict", "No such image"))
        if docker.call(cmd.image_id(image["Id"]), check=False).returncode != 0:
            removed.append(refs[0])
    return removed
