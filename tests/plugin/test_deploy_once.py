"""A deploy file is read and compiled once per apply: by the check before any engine call,
whose code pyinfra's own loader then runs (a golden machine's key uses the digest of that
same read). Counted in the inner session by Python's audit events ``open`` and ``compile``;
each test also checks that the deploy ran."""

from __future__ import annotations

from innerpytest import run

COUNTER = '''
import os
import sys
from pathlib import Path

DEPLOY = str(Path(__file__).parent / "deploy.py")
events = []


def _by_linecache():
    frame = sys._getframe(2)
    while frame is not None and not frame.f_code.co_filename.endswith("linecache.py"):
        frame = frame.f_back
    return frame is not None


def _count(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and os.fspath(args[0]) == DEPLOY:
        # linecache's once per process (source lines for pyinfra's operation order, as the
        # pyinfra CLI reads them) is not a read of the deploy by the run
        if not _by_linecache():
            events.append("read")
    elif event == "compile" and args[1] == DEPLOY:
        events.append("compile")


sys.addaudithook(_count)
'''


def test_a_deploy_file_is_read_and_compiled_once_per_apply(inner):
    inner.makepyfile(counter=COUNTER)
    inner.makepyfile(deploy='''
        from pyinfra.operations import files
        files.line(name="mark", path="/etc/deploy-once", line="ran", _sudo=True)
    ''')
    inner.makepyfile(test_once='''
        from counter import events


        def test_golden_then_clone(orbstack_machine):
            events.clear()
            machine = orbstack_machine(deploy="deploy.py")  # checked, keyed, applied to a golden, cloned
            assert events == ["read", "compile"]
            assert machine.host.file("/etc/deploy-once").content_string == "ran\\n"


        def test_apply_in_a_test_body(orbstack_machine):
            machine = orbstack_machine(clone=False)
            events.clear()
            result = machine.apply("deploy.py", check_idempotent=True)  # two runs, one read
            assert events == ["read", "compile"]
            assert [op.changed for op in result.operations] == [True]
            assert machine.host.file("/etc/deploy-once").content_string == "ran\\n"
    ''')
    result = run(inner, "-p", "counter")
    result.assert_outcomes(passed=2)
