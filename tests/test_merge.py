"""``python -m pytest_orbstack.merge``: the shards' JUnit XML and timings as one report, on
files pytest itself wrote (an inner pytest run per shard of a small suite without machines)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

SUITE = """
import pytest

@pytest.mark.parametrize("n", range(5))
def test_n(n):
    assert n < 4
"""


def merge(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pytest_orbstack.merge", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_shards_merge_into_one_report(pytester):
    pytester.makepyfile(test_suite=SUITE)
    for k in (1, 2):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--orbstack-shard={k}/2",
                                               f"--junitxml=junit-{k}.xml", f"--orbstack-timings=t-{k}.json")
        assert result.ret in (0, 1), result.stdout.str()
        result.stdout.fnmatch_lines([f"orbstack: shard {k}/2: * of 5 tests*by count*"])
    junit = merge("-o", "junit.xml", "junit-1.xml", "junit-2.xml", cwd=pytester.path)
    assert junit.returncode == 0 and "merge: 5 tests from 2 file(s) -> junit.xml" in junit.stdout, junit.stderr
    root = ET.parse(pytester.path / "junit.xml").getroot()
    names = sorted(case.get("name") for case in root.iter("testcase"))
    assert names == [f"test_n[{n}]" for n in range(5)]
    assert (root.get("tests"), root.get("failures"), len(root.findall("testsuite"))) == ("5", "1", 2)
    timings = merge("-o", "t.json", "t-1.json", "t-2.json", cwd=pytester.path)
    assert timings.returncode == 0, timings.stderr
    merged = json.loads((pytester.path / "t.json").read_text())
    assert len(merged["sessions"]) == 2 and sorted(merged["tests"]) == [f"test_suite.py::test_n[{n}]" for n in range(5)]
    again = merge("-o", "all.json", "t.json", "t-1.json", cwd=pytester.path)  # merged files merge too
    assert again.returncode == 0 and "test(s) in more than one file: test_suite.py::test_n" in again.stderr


def test_a_file_that_is_not_a_report_is_one_line(tmp_path):
    (tmp_path / "bad.xml").write_text("<html>")
    (tmp_path / "bad.json").write_text("[1]")
    (tmp_path / "other.xml").write_text("<coverage/>")
    for args, says in [(("-o", "m.xml", "bad.xml"), "merge: bad.xml: not JUnit XML (no element found"),
                       (("-o", "m.xml", "other.xml"), "merge: other.xml: not JUnit XML (its root is <coverage>"),
                       (("-o", "m.json", "bad.json"), "merge: bad.json: not --orbstack-timings JSON"),
                       (("-o", "m.txt", "bad.json"), "merge: m.txt: name the output .xml (JUnit) or .json")]:
        proc = merge(*args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith(says) and proc.stderr.count("\n") == 1, proc.stderr
