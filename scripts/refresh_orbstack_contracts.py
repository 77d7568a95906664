#!/usr/bin/env python3
"""Refresh tests/contracts/orbstack/*.yaml from a real OrbStack (macOS only).

Runs each transcript's probe (its ``setup``, ``argv`` and the cleanup its ``emulator`` entry
names) against the real ``orbctl`` with one throwaway machine (``debian:bookworm``, user
``runner``), prints for every transcript whether this Mac agrees with what is stored and a
unified diff where it does not, and (unless --dry-run) rewrites the transcript's ``stdout``,
``stderr``, ``exit`` and ``orbstack_version`` with what this Mac printed, scrubbed into
placeholders: the machine's name -> ``{machine}``, its ID -> ``{id}``, its addresses ->
``{ip4}``/``{ip6}``, the Mac user, ``runner`` and home -> ``{user}``/``{home}``, the Mac's uid
-> ``{uid}``, the architecture -> ``{arch}``, the transcript's own ``values`` -> their names.
The public ``source`` is kept; ``observed`` records the date and version of the refresh.
--report FILE also writes every result as JSON: the file to send back (docs/orbstack.md).

Not probed: failures that cannot be provoked on purpose (download, crash, network faults) and
behaviour of other OrbStack versions (VERSION_BOUND), unless named with --only.

    python3 scripts/refresh_orbstack_contracts.py --dry-run --report orbstack-report.json
    python3 scripts/refresh_orbstack_contracts.py --only run-stdin-exit
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import getpass
import json
import os
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
from contracts.transcripts import HERE, fill, known, load_all, matches, shape_errors  # noqa: E402

NOT_PROVOKED = {"create-crashed-on-startup", "create-download-404", "create-download-502",
                "create-fetch-index-html", "create-fetch-index-timeout", "create-network-timeout",
                "create-setup-permission", "create-missing-ip", "create-missing-ip-2.2.3", "list-text-2023",
                "orb-local-is-a-relay-address"}
VERSION_BOUND = {"version-1.7.2", "clone-before-2.0", "push-to-root-denied-before-2.2.3", "delete-by-id-crash",
                 "list-text-provisioning-clone", "create-canceled-by-shutdown", "pull-isolated-before-2.2.0",
                 "create-limits-before-2.2.0", "info-json-flat-before-2025-02"}
TIMEOUT = 600


def orbctl(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["orbctl", *args], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def scrub(text: str, hidden: dict[str, str], uid: str) -> str:
    """Placeholders for this Mac's names, IDs and addresses (longest values first)."""
    for value, placeholder in sorted(hidden.items(), key=lambda kv: -len(kv[0])):
        if value:
            text = text.replace(value, placeholder)
    text = re.sub(rf"(?m)^{re.escape(uid)}$", "{uid}", text)
    text = re.sub(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "{id}", text)
    return re.sub(r"\b(?!127\.)(?:\d{1,3}\.){3}\d{1,3}\b(?!/)", "{ip4}", text)  # loopback kept


def probe(t: dict, values: dict[str, str], workdir: Path) -> dict:
    """Run one transcript's setup, argv and cleanup on this Mac; what argv printed."""
    spec = t.get("emulator") or {}
    if "local_file" in spec:
        (workdir / spec["local_file"]).write_text(spec.get("local_content", "kind: probe\n"))
    try:
        for step in fill(t.get("setup", []), values):
            subprocess.run(step, capture_output=True, text=True, timeout=TIMEOUT, check=True, cwd=workdir)
        done = subprocess.run(fill(t["argv"], values), capture_output=True, text=True, timeout=TIMEOUT,
                              cwd=fill(t.get("cwd", str(workdir)), values),
                              input=t["stdin"] if known(t["stdin"]) else None)
        return {"stdout": done.stdout, "stderr": done.stderr, "exit": done.returncode}
    finally:
        for step in fill(spec.get("cleanup", []), values):
            subprocess.run(step, capture_output=True, text=True, timeout=TIMEOUT, cwd=workdir)


def agrees(t: dict, seen: dict) -> bool:
    """Whether what this Mac printed matches the stored transcript, compared as it says."""
    for field in ("stdout", "stderr"):
        if not known(t[field]):
            continue
        if t["match"] == "json-shape" and field == "stdout":
            try:
                if shape_errors(t[field], json.loads(seen[field])):
                    return False
            except ValueError:
                return False
        elif not matches(t["match"], t[field], seen[field]):
            return False
    return not known(t["exit"]) or t["exit"] == seen["exit"]


