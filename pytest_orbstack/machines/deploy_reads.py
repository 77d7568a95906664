"""What a golden machine's deploy read from outside its folders, for the golden cache's key.

A cache entry's digest (:func:`.cache.cache_digest`) is known before the deploy runs; what
else the deploy reads is known only once it ran. :func:`recording` watches the deploy (it runs
in this process, through pyinfra's API) and :func:`inputs` turns what it saw into the entry's
inputs, kept beside the entry (:func:`save`, one JSON file per digest in the state folder);
:func:`changed` says which of them differs now, so that the entry is not used:

- files opened for reading (an audit hook on ``open``; imports and ``local.include`` open
  files too) by the deploy's code or a library it calls (pyinfra, Jinja), not by this package,
  pytest or the interpreter, outside the deploy's folders (those are in the digest), the
  interpreter's and installed packages' folders, ``/proc``, ``/sys``, ``/dev`` and
  ``__pycache__``: path -> hash of the content ("" when missing);
- local modules (a file outside the standard library, installed packages and this package):
  those the deploy imported first, and those its code (and theirs, in turn) names in an
  import statement that an earlier import had loaded already: as files;
- folders listed (``os.listdir``, ``os.scandir``, ``glob``) outside the same places: path or
  pattern -> hash of the sorted names found ("" when missing). An existence check
  (``os.path.exists``) raises no audit event and is not seen;
- environment variables the deploy's own code read (an item, ``get`` or ``in`` of the
  environment mapping, which the ``os`` module's own reader uses too; never ``PYTEST_*``):
  name -> hash of the value ("" when unset).

The audit hook cannot be removed: outside a recording it returns at once. The environment's
reader is replaced only while a recording runs. Both record from any thread (the plugin's spare
clones run beside the deploy) by the code that asked: this package's threads are not the
deploy's.
"""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import json
import os
import site
import sys
import sysconfig
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_orbstack import settings

SYSTEM = ("/proc/", "/sys/", "/dev/")
HOSTS = ("pytest", "_pytest", "pluggy", "xdist", "execnet", "gevent", "coverage")  # not the deploy's


def _roots() -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The standard library's folders, installed packages' folders, this package's folder."""
    paths = sysconfig.get_paths()
    stdlib = {paths["stdlib"], paths["platstdlib"]}
    installed = {*site.getsitepackages(), site.getusersitepackages(), paths["purelib"], paths["platlib"]}
    real = lambda places: tuple(sorted({os.path.realpath(p) + os.sep for p in places if p}))  # noqa: E731
    return real(stdlib), real(installed), os.path.realpath(Path(__file__).parent.parent) + os.sep


