"""What a failing test's report says: each thing once, the line that names the cause, the
machine's journal without boot start-up noise, a failed golden machine reported with the
first test that needed it; and the notice of an image built on first use."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from innerpytest import run

from pytest_orbstack.backends.process import told as _told

# apt-get update without sudo: apt prints its errors, then warnings (W: Problem unlinking ...)
APT_WITHOUT_SUDO = '''from pyinfra.operations import apt
apt.update(name="Update apt")
'''
MISSING_PACKAGE = '''from pyinfra.operations import apt
apt.packages(name="Install nosuch", packages=["pytest-orbstack-no-such-package"], _sudo=True)
'''
APT_ERROR = "E: Unable to lock directory /var/lib/apt/lists/"


def failure_of(out: str, test: str) -> str:
    """The FAILURES entry of ``test``."""
    match = re.search(rf"_{{3,}} {test} _{{3,}}\n(.*?)(?=\n_{{3,}} \w+ _{{3,}}\n|\n={{3,}} )", out, re.S)
    assert match, out
    return match.group(1)


def test_a_deploy_error_is_shown_once_with_apts_error_line_and_the_journal_after_boot(inner):
    inner.path.joinpath("deploy.py").write_text(APT_WITHOUT_SUDO)
    inner.makepyfile(test_apt='''
        def test_apply(orbstack_machine):
            m = orbstack_machine()
            m.run("logger -t probe written-by-the-test")
            m.run("sudo systemd-run --unit=probe-broken --wait false")
            m.apply("deploy.py")
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    report = failure_of(out, "test_apply")
    headline = f"deploy deploy.py failed: operation 'Update apt': {APT_ERROR}"
    assert report.count(headline) == 1, report  # the message only: no section, no captured log
    assert report.count("W: Problem unlinking the file") == 2  # the output, once
    assert "orbstack deploy:" not in report and "Captured log" not in report
    assert "pytest_orbstack/" not in report  # no frame from inside the package
    summary = [line for line in out.splitlines() if line.startswith("FAILED test_apt.py::test_apply")]
    assert len(summary) == 1 and APT_ERROR in summary[0]
    # the machine's diagnostics: its failed unit, then the journal since boot finished
    assert "failed units: probe-broken.service" in report
    journal = report.split("--- journal (last ")[1]
    assert re.search(r"\+0000 probe\[\d+\]: written-by-the-test\n", journal)
    assert "Startup finished" not in journal and "Reached target" not in journal
    assert "sudo[" not in journal and "Failed to set fd limit" not in journal  # noise of every start


def test_a_failed_golden_machine_is_reported_once_with_its_journal(inner):
    inner.path.joinpath("deploy.py").write_text(MISSING_PACKAGE)
    inner.makepyfile(test_golden='''
        def test_first(orbstack_machine):
            orbstack_machine(deploy="deploy.py")

        def test_second(orbstack_machine):
            orbstack_machine(deploy="deploy.py")

        def test_third(orbstack_machine):
            orbstack_machine(deploy="deploy.py")
    ''')
    result = run(inner, "-ra")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    first = failure_of(out, "test_first")
    cause = "deploy deploy.py failed: operation 'Install nosuch': E: Unable to locate package"
    assert cause in first and "  FAILED Install nosuch" in first
    assert re.search(r"orbstack machine: pto-\w+-golden-debian-bookworm-", first)
    assert "--- journal (last " in first
    for test in ("test_second", "test_third"):
        report = failure_of(out, test)
        assert report.strip() == ("pytest-orbstack: golden machine of debian:bookworm with deploy deploy.py "
                                  f"failed, see test_golden.py::test_first for its report: {cause} "
                                  "pytest-orbstack-no-such-package"), report
    # once in FAILURES (the short summary shows whole messages when CI is set, as pytest does on CI)
    assert out.split("short test summary info")[0].count("  FAILED Install nosuch") == 1


def _refusing_tools(where: Path) -> str:
    """A ``docker`` whose ``pull`` fails at once (no registry) and a ``debootstrap`` that fails
    at once, first on the returned PATH: a base image build that starts and fails in no time."""
    real = shutil.which("docker")
    where.mkdir()
    (where / "docker").write_text(f'#!/bin/sh\nif [ "$1" = pull ]; then echo "Error: no registry here" >&2; '
                                  f'exit 1; fi\nexec {real} "$@"\n')
    (where / "debootstrap").write_text("#!/bin/sh\necho 'E: no mirror here (test)' >&2\nexit 1\n")
    for tool in ("docker", "debootstrap"):
        (where / tool).chmod(0o755)
    return f"{where}{os.pathsep}{os.environ['PATH']}"


def test_a_base_image_built_on_first_use_is_announced_even_without_v(inner, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", _refusing_tools(tmp_path / "bin"))
    inner.makepyfile(test_build='''
        def test_bullseye(orbstack_machine):
            orbstack_machine(image="debian:bullseye")
    ''')
    what = "pytest-orbstack: building image debian:bullseye with debootstrap (once per host)"
    for args, prefix in (((), ""), (("-n", "1"), "[[]gw0[]] ")):
        result = run(inner, "-ra", *args)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"{prefix}{what}...", f"{prefix}{what}: failed after *s"])
        result.stdout.fnmatch_lines(["FAILED test_build.py::test_bullseye - *cannot be built here: "
                                     "debootstrap bullseye failed: E: no mirror here (test)"])


def test_work_done_once_is_told_when_it_starts_and_when_it_is_done():
    told: list[str] = []
    with _told(told.append, "preparing image x"):
        assert told == ["pytest-orbstack: preparing image x..."]  # before the work
    assert re.fullmatch(r"pytest-orbstack: preparing image x: done in \d+\.\ds", told[1])
