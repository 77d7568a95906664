"""The public deploys the acceptance test runs are the published files, unchanged: each one's
git blob id is the one vendor/SOURCE.md records for that upstream commit."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

VENDOR = Path(__file__).parent / "userproject" / "vendor"


def blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_vendored_files_are_upstream_blobs():
    recorded = dict(re.findall(r"^\| ([0-9a-f]{40}) \| (\S+) \|$", (VENDOR / "SOURCE.md").read_text(), re.M))
    recorded = {path: blob for blob, path in recorded.items()}
    root = VENDOR / "pyinfra-examples"
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert present == set(recorded)
    assert {path: blob_id(root / path) for path in present} == recorded
