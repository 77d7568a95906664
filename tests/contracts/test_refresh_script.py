"""scripts/refresh_orbstack_contracts.py, the recorder a Mac user runs, run here against the
orbctl emulator (ORBSTACK_REFRESH_ANY_HOST=1): it probes the transcripts it is given, says which
agree, prints a diff for one that does not, writes the report to send back, changes no
transcript with --dry-run and leaves no machine behind."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from orbctl_emulator.shims import install_shims
from testenv import ROOT, needs_docker

from .transcripts import HERE

pytestmark = needs_docker("the recorder test")
SCRIPT = ROOT / "scripts" / "refresh_orbstack_contracts.py"


def test_the_recorder_probes_diffs_and_reports_without_rewriting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBCTL_EMULATOR_")}
    env.update(PATH=f"{install_shims(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}",
               ORBCTL_EMULATOR_HOME=str(tmp_path / "home"), ORBSTACK_REFRESH_ANY_HOST="1",
               ORBCTL_EMULATOR_UID=str(os.getuid() if os.getuid() >= 500 else 501))
    wanted = ["logs-error-on-stdout-exit-0", "rename-changes-the-hostname", "default-user-sudoers-file",
              "list-json-shape", "run-stdin-exit"]
    before = {name: (HERE / f"{name}.yaml").read_text() for name in wanted}
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--report", str(report), "--only", *wanted],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    assert {name: r["agrees"] for name, r in results.items()} == dict.fromkeys(wanted, True), done.stdout
    assert results["rename-changes-the-hostname"]["seen"]["stdout"] == \
        "{machine}-r2\n{machine}-r2\n127.0.1.1\t{machine}-r2\n"  # scrubbed into placeholders
    assert results["default-user-sudoers-file"]["seen"]["stdout"] == "{user} ALL=(ALL) NOPASSWD:ALL"
    assert done.stdout.splitlines()[-1] == "5 agree, 0 differ: -"
    assert {name: (HERE / f"{name}.yaml").read_text() for name in wanted} == before
    env["ORBCTL_EMULATOR_VERSION"] = "2.2.2"  # a different answer: push as the user (#407)
    differs = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--only", "push-to-root-2.2.3"],
                             env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert "push-to-root-2.2.3: DIFFERS (exit 1)" in differs.stdout
    assert "+++ this-mac/push-to-root-2.2.3.yaml" in differs.stdout and "-exit: 0" in differs.stdout
    left = subprocess.run(["orbctl", "list", "-q"], env=env, capture_output=True, text=True).stdout
    assert left == ""


def test_the_recorder_scrubs_this_macs_identity():
    spec = importlib.util.spec_from_file_location("refresh", SCRIPT)
    assert spec is not None and spec.loader is not None
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    text = "501\n501\nID: 01K2G8TY5GM9C3CN95KCB4ZG8B\nIPv4: 192.168.139.207\nmac-probe-1 /Users/jane\n1501\n"
    assert refresh.scrub(text, {"mac-probe-1": "{machine}", "/Users/jane": "{home}"}, "501") == \
        "{uid}\n{uid}\nID: {id}\nIPv4: {ip4}\n{machine} {home}\n1501\n"