def refresh(name: str, t: dict, values: dict[str, str], hidden: dict[str, str], uid: str, version: str,
            workdir: Path) -> dict:
    """Probe transcript ``name``; its refreshed form and whether it agreed with the stored one."""
    given = t.get("values", {})  # as the emulator suite: the probe machine's, or the transcript's own
    merged = {**given, **values} if (t.get("emulator") or {}).get("setup_machine") else \
        {**values, **given, "arch": values["arch"]}
    own = {str(merged[k]): f"{{{k}}}" for k in given if len(str(merged[k])) > 3}
    seen = probe(t, merged, workdir)
    update = {k: scrub(v, {**own, **hidden}, uid) if isinstance(v, str) else v for k, v in seen.items()}
    if t["match"] == "json-shape" and update["exit"] == 0:
        update.pop("stdout")  # a shape stays a shape; the raw answer goes to the report
    update["orbstack_version"] = version
    update["observed"] = f"{datetime.date.today()} with scripts/refresh_orbstack_contracts.py"
    return {"name": name, "agrees": agrees(fill(t, merged), seen), "seen": update, "new": {**t, **update}}


def show(result: dict, path: Path) -> None:
    """Print one result: agreement, and a unified diff of the stored file against the refresh."""
    print(f"{result['name']}: {'agrees' if result['agrees'] else 'DIFFERS'} (exit {result['seen']['exit']})")
    old = path.read_text().splitlines(keepends=True)
    new = yaml.safe_dump(result["new"], sort_keys=False, allow_unicode=True).splitlines(keepends=True)
    if not result["agrees"]:
        sys.stdout.writelines(difflib.unified_diff(old, new, f"stored/{path.name}", f"this-mac/{path.name}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="transcript ids (default: all that can be probed)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not rewrite")
    parser.add_argument("--report", type=Path, help="also write every result as JSON to this file")
    args = parser.parse_args()
    anywhere = os.environ.get("ORBSTACK_REFRESH_ANY_HOST") == "1"  # tests run it against the emulator
    if (platform.system() != "Darwin" and not anywhere) or orbctl("version").returncode:
        sys.exit("needs macOS with OrbStack: `orbctl version` must answer")
    version = orbctl("version").stdout.split()[1]
    transcripts = load_all()
    unknown = sorted(set(args.only or []) - set(transcripts))
    if unknown:
        sys.exit(f"no such transcript: {', '.join(unknown)}")
    wanted = args.only or [n for n in transcripts if n not in NOT_PROVOKED | VERSION_BOUND]
    machine = f"pto-probe-{secrets.token_hex(3)}"
    created = orbctl("create", "-u", "runner", "debian:bookworm", machine)
    if created.returncode:
        sys.exit(f"could not create the probe machine: {created.stderr.strip()}")
    results = []
    try:
        info = json.loads(orbctl("info", machine, "-f", "json").stdout)
        arch, uid = info["record"]["image"]["arch"], str(os.getuid())
        values = {"machine": machine, "user": "runner", "id": info["record"]["id"], "arch": arch, "cwd": "/tmp",
                  "uid": uid}
        hidden = {machine: "{machine}", info["record"]["id"]: "{id}", info.get("ip4", ""): "{ip4}",
                  info.get("ip6", ""): "{ip6}", str(Path.home()): "{home}", getpass.getuser(): "{user}",
                  "runner": "{user}", f" {arch} ": " {arch} ", f"Architecture: {arch}": "Architecture: {arch}"}
        with tempfile.TemporaryDirectory() as workdir:
            for name in wanted:
                result = refresh(name, transcripts[name], values, hidden, uid, version, Path(workdir))
                show(result, HERE / f"{name}.yaml")
                results.append(result)
                if not args.dry_run:
                    (HERE / f"{name}.yaml").write_text(
                        yaml.safe_dump(result["new"], sort_keys=False, allow_unicode=True))
    finally:
        for leftover in [m for m in orbctl("list", "-q").stdout.split() if m.startswith(machine)]:
            orbctl("delete", "-f", leftover)
        if args.report:
            args.report.write_text(json.dumps({"orbstack_version": version, "date": str(datetime.date.today()),
                                               "results": [{k: r[k] for k in ("name", "agrees", "seen")}
                                                           for r in results]}, indent=1))
    differing = [r["name"] for r in results if not r["agrees"]]
    print(f"{len(results) - len(differing)} agree, {len(differing)} differ: {' '.join(differing) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
