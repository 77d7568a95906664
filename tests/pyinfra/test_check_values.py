"""The values the machine facts and Machine's diagnostics give: their truth, their repr, their
plain-data side; and the memory script of MachineStatus on a cgroup v1 and a v2 layout."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest

from pytest_orbstack.facts import Connectivity, DnsLookup, MachineStatus
from pytest_orbstack.facts.machine import MEMORY_SCRIPT
from pytest_orbstack.model.checks import Reachability, Record, Resolution
from pytest_orbstack.testinfra_backend import missing_hosts


def connectivity(output: list[str], **kwargs) -> Reachability:
    fact = Connectivity()
    fact.command(**kwargs)
    return Reachability(fact.process(output))


def test_reachability_is_false_when_unreached_and_says_why():
    refused = connectivity(["rc=1", "bash: connect: Connection refused",
                            "bash: line 1: /dev/tcp/db/3306: Connection refused"],
                           target="db", method="tcp", port=3306)
    assert not refused and refused["reachable"] is False and refused["rc"] == 1
    assert repr(refused) == str(refused) == ("<tcp db:3306 unreachable: exit 1: bash: connect: Connection "
                                             "refused; bash: line 1: /dev/tcp/db/3306: Connection refused>")
    slow = connectivity(["rc=124", ""], target="db", method="tcp", port=3306, timeout=2)
    assert not slow and repr(slow) == "<tcp db:3306 unreachable: timed out after 2 s (exit 124)>"
    ok = connectivity(["rc=0", "HTTP 200"], target="web", method="http", port=8080)
    assert ok and ok["status"] == 200 and repr(ok) == "<http web:8080 reachable: HTTP 200>"
    raw = connectivity(["rc=0", "HTTP/1.0 404 Not Found"], target="http://web/x", method="http")
    assert raw and raw["status"] == 404 and repr(raw) == "<http http://web/x reachable: HTTP 404>"
    curl = connectivity(["rc=7", "curl: (7) Failed to connect to web port 80: Connection refused",
                         "HTTP 000"], target="web", method="http")
    assert not curl and curl["status"] is None
    assert repr(curl) == ("<http web:80 unreachable: exit 7: curl: (7) Failed to connect to web port 80: "
                          "Connection refused>")
    assert json.loads(json.dumps(dict(curl), indent=2))["rc"] == 7
    fact = Connectivity()
    fact.command(target="web", method="http")
    plain = fact.process(["rc=7", "HTTP 000"])  # the fact: plain data, as pyinfra prints it
    assert type(plain) is dict and json.loads(json.dumps(plain, indent=4))["reachable"] is False


def test_a_long_reason_is_cut():
    noisy = connectivity(["rc=1", "x" * 500], target="db", method="ping")
    assert len(repr(noisy)) < 200 and repr(noisy).endswith("...>")


def test_resolution_is_false_when_the_name_does_not_resolve():
    fact = DnsLookup()
    fact.command(hostname="db.orb.local")
    found = fact.process(["rc=0", "172.18.0.3      STREAM db.orb.local", "172.18.0.3      DGRAM",
                          "fd00::3   STREAM"])
    assert found == ["172.18.0.3", "fd00::3"] and found
    assert repr(found) == "<dns db.orb.local: ['172.18.0.3', 'fd00::3']>"
    fact.command(hostname="nosuch")
    missing = fact.process(["rc=2", ""])
    assert missing == [] and not missing and isinstance(missing, Resolution)
    assert repr(missing) == "<dns nosuch: does not resolve (getent ahosts exit 2: name not found)>"
    no_getent = fact.process(["rc=127", "sh: 1: getent: not found"])
    assert no_getent.reason == "getent ahosts exit 127: sh: 1: getent: not found"
    assert json.dumps(missing, indent=4) == "[]" and json.dumps(found, indent=4).count(".") == 3
    copy = pickle.loads(pickle.dumps(missing))
    assert copy == [] and copy.hostname == "nosuch" and copy.reason == missing.reason


def test_a_record_has_no_truth_value_but_its_fields():
    record = Record("Machine.status()", {"system": "running", "failed_units": []},
                    "status()['system'] == 'running'")
    with pytest.raises(TypeError, match=r"^Machine.status\(\) has no truth value \(it is always there\): "
                                        r"compare a field, e.g. status\(\)\['system'\] == 'running'$"):
        bool(record)
    assert record["system"] == "running" and record.get("nope") is None and "system" in record
    assert record == {"system": "running", "failed_units": []}
    assert json.loads(json.dumps(dict(record), indent=2))["system"] == "running"
    assert repr(record) == "Machine.status(): {'system': 'running', 'failed_units': []}"


BASE = ["system=running", "uptime=42", "load=3", "host_load=5.1 4.0 3.2",
        "meminfo_total_kib=24000000", "meminfo_available_kib=20000000"]


@pytest.mark.parametrize("version", [1, 2])
def test_status_counts_the_cgroup_without_its_inactive_file_cache(version):
    status = MachineStatus().process([*BASE, f"cgroup_version={version}", "cgroup_used=104857600",
                                      "cgroup_limit=536870912", "cgroup_inactive_file=20971520"])
    assert status["memory_source"] == "cgroup" and status["cgroup_version"] == version
    assert status["mem_used_kib"] == 80 * 1024 and status["mem_total_kib"] == 512 * 1024
    assert status["mem_available_kib"] == 432 * 1024
    unlimited = MachineStatus().process([*BASE, f"cgroup_version={version}", "cgroup_used=1048576",
                                         "cgroup_limit=max" if version == 2 else "cgroup_limit=9223372036854771712"])
    assert unlimited["mem_total_kib"] == 24000000 and unlimited["mem_used_kib"] == 1024
    meminfo = MachineStatus().process(BASE)
    assert meminfo["memory_source"] == "meminfo" and meminfo["cgroup_version"] == 0
    assert meminfo["mem_used_kib"] == 4000000


def memory_lines(tmp_path: Path, pid1_cgroup: str, files: dict[str, str]) -> list[str]:
    """MEMORY_SCRIPT's output on a fake /proc/1/cgroup and /sys/fs/cgroup under ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pid1").write_text(pid1_cgroup)
    for rel, text in files.items():
        path = tmp_path / "cg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    script = MEMORY_SCRIPT.replace("/proc/1/cgroup", str(tmp_path / "pid1")).replace(
        "/sys/fs/cgroup", str(tmp_path / "cg"))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()


