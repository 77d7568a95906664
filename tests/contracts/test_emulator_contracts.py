"""Replay every recorded observation of real OrbStack against the orbctl emulator, on each of
its substrates (real Docker containers; real Incus LXC containers, skipped in one line where
Incus is unusable): the emulator must print what OrbStack printed, compared as the transcript says,
or the transcript is in KNOWN_GAPS with the reason. One machine (user ``runner``) serves all;
a transcript's ``emulator`` entry may substitute argv or environment, run setup and cleanup
commands, and name the fields compared when the source does not show them."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess

import pytest
from emusubstrate import SUBSTRATES, clean, leftovers, substrate_env
from orbctl_emulator.shims import install_shims
from testenv import needs_docker

from .transcripts import fill, known, load_all, matches, shape_errors

TRANSCRIPTS = load_all()
KNOWN_GAPS = {
    "create-crashed-on-startup": "an OrbStack fault (kali on amd64, 2.1.1); the emulator has no such fault",
    "create-download-404": "the emulator never downloads images (local Docker images only)",
    "create-download-502": "the emulator never downloads images (local Docker images only)",
    "create-fetch-index-html": "the emulator has no image index to fetch",
    "create-fetch-index-timeout": "the emulator has no image index to fetch",
    "create-network-timeout": "emulated machines get Docker's network at once",
    "create-setup-permission": "no /mnt/mac share, so no macOS privacy prompt to deny",
    "list-text-2023": "needs centos, openeuler and ubuntu machines (only local debian images here)",
    "list-text-provisioning-clone": "the text table's columns depend on the machines listed; the "
                                    "state itself comes with ORBCTL_EMULATOR_CLONE_STATE=provisioning",
}
# the gaps of the Incus substrate only
INCUS_GAPS = {"orb-local-is-a-relay-address": "on Incus NAME.orb.local is the machine's own address "
                                              "(the bridge's DNS), not OrbStack's relay"}


pytestmark = needs_docker("the emulator contract tests")


def test_every_transcript_is_replayed_or_a_known_gap():
    assert set(KNOWN_GAPS) <= set(TRANSCRIPTS)
    assert len(TRANSCRIPTS) >= 50 and len(KNOWN_GAPS) < 11
    assert len(TRANSCRIPTS) - len(KNOWN_GAPS) >= 40


@pytest.fixture(scope="module", params=SUBSTRATES)
def emulator(tmp_path_factory, request):
    substrate = request.param
    root = tmp_path_factory.mktemp("contracts")
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBCTL_EMULATOR_")}
    env.update(PATH=f"{install_shims(root / 'bin')}{os.pathsep}{os.environ['PATH']}", ORBCTL_EMULATOR_HOME=str(home),
               ORBCTL_EMULATOR_UID="502", **substrate_env(substrate))  # the Mac user's uid the emulator stands for
    machine = f"probe-{secrets.token_hex(3)}"
    run = subprocess.run(["orbctl", "create", "-u", "runner", "debian:bookworm", machine], env=env,
                         capture_output=True, text=True, cwd="/")
    assert run.returncode == 0, run.stderr
    info = json.loads(subprocess.run(["orbctl", "info", machine, "-f", "json"], env=env, capture_output=True,
                                     text=True, check=True).stdout)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    values = {"machine": machine, "user": "runner", "id": info["record"]["id"], "arch": arch, "cwd": "/tmp",
              "ip4": info["ip4"], "uid": "502"}
    yield env, values
    gone = subprocess.run(["orbctl", "delete", "-f", "-a"], env=env, capture_output=True, text=True, cwd="/")
    left = leftovers(substrate, home)
    if left:
        clean(substrate, home, left)
    assert left == [], f"the emulator left {substrate} objects behind: {gone.stderr.strip()}"


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_emulator_reproduces(name, emulator, tmp_path):
    if name in KNOWN_GAPS:
        pytest.skip(f"known emulator gap: {KNOWN_GAPS[name]}")
    if name in INCUS_GAPS and base_substrate(emulator) == "incus":
        pytest.skip(f"known gap of the emulator on Incus: {INCUS_GAPS[name]}")
    t, (base_env, machine_values) = TRANSCRIPTS[name], emulator
    spec = t.get("emulator") or {}
    values = {**t.get("values", {}), **machine_values} if spec.get("setup_machine") else \
        {**machine_values, **t.get("values", {}), "arch": machine_values["arch"]}
    env = {**base_env, **spec.get("env", {})}
    if known(t["orbstack_version"]):
        env["ORBCTL_EMULATOR_VERSION"] = str(t["orbstack_version"])
    cwd = fill(t.get("cwd", "/"), values)
    if "local_file" in spec:
        (tmp_path / spec["local_file"]).write_text(spec.get("local_content", "kind: probe\n"))
        cwd = str(tmp_path)

    def call(argv, **kwargs):
        return subprocess.run(fill(argv, values), env=env, capture_output=True, text=True, timeout=300, **kwargs)

    try:
        for step in t.get("setup", []):
            done = call(step, cwd="/")
            assert done.returncode == 0, (step, done.stderr)
        if t.get("kind") == "dns":
            own = call(["orbctl", "run", "-m", "{machine}", "-w", "/", "getent", "hosts", "{machine}.orb.local"])
            relay = own.stdout.split()[0]
            assert relay and relay != values["ip4"]  # spec["check"]: relay-differs-from-ip4
            return
        proc = call(spec.get("argv", t["argv"]), cwd=cwd, input=t["stdin"] if known(t["stdin"]) else None)
        expected = {"stdout": t["stdout"], "stderr": t["stderr"], "exit": t["exit"], **spec.get("compare", {})}
        match = spec.get("match", t["match"])
        if known(expected["exit"]):
            assert proc.returncode == expected["exit"], proc
        for field, actual in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            want = expected[field]
            if not known(want):
                continue
            if match == "json-shape" and field == "stdout":
                shape = {k: v for k, v in fill(want, values).items() if k not in spec.get("gaps", [])} \
                    if isinstance(want, dict) else fill(want, values)
                assert shape_errors(shape, json.loads(actual)) == []
            else:
                assert matches(match, fill(want, values), actual), (field, actual)
    finally:
        for step in spec.get("cleanup", []):
            call(step, cwd="/")


def base_substrate(emulator) -> str:
    return emulator[0].get("ORBCTL_EMULATOR_SUBSTRATE", "docker")
