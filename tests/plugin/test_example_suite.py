"""The example suite (examples/) passes on every engine: Docker, Podman, Incus, and OrbStack through the
orbctl emulator. This is what `bash scripts/dev.sh example` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from incusenv import incus, why_no_incus
from podmanenv import podman, why_no_podman

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["docker", "orbstack", "incus", "podman"])
def test_example_suite_passes(backend, orbctl_env, tmp_path):
    if backend == "incus" and why_no_incus():
        pytest.skip(why_no_incus() or "")
    if backend == "podman" and why_no_podman():
        pytest.skip(why_no_podman() or "")
    env = {**(orbctl_env if backend == "orbstack" else os.environ),
           "PYTEST_ORBSTACK_STATE_DIR": str(tmp_path / "state")}
    timings = tmp_path / "timings.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           f"--orbstack-backend={backend}", f"--orbstack-timings={timings}"],
                          cwd=ROOT / "examples", env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "7 passed" in proc.stdout, proc.stdout[-3000:]
    machines = json.loads(timings.read_text())["machines"]
    assert {m["backend"] for m in machines} == {backend}
    assert [m["kind"] for m in machines].count("golden") == 1
    assert {"web", "db"} <= {m["name"].split("-")[-2] for m in machines}  # the web+db example
    golden = next(m for m in machines if m["kind"] == "golden")
    assert golden["created_by"] == "operations.machine"  # the project's own pyinfra operation
    assert len(golden["deploys"]) == 2  # check_idempotent: converged and checked, then cloned
    assert not any(op["changed"] for op in golden["deploys"][1]["operations"])
    assert all(m["outcome"] == "deleted" for m in machines), machines
    if backend in ("docker", "podman"):  # the golden's snapshot image went with it
        golden = next(m["name"] for m in machines if m["kind"] == "golden")
        images = subprocess.run([backend, "images", "-q", f"pytest-orbstack-snapshot:{golden}"],
                                capture_output=True, text=True, check=True).stdout
        assert images.strip() == ""
    if backend == "incus":  # every machine went, the golden's snapshot with it
        names = {m["name"] for m in machines}
        left = {item["name"] for item in json.loads(incus("list", "-f", "json").stdout)}
        assert not names & left
    if backend == "podman":
        assert not {m["name"] for m in machines} & set(podman("ps", "-a", "--format", "{{.Names}}").stdout.split())