def test_memory_script_reads_the_machines_root_cgroup_on_v1(tmp_path):
    machine = "memory/docker/abc"
    lines = memory_lines(tmp_path, "4:memory:/docker/abc/init.scope\n0::/docker/abc/init.scope\n", {
        f"{machine}/memory.usage_in_bytes": "30000000\n", f"{machine}/memory.limit_in_bytes": "268435456\n",
        f"{machine}/memory.stat": "inactive_file 1\ntotal_inactive_file 8000000\n",
        f"{machine}/init.scope/memory.usage_in_bytes": "1800000\n"})
    assert lines == ["cgroup_version=1", "cgroup_used=30000000", "cgroup_limit=268435456",
                     "cgroup_inactive_file=8000000"]


def test_memory_script_reads_the_machines_root_cgroup_on_v2(tmp_path):
    files = {"system.slice/docker-abc.scope/memory.current": "40000000\n",
             "system.slice/docker-abc.scope/memory.max": "max\n",
             "system.slice/docker-abc.scope/memory.stat": "anon 1\ninactive_file 5000000\n",
             "system.slice/docker-abc.scope/init.scope/memory.current": "1800000\n"}
    lines = memory_lines(tmp_path, "0::/system.slice/docker-abc.scope/init.scope\n", files)
    assert lines == ["cgroup_version=2", "cgroup_used=40000000", "cgroup_limit=max",
                     "cgroup_inactive_file=5000000"]
    # its own cgroup namespace (OrbStack): the mount's root is the machine's cgroup
    ns = memory_lines(tmp_path / "ns", "0::/init.scope\n", {
        "memory.current": "7\n", "memory.max": "9\n", "memory.stat": "inactive_file 2\n"})
    assert ns == ["cgroup_version=2", "cgroup_used=7", "cgroup_limit=9", "cgroup_inactive_file=2"]
    # the kernel's real root (no memory.current there): nothing, so /proc/meminfo is used
    assert memory_lines(tmp_path / "root", "0::/init.scope\n", {"cgroup.procs": "1\n"}) == []


def test_hosts_other_than_orbstack_are_not_looked_up():
    assert missing_hosts(None) is None and missing_hosts("local://,docker://x") is None


def test_http_without_curl_never_sends_plain_http_to_an_https_url(tmp_path):
    """The command itself, run by bash with a PATH holding no curl, against a local plain HTTP
    server: ``http://`` is reached over /dev/tcp; ``https://`` to the same port is unreachable
    and names curl (it got the server's plain answer: red team 2, finding 8); a ``port=`` that
    contradicts the URL's is refused."""
    import functools
    import http.server
    import shutil
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "timeout", "head"):
        (tools / tool).symlink_to(shutil.which(tool))

    def reach(target: str, **kwargs) -> Reachability:
        fact = Connectivity()
        command = fact.command(target=target, method="http", **kwargs)
        out = subprocess.run([str(tools / "bash"), "-c", command], capture_output=True, text=True,
                             env={"PATH": str(tools)}, timeout=30).stdout
        return Reachability(fact.process(out.splitlines()))

    try:
        port = server.server_address[1]
        plain = reach(f"http://127.0.0.1:{port}/")
        assert plain and plain["status"] == 200, plain
        assert reach("127.0.0.1", port=port)["status"] == 200
        tls = reach(f"https://127.0.0.1:{port}/")
        assert not tls and "https: needs curl in the machine" in tls["detail"], tls
        assert not reach("https://127.0.0.1/", port=port)
        with pytest.raises(ValueError, match="differ"):
            Connectivity().command(target=f"http://127.0.0.1:{port}/", method="http", port=port + 1)
    finally:
        server.shutdown()
