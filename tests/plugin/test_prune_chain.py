"""``--orbstack-prune`` after a chain of ``--orbstack-reuse`` runs leaves no image behind.

A keeps two machines cloned from one golden machine (so they share its snapshot image, labelled
with A); B reuses them and keeps them; C reuses them again. ``whole``: B and C reuse both, so
A's record is gone and only the image names A. ``partial``: B and C reuse one, so the snapshot
is needed by machines recorded under two sessions (A and C). Prune processes sessions oldest
first; ``partial`` runs it as it comes (A first: A's reap finds the snapshot still used by C's
machine) and with A's record made the newest (A last). The engine itself is asked afterwards:
no image labelled with any session of the chain, no record left."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from innerpytest import run, sessions_of

DEPLOY = "from pyinfra.operations import files\nfiles.line(name='motd', path='/etc/motd', line='hi', _sudo=True)\n"


def labelled_images(sessions: list[str]) -> list[str]:
    """Ids of the images labelled with one of ``sessions`` (asked of the engine)."""
    found = []
    for session in sessions:
        out = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter",
                              f"label=pytest-orbstack.session={session}"],
                             capture_output=True, text=True, check=True).stdout
        found += out.split()
    return sorted(set(found))


@pytest.mark.parametrize("reused, order", [("whole", "oldest-first"), ("partial", "oldest-first"),
                                           ("partial", "first-session-last")])
def test_prune_removes_the_snapshot_of_a_reuse_chain(inner, tmp_path, reused, order):
    inner.makefile(".py", deploy=DEPLOY)
    inner.makepyfile(test_chain='''
        import pytest

        @pytest.mark.orbstack(deploy="deploy.py")
        def test_one(orbstack):
            assert orbstack.host.file("/etc/motd").contains("hi")

        @pytest.mark.orbstack(deploy="deploy.py")
        def test_two(orbstack):
            assert orbstack.host.file("/etc/motd").contains("hi")
    ''')
    state = tmp_path / "state"
    try:
        run(inner, "--orbstack-keep=always").assert_outcomes(passed=2)  # A
        some = ["-k", "test_one"] if reused == "partial" else []
        outcomes = dict(passed=1, deselected=1) if reused == "partial" else dict(passed=2)
        run(inner, "--orbstack-reuse", "--orbstack-keep=always", *some).assert_outcomes(**outcomes)  # B
        c = run(inner, "--orbstack-reuse", "-v", *some)
        c.assert_outcomes(**outcomes)
        c.stdout.fnmatch_lines(["orbstack: reusing kept pto-*-test-chain-test-one-*"])
        chain = sessions_of(state)
        assert len(chain) == 3
        assert labelled_images(chain), "A's golden machine left no snapshot image: nothing is tested"
        if order == "first-session-last":
            path = state / "sessions" / f"{chain[0]}.json"
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "created": time.time() + 60}))
        pruned = run(inner, "--orbstack-prune")
        pruned.stdout.fnmatch_lines(["orbstack: pruned 2 machine(s) of this project*test-one*"])
        assert labelled_images(chain) == []
        assert not list((state / "sessions").glob("*.json"))
    finally:
        leaked = labelled_images(sessions_of(state))
        for image in leaked:  # clean up, then fail (the machines on them first)
            users = subprocess.run(["docker", "ps", "-aq", "--filter", f"ancestor={image}"],
                                   capture_output=True, text=True).stdout.split()
            subprocess.run(["docker", "rm", "-f", *users], capture_output=True) if users else None
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
