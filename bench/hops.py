"""How far a call travels through pytest-orbstack: the package modules a data path runs through
and the hops between them, measured by tracing a real run (not read off the code).

    python bench/hops.py [golden|connector] [--engine docker]

``golden``: one test that asks ``orbstack_machine(deploy=...)`` (a golden machine is made and
deployed, the test's machine cloned from it, a check run on it, both deleted), run by
``pytest -n 0`` in this process. ``connector``: ``pyinfra -y @orbstack/NAME exec -- true`` on a
machine made beforehand, run in this process through pyinfra's CLI. Printed: the modules that
ran, and each hop (a call from a function of one package module to a function of another, counted
once per pair of modules); a hop to a module in a lower layer is ``down``, to a higher one ``UP``
(a loop back), judged by the layer order in pyproject's import-linter contract.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_orbstack"


def layer_of() -> Callable[[str], int]:
    """The layer index of a module (0 = top), from the layers contract in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"].get("importlinter", {}).get("contracts", [])
    layers = next((c["layers"] for c in contracts if c["type"] == "layers"), [])
    prefixes = [(p.strip(), i) for i, line in enumerate(layers) for p in line.replace("|", ":").split(":")]

    def layer(module: str) -> int:
        hits = [i for p, i in prefixes if module == p or module.startswith(p + ".")]
        return hits[0] if hits else -1  # the public re-export modules sit above every layer
    return layer


class Tracer:
    """Records calls from one package module into another (``sys.setprofile``)."""

    def __init__(self) -> None:
        self.modules: dict[str, None] = {}
        self.hops: dict[tuple[str, str], None] = {}

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code.co_name == "<module>":
            return  # calls only: importing a module is not a hop
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith(PACKAGE):
            return
        self.modules.setdefault(callee)
        caller = frame.f_back
        while caller is not None and (not caller.f_globals.get("__name__", "").startswith(PACKAGE)
                                      or caller.f_code.co_name == "<module>"):
            caller = caller.f_back  # through pyinfra's, pytest's and the stdlib's frames
        if caller is not None and caller.f_globals["__name__"] != callee:
            self.hops.setdefault((caller.f_globals["__name__"], callee))

    def install(self) -> None:
        sys.setprofile(self)
        import threading
        threading.setprofile(self)


def run_golden(work: Path, engine: str) -> int:
    import pytest
    (work / "deploy.py").write_text('from pyinfra.operations import files\n'
                                    'files.put(name="motd", src="motd", dest="/etc/motd", _sudo=True)\n')
    (work / "motd").write_text("hops\n")
    (work / "test_golden.py").write_text(textwrap.dedent('''
        def test_golden(orbstack_machine):
            m = orbstack_machine(deploy="deploy.py")
            assert m.host.file("/etc/motd").content_string == "hops\\n"
    '''))
    return int(pytest.main([str(work), "-q", "-n", "0", "-p", "no:cacheprovider", f"--orbstack-backend={engine}",
                            "--rootdir", str(work)]))


def run_connector(engine: str, tracer: Tracer) -> int:
    from pytest_orbstack.backends import get_backend
    backend = get_backend(engine)
    name = f"pto-hops-{os.getpid()}"
    backend.create(name, "debian:bookworm")
    try:
        from pyinfra_cli.main import cli
        tracer.install()
        try:
            cli.main(["-y", "--data", f"orbstack_backend={engine}", f"@orbstack/{name}", "exec", "--", "true"],
                     standalone_mode=False)
        except SystemExit as exc:  # pyinfra's CLI ends with sys.exit
            return int(exc.code or 0)
        finally:
            sys.setprofile(None)
        return 0
    finally:
        backend.delete(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=["golden", "connector"])
    parser.add_argument("--engine", default="docker")
    args = parser.parse_args()
    tracer = Tracer()
    with tempfile.TemporaryDirectory(prefix="pytest-orbstack-hops-") as tmp:
        if args.path == "golden":
            tracer.install()
            try:
                status = run_golden(Path(tmp), args.engine)
            finally:
                sys.setprofile(None)
        else:
            status = run_connector(args.engine, tracer)
    layer = layer_of()
    total = len(list((ROOT / PACKAGE).rglob("*.py")))
    print(f"{args.path}: {len(tracer.modules)} of {total} package modules ran; {len(tracer.hops)} hops")
    for caller, callee in tracer.hops:
        direction = "UP" if layer(callee) < layer(caller) and layer(callee) >= 0 else "down"
        if layer(callee) == layer(caller):
            direction = "same"
        print(f"  {direction:4} {caller.removeprefix(PACKAGE + '.')} -> {callee.removeprefix(PACKAGE + '.')}")
    return status


if __name__ == "__main__":
    sys.exit(main())
