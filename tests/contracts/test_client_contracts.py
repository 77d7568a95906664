"""Replay every recorded observation of real OrbStack against the client, without Docker: a
fake ``subprocess.run`` answers the transcript's verb with what OrbStack printed (any other
verb gets OrbStack's not-found answer, itself a transcript), and the client's parsers and
error mapping must give the typed result the transcript's ``client`` entry names."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from pytest_orbstack import errors
from pytest_orbstack.backends.orbstack import client as orbctl_mod
from pytest_orbstack.backends.orbstack.backend import OrbStackBackend
from pytest_orbstack.backends.orbstack.client import Orbctl

from .transcripts import fill, known, load_all, sample

TRANSCRIPTS = load_all()
REPLAYED = sorted(k for k, t in TRANSCRIPTS.items() if isinstance(t.get("client"), dict))
DEFAULTS = {"machine": "probe", "id": "01K2G8TY5GM9C3CN95KCB4ZG8B", "user": "runner", "arch": "arm64"}


def test_at_least_25_transcripts_each_with_a_source_and_a_client_verdict():
    assert len(TRANSCRIPTS) >= 25
    for name, t in TRANSCRIPTS.items():
        verdict = t.get("client")
        assert isinstance(verdict, dict) or str(verdict).startswith("none ("), name


def answer_of(t: dict[str, Any], spec: dict[str, Any], values: dict[str, str]) -> tuple[int, str, str]:
    """What OrbStack printed, with unknown parts replayed as empty (and an unknown exit code
    as the transcript's ``replay_exit``: the client treats every non-zero exit alike)."""
    rc = t["exit"] if known(t["exit"]) else spec.get("replay_exit", 0)
    stdout = t["stdout"] if known(t["stdout"]) else ""
    if t["match"] == "json-shape":
        stdout = json.dumps(sample(fill(stdout, values)))
    stderr = t["stderr"] if known(t["stderr"]) else ""
    return rc, fill(stdout, values), fill(stderr, values)


def resolve(result: Any, path: str) -> Any:
    if isinstance(result, dict):
        return result[path]
    for part in path.split("."):
        result = getattr(result, part)
    return result


@pytest.mark.parametrize("name", REPLAYED)
def test_client_gives_the_typed_result(name, monkeypatch):
    t = TRANSCRIPTS[name]
    spec = t["client"]
    values = {**DEFAULTS, **t.get("values", {})}
    verb = t["argv"][1]
    version = t["orbstack_version"] if known(t["orbstack_version"]) else "2.2.3"
    answers = {"run": (0, "", ""), "version": (0, f"Version: {version} (0)\n", ""),
               verb: answer_of(t, spec, values)}
    not_found = (1, "", f"[-32098] machine not found: '{values['machine']}'\n")  # info-not-found
    calls: list[list[str]] = []

    def fake_run(argv, **kwargs):
        calls.append(list(argv))
        rc, out, err = answers.get(argv[1], not_found)
        return subprocess.CompletedProcess(argv, rc, out.encode(), err.encode())

    monkeypatch.setattr(orbctl_mod, "_VERSIONS", {})
    monkeypatch.setattr(orbctl_mod.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(orbctl_mod.subprocess, "run", fake_run)
    args, kwargs = fill(spec.get("args", []), values), fill(spec.get("kwargs", {}), values)
    if spec["call"] == "backend_info_coming_up":
        doc = {"record": {"id": "x", "name": "probe", "state": spec["state"]}, "ip4": "192.0.2.1"}
        answers["info"] = (0, json.dumps(doc), "")
        result: Any = OrbStackBackend().info("probe")
    elif "raises" in spec:
        with pytest.raises(errors.MachineError) as caught:
            getattr(Orbctl(), spec["call"])(*args, **kwargs)
        assert type(caught.value).__name__ == spec["raises"], caught.value
        assert spec.get("message", "") in str(caught.value)
        result = None
    else:
        result = getattr(Orbctl(), spec["call"])(*args, **kwargs)
    if "returns" in spec:
        expected = fill(spec["returns"], values)
        if isinstance(expected, dict):
            assert {k: resolve(result, k) for k in expected} == expected
        else:
            assert (list(result) if isinstance(result, tuple) else result) == expected
    if "returns_len" in spec:
        assert len(result) == spec["returns_len"]
    if "contains" in spec:
        want = spec["contains"]
        assert any(result[i:i + len(want)] == want for i in range(len(result))), result
    if "sends" in spec:
        assert calls[0] == fill(spec["sends"], values)
    if "sends_only" in spec:
        assert calls == spec["sends_only"]
