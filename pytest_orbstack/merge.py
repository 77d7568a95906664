"""One report from the shards of a run (``--orbstack-shard=K/N`` jobs):
``python -m pytest_orbstack.merge -o merged.xml shard-*.xml`` merges pytest's JUnit XML files
(``--junitxml``) into one ``<testsuites>`` with the totals summed, and
``python -m pytest_orbstack.merge -o merged.json timings-*.json`` merges ``--orbstack-timings``
files (every session's machines, every test's seconds), which ``--orbstack-shard-timings``
then balances the next run's shards on. The output's suffix says which. A test found in more
than one file is named on stderr (a shard ran twice, or the same shard was given twice)."""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COUNTS = ("tests", "errors", "failures", "skipped")


class MergeError(Exception):
    """A file that cannot be merged: its one line names it and why."""


def _suites(path: Path) -> list[ET.Element]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise MergeError(f"{path}: not JUnit XML ({exc})")
    if root.tag not in ("testsuite", "testsuites"):
        raise MergeError(f"{path}: not JUnit XML (its root is <{root.tag}>, not <testsuites>)")
    return [root] if root.tag == "testsuite" else root.findall("testsuite")


def merge_junit(paths: Sequence[Path]) -> tuple[ET.ElementTree, list[str]]:
    """Every ``<testsuite>`` of ``paths`` under one ``<testsuites>`` whose counts and time are
    their sums; and the ``classname::name`` of each test case found more than once."""
    merged = ET.Element("testsuites", name="pytest tests (merged)")
    totals: Counter[str] = Counter()
    seconds = 0.0
    seen: Counter[str] = Counter()
    for path in paths:
        for suite in _suites(path):
            merged.append(suite)
            totals.update({key: int(suite.get(key, "0")) for key in COUNTS})
            seconds += float(suite.get("time", "0"))
            seen.update(f"{case.get('classname', '')}::{case.get('name', '')}" for case in suite.iter("testcase"))
    for key in COUNTS:
        merged.set(key, str(totals[key]))
    merged.set("time", f"{seconds:.3f}")
    return ET.ElementTree(merged), sorted(case for case, count in seen.items() if count > 1)


def merged_tests(tree: ET.ElementTree) -> str:
    """The merged JUnit's test count."""
    root = tree.getroot()
    return root.get("tests", "0") if root is not None else "0"


def merge_timings(paths: Sequence[Path]) -> tuple[dict[str, Any], list[str]]:
    """The ``--orbstack-timings`` of ``paths`` as one: ``sessions`` (their ids), ``tests``
    (each test's seconds) and ``machines`` (every record); and the tests found more than once."""
    merged: dict[str, Any] = {"sessions": [], "tests": {}, "machines": []}
    seen: Counter[str] = Counter()
    for path in paths:
        try:
            data = json.loads(path.read_text())
            sessions = data.get("sessions") or [data["session"]]
            tests, machines = dict(data.get("tests") or {}), list(data["machines"])
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise MergeError(f"{path}: not --orbstack-timings JSON ({type(exc).__name__}: {exc})")
        merged["sessions"] += sessions
        merged["tests"].update(tests)
        merged["machines"] += machines
        seen.update(list(tests))  # (a dict would add its values as counts)
    return merged, sorted(test for test, count in seen.items() if count > 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_orbstack.merge",
                                     description="merge the JUnit XML or --orbstack-timings JSON of shards")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="the merged file: .xml merges JUnit XML, .json merges timings")
    parser.add_argument("files", nargs="+", type=Path, help="the shards' files")
    args = parser.parse_args(argv)
    try:
        if args.output.suffix == ".xml":
            tree, twice = merge_junit(args.files)
            tree.write(args.output, encoding="utf-8", xml_declaration=True)
            count = merged_tests(tree)
        elif args.output.suffix == ".json":
            timings, twice = merge_timings(args.files)
            args.output.write_text(json.dumps(timings, indent=2))
            count = str(len(timings["tests"]))
        else:
            raise MergeError(f"{args.output}: name the output .xml (JUnit) or .json (timings)")
    except MergeError as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 2
    if twice:
        print(f"merge: {len(twice)} test(s) in more than one file: {', '.join(twice[:5])}"
              f"{' ...' if len(twice) > 5 else ''}", file=sys.stderr)
    print(f"merge: {count} tests from {len(args.files)} file(s) -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
