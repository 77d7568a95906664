#!/usr/bin/env python3
"""Refresh tests/contracts/orbstack/*.yaml from a real OrbStack (macOS only).

Runs each transcript's probe against the real ``orbctl`` with one throwaway machine
(``debian:bookworm``, user ``runner``), then rewrites the transcript's ``stdout``, ``stderr``,
``exit`` and ``orbstack_version`` with what this Mac printed, scrubbed into placeholders:
the machine's name -> ``{machine}``, its ID -> ``{id}``, its addresses -> ``{ip4}``/``{ip6}``,
the Mac user and home -> ``{user}``/``{home}``, the architecture -> ``{arch}``. The public
``source`` is kept; ``observed`` records the date and version of the refresh.

Not probed: failures that cannot be provoked on purpose (download, crash, network faults) and
behaviour of other OrbStack versions (VERSION_BOUND), unless named with --only.

    python3 scripts/refresh_orbstack_contracts.py            # refresh what can be probed
    python3 scripts/refresh_orbstack_contracts.py --only run-stdin-exit --dry-run
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import platform
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from contracts.transcripts import HERE, fill, known, load_all  # noqa: E402

NOT_PROVOKED = {"create-crashed-on-startup", "create-canceled-by-shutdown", "create-download-404",
                "create-download-502", "create-fetch-index-html", "create-fetch-index-timeout",
                "create-network-timeout", "create-setup-permission", "create-missing-ip",
                "create-missing-ip-2.2.3", "list-text-2023", "pull-isolated-before-2.2.0"}
VERSION_BOUND = {"version-1.7.2", "clone-before-2.0", "push-to-root-denied-before-2.2.3",
                 "delete-by-id-crash", "list-text-provisioning-clone"}


def orbctl(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["orbctl", *args], capture_output=True, text=True, timeout=600, **kwargs)


def scrub(text: str, secrets_: dict[str, str]) -> str:
    """Placeholders for this Mac's names, IDs and addresses (longest values first)."""
    for value, placeholder in sorted(secrets_.items(), key=lambda kv: -len(kv[0])):
        if value:
            text = text.replace(value, placeholder)
    text = re.sub(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "{id}", text)
    return re.sub(r"\b(?:\d{1,3}\.){3}\d{1,3}\b(?!/)", "{ip4}", text)


def probe(t: dict, values: dict[str, str], workdir: Path) -> dict:
    """Run one transcript's setup and argv on this Mac; what it printed."""
    spec = t.get("emulator") or {}
    if "local_file" in spec:
        (workdir / spec["local_file"]).write_text("kind: probe\n")
    for step in fill(t.get("setup", []), values):
        subprocess.run(step, capture_output=True, text=True, timeout=600, check=True)
    try:
        argv = fill(t["argv"], values)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              cwd=fill(t.get("cwd", str(workdir)), values),
                              input=t["stdin"] if known(t["stdin"]) else None)
        return {"stdout": done.stdout, "stderr": done.stderr, "exit": done.returncode}
    finally:
        for step in fill(spec.get("cleanup", []), values):
            subprocess.run(step, capture_output=True, text=True, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="transcript ids (default: all that can be probed)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not rewrite")
    args = parser.parse_args()
    if platform.system() != "Darwin" or orbctl("version").returncode:
        sys.exit("needs macOS with OrbStack: `orbctl version` must answer")
    version = orbctl("version").stdout.split()[1]
    transcripts = load_all()
    wanted = args.only or [n for n in transcripts if n not in NOT_PROVOKED | VERSION_BOUND]
    machine = f"pto-probe-{secrets.token_hex(3)}"
    created = orbctl("create", "-u", "runner", "debian:bookworm", machine)
    if created.returncode:
        sys.exit(f"could not create the probe machine: {created.stderr.strip()}")
    try:
        info = json.loads(orbctl("info", machine, "-f", "json").stdout)
        arch = info["record"]["image"]["arch"]
        values = {"machine": machine, "user": "runner", "id": info["record"]["id"], "arch": arch, "cwd": "/tmp"}
        hidden = {machine: "{machine}", info["record"]["id"]: "{id}", info.get("ip4", ""): "{ip4}",
                  info.get("ip6", ""): "{ip6}", str(Path.home()): "{home}", getpass.getuser(): "{user}",
                  f" {arch} ": " {arch} "}
        with tempfile.TemporaryDirectory() as workdir:
            for name in wanted:
                t = transcripts[name]
                seen = probe(t, values, Path(workdir))
                update = {k: scrub(v, hidden) if isinstance(v, str) else v for k, v in seen.items()}
                update["orbstack_version"] = version
                update["observed"] = f"{datetime.date.today()} with scripts/refresh_orbstack_contracts.py"
                print(f"{name}: exit {seen['exit']}")
                if not args.dry_run:
                    path = HERE / f"{name}.yaml"
                    path.write_text(yaml.safe_dump({**t, **update}, sort_keys=False, allow_unicode=True))
    finally:
        for leftover in [m for m in orbctl("list", "-q").stdout.split() if m.startswith(machine)]:
            orbctl("delete", "-f", leftover)
    return 0


if __name__ == "__main__":
    sys.exit(main())