STDLIB, INSTALLED, OWN = _roots()
PREFIXES = tuple(os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


@functools.lru_cache(maxsize=4096)
def kind(filename: str) -> str:
    """Whose code ``filename`` is: ``stdlib``, ``own`` (this package), ``host`` (pytest and
    the like), ``library`` (another installed package) or ``user``."""
    if filename.startswith("<"):
        return "stdlib"  # frozen importlib, exec'd strings
    path = os.path.realpath(filename)
    if path.startswith(OWN):
        return "own"
    for root in INSTALLED:
        if path.startswith(root):
            top = path[len(root):].split(os.sep, 1)[0].split(".", 1)[0]
            return "host" if top.startswith(HOSTS) else "library"
    return "stdlib" if path.startswith(STDLIB + PREFIXES) else "user"


def _caller(frame: FrameType | None) -> str:
    """The kind of the innermost frame from ``frame`` out that is not the standard library's."""
    while frame is not None:
        found = kind(frame.f_code.co_filename)
        if found != "stdlib":
            return found
        frame = frame.f_back
    return "stdlib"


@dataclass
class Recording:
    """What one deploy read: files (absolute paths) and environment variables."""
    folders: list[Path]
    files: set[str] = field(default_factory=set)
    env: set[str] = field(default_factory=set)
    listings: set[str] = field(default_factory=set)  # "dir:PATH" and "glob:PATTERN"
    modules: set[str] = field(default_factory=set)  # sys.modules when it began


_lock = threading.Lock()
_active: list[Recording] = []
_hooked = False
_getitem = os._Environ.__getitem__


def _reading(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return not set(mode) & set("wax+")
    return isinstance(flags, int) and not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)


LISTING_EVENTS = {"os.listdir": "dir", "os.scandir": "dir", "glob.glob": "glob"}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: a file opened for reading, a folder listed, by the deploy's or a
    library's code, into every running recording."""
    if not _active or (event != "open" and event not in LISTING_EVENTS):
        return
    try:
        path, frame = args[0], sys._getframe(1)
        if event in ("os.listdir", "os.scandir") and _machinery(frame.f_code.co_filename):
            return  # a glob's own listing (the pattern is the input), or the import system's
        if (event == "open" and not _reading(*args[1:3])) or isinstance(path, int) \
                or _caller(frame) not in ("user", "library"):
            return
        name = os.path.abspath(os.fsdecode(path if path is not None else "."))
        with _lock:
            for recording in _active:
                if event == "open":
                    recording.files.add(name)
                else:
                    recording.listings.add(f"{LISTING_EVENTS[event]}:{name}")
    except Exception:  # never in the way of the call itself
        return


def _machinery(filename: str) -> bool:
    """Whether code of ``filename`` lists folders for the interpreter, not for the deploy: a
    glob's own listing, the import system's (``sys.path`` folders, entry points' metadata)."""
    return filename == glob.__file__ or filename.startswith("<frozen") \
        or f"{os.sep}importlib{os.sep}" in filename or filename.endswith(f"{os.sep}pkgutil.py")


def _recording_getitem(self: Any, key: Any) -> Any:
    """``os._Environ.__getitem__`` during a recording: a read by user code is recorded."""
    if _active and isinstance(key, str) and not key.startswith("PYTEST_") and _caller(sys._getframe(1)) == "user":
        with _lock:
            for recording in _active:
                recording.env.add(key)
    return _getitem(self, key)


@contextmanager
def recording(folders: Iterable[Path]) -> Iterator[Recording]:
    """Record what the code run inside reads (see the module's text); ``folders``: the
    deploy's folders, whose files are not its inputs here. The environment's reader is back
    to the standard one when the last recording ends."""
    global _hooked
    current = Recording([Path(f).resolve() for f in folders], modules=set(sys.modules))
    with _lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True
        _active.append(current)
        os._Environ.__getitem__ = _recording_getitem  # type: ignore[method-assign]
    try:
        yield current
    finally:
        with _lock:
            _active.remove(current)
            if not _active:
                os._Environ.__getitem__ = _getitem  # type: ignore[method-assign]


def _imported(source: str) -> set[str]:
    """The absolute module names the import statements of file ``source`` name (with their
    parent packages; relative imports are left out); none when it cannot be read or parsed."""
    try:
        tree = ast.parse(Path(source).read_bytes(), source)
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {".".join(name.split(".")[:n]) for name in names for n in range(1, name.count(".") + 2)}


def _module_file(name: str) -> str | None:
    """The file of loaded module ``name`` when it is a local one (user code), else None."""
    file = getattr(sys.modules.get(name), "__file__", None)
    return os.path.realpath(file) if isinstance(file, str) and kind(file) == "user" else None


def _local_modules(recording: Recording, sources: Iterable[str]) -> set[str]:
    """The files of the local modules the deploy imported first, and of those named by an
    import statement of ``sources`` or of those modules in turn."""
    found = {f for name in set(sys.modules) - recording.modules if (f := _module_file(name))}
    queue, seen = [*sources, *found], set()
    while queue:
        source = queue.pop()
        if source in seen:
            continue
        seen.add(source)
        for name in _imported(source):
            file = _module_file(name)
            if file and file not in found:
                found.add(file)
                queue.append(file)
    return found


def _is_input(path: str, folders: list[Path], folder: bool = False) -> bool:
    """Whether file ``path`` (real; a folder or pattern with ``folder``) is an input here:
    outside the deploy's folders, the interpreter's, installed packages' and this package's
    folders, the system's and caches."""
    if path.startswith((*SYSTEM, *STDLIB, *INSTALLED, *PREFIXES, OWN)) or f"{os.sep}__pycache__{os.sep}" in path:
        return False
    if not folder and os.path.isdir(path):
        return False
    return not any(Path(os.path.realpath(path)).is_relative_to(f) for f in folders)


def _hash(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data is not None else ""


def file_hash(path: str) -> str:
    """The hash of file ``path``'s content; "" when it cannot be read (missing)."""
    try:
        return _hash(Path(path).read_bytes())
    except OSError:
        return ""


def value_hash(value: str | None) -> str:
    """The hash of an environment variable's value; "" when unset."""
    return _hash(value.encode("utf-8", "surrogateescape") if value is not None else None)


def listing_hash(listing: str) -> str:
    """The hash of what ``listing`` (``dir:PATH`` or ``glob:PATTERN``) finds now; "" when the
    folder is missing."""
    how, _, where = listing.partition(":")
    try:
        names = sorted(glob.glob(where, recursive=True)) if how == "glob" else sorted(os.listdir(where))
    except OSError:
        return ""
    return _hash("\n".join(names).encode("utf-8", "surrogateescape"))


def inputs(recording: Recording, sources: Iterable[str]) -> dict[str, dict[str, str]]:
    """The inputs of a finished ``recording`` (``sources``: the deploy's own code files):
    ``{"files": {path: hash}, "env": {name: hash}, "listings": {listing: hash}}`` (see the
    module's text)."""
    opened = {os.path.realpath(f) for f in recording.files}
    scanned = [*sources, *(f for f in opened if f.endswith(".py"))]
    files = {f for f in opened | _local_modules(recording, scanned) if _is_input(f, recording.folders)}
    listed = {e for e in recording.listings if _is_input(e.partition(":")[2], recording.folders, folder=True)}
    environment = settings.child_env({})
    return {"files": {f: file_hash(f) for f in sorted(files)},
            "env": {name: value_hash(environment.get(name)) for name in sorted(recording.env)},
            "listings": {entry: listing_hash(entry) for entry in sorted(listed)}}


def _place(digest: str) -> Path:
    return settings.state_dir() / "cache-inputs" / f"{digest}.json"


def save(digest: str, found: dict[str, dict[str, str]]) -> None:
    """Keep ``found`` (:func:`inputs`) as the inputs of the entry of ``digest`` (replaced whole)."""
    place = _place(digest)
    place.parent.mkdir(parents=True, exist_ok=True)
    partial = place.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(found, indent=1, sort_keys=True))
    os.replace(partial, place)


def forget(digest: str) -> None:
    """Remove the inputs kept for the entry of ``digest`` (or of a digest it begins)."""
    if digest:
        for place in _place("x").parent.glob(f"{digest}*.json"):
            place.unlink(missing_ok=True)


def changed(digest: str) -> str | None:
    """Which input of the entry of ``digest`` differs now (a file changed or gone, a variable
    changed or unset): a phrase to show; None when none does. Inputs not kept (a lost or
    unreadable file) count as changed: the entry is never used on a guess."""
    try:
        found = json.loads(_place(digest).read_text())
        files, env, listings = dict(found["files"]), dict(found["env"]), dict(found.get("listings", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return "what its deploy read is not known"
    for listing, old in listings.items():
        if listing_hash(listing) != old:
            return f"what {listing.partition(':')[2]} lists changed"
    for path, old in files.items():
        if file_hash(path) != old:
            return f"file {path} {'changed' if old and os.path.exists(path) else 'appeared or is gone'}"
    environment = settings.child_env({})
    for name, old in env.items():
        if value_hash(environment.get(name)) != old:
            return f"environment variable {name} changed"
    return None
