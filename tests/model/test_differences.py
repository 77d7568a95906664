"""What the idempotence report says an operation changed (model/differences.py), and which
operations the dry-run check names (model/dry_run.py): plain data in, lines out."""

from __future__ import annotations

from pytest_orbstack.model.differences import MAX_DIFF_LINES, MAX_PACKAGE_LINES, difference
from pytest_orbstack.model.dry_run import DryRunError, proposed, unplanned
from pytest_orbstack.model.results import DeployResult, OperationResult

FILE = {"state": "file", "mode": "644", "owner": "root:root", "lines": ["a", "b", "c"], "sha1": None}


def test_a_files_content_mode_and_owner():
    after = {**FILE, "mode": "600", "owner": "www-data:root", "lines": ["a", "B", "c"]}
    lines = difference("file", "/etc/x", FILE, after)
    assert lines == ["/etc/x: mode 644 -> 600", "/etc/x: owner root:root -> www-data:root",
                     "--- /etc/x (before the second run)", "+++ /etc/x (after it)",
                     "@@ -1,3 +1,3 @@", " a", "-b", "+B", " c"]


def test_a_created_file_a_long_diff_and_a_large_file():
    created = difference("file", "/etc/new", {"state": "absent"}, FILE)
    assert created[0] == "/etc/new: state absent -> file" and "+a" in created
    long = difference("file", "/etc/x", {**FILE, "lines": []}, {**FILE, "lines": [str(i) for i in range(100)]})
    assert len(long) == MAX_DIFF_LINES + 1 and long[-1].startswith("... ") and "more diff lines" in long[-1]
    large = difference("file", "/x", {**FILE, "lines": None, "sha1": "aa"}, {**FILE, "lines": None, "sha1": "bb"})
    assert large == ["/x: content changed (sha1 aa -> bb; too large or not text: not shown)"]
    assert difference("file", "/x", FILE, FILE) == [
        "/x: no difference (rewritten with the same content, mode and owner)"]


def test_package_versions_and_service_state():
    before = {"versions": {"nginx": {"1.22"}, "curl": {"7.88"}, "gone": {"1"}}}
    after = {"versions": {"nginx": {"1.24"}, "curl": {"7.88"}, "new": {"2"}}}
    assert difference("packages", "apt", before, after) == [
        "package gone: 1 -> (not installed)", "package new: (not installed) -> 2", "package nginx: 1.22 -> 1.24"]
    many = difference("packages", "apt", {"versions": {}}, {"versions": {f"p{i}": {"1"} for i in range(30)}})
    assert len(many) == MAX_PACKAGE_LINES + 1
    old = {"state": "active/running", "enabled": "enabled", "pid": "12", "since": "T1"}
    assert difference("service", "nginx", old, {**old, "pid": "40", "since": "T2"}) == [
        "service nginx: active/running, enabled, pid 12, since T1 -> active/running, enabled, pid 40, since T2"]
    assert difference("service", "x", None, old) == ["x: not read before the operation"]


def _op(name: str, op_hash: str, changed: bool, idempotent: bool = True, conditional: bool = False) -> OperationResult:
    return OperationResult(name, changed, True, idempotent=idempotent, conditional=conditional, op_hash=op_hash)


def test_the_dry_run_check_names_hidden_and_proposed_changes():
    plan = DeployResult("d.py", [_op("shell", "h1", True, idempotent=False), _op("rm flag", "h2", False),
                                 _op("put", "h3", True), _op("reload if", "h5", True, conditional=True)], dry=True)
    run = DeployResult("d.py", [_op("shell", "h1", True, idempotent=False), _op("rm flag", "h2", True),
                                _op("put", "h3", False), _op("later", "h4", True)])
    assert [op.name for op in unplanned(plan, run)] == ["rm flag", "later"]  # planned-but-unchanged is fine
    assert [op.name for op in proposed(plan)] == ["put"]  # non-idempotent and conditional ones: always proposed
    assert proposed(plan, ["p*"]) == []
    message = str(DryRunError(run, unplanned(plan, run), "m1", after=False))
    assert message.splitlines() == [
        "deploy d.py: pyinfra's plan (--dry) on m1 did not name 2 operation(s) the apply then changed:",
        "  rm flag: changed, the plan said no change", "  later: changed, the plan said no change"]
    assert plan.success and plan.headline() == "deploy d.py: 4 operations, 3 would change (0.0s)"
