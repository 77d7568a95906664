"""What the code before the layered package left on disk is still understood: a session file as
it wrote it (``Registry._write`` of commit cbbc6c6: ``json.dumps(Session.__dict__)``), of a
pytest killed with a machine recorded and one kept, is found by ``--orbstack-prune``, which
deletes both real Docker machines and the file. A renamed or dropped field would make the file
unreadable (``Registry._read`` gives None), so the machines would leak: this test fails then."""

from __future__ import annotations

import getpass
import json
import secrets
import socket
import subprocess
import sys
import time

from innerpytest import containers, run
from testenv import needs_docker

from pytest_orbstack.backends import get_backend
from pytest_orbstack.machines.registry import process_start_time
from pytest_orbstack.model.names import PROJECT_LABEL, SESSION_LABEL, project_tag, session_prefix

pytestmark = needs_docker("the previous release's state files")


def dead_owner() -> tuple[int, str | None]:
    """The pid and start time (``ps -o lstart``, as the release recorded it) of a process that
    has ended: the pytest that was killed."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = process_start_time(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


def test_a_killed_session_of_the_previous_release_is_pruned(inner, tmp_path):
    state = tmp_path / "state"
    session_id = secrets.token_hex(4)
    prefix = session_prefix(session_id)
    made, kept = f"{prefix}-test-web-0-a1b2c3", f"{prefix}-test-db-0-d4e5f6"
    user, project = getpass.getuser(), str(inner.path)
    labels = {SESSION_LABEL: session_id, PROJECT_LABEL: project_tag(user, project)}
    engine = get_backend("docker")
    try:
        for name in (made, kept):
            engine.create(name, "debian:bookworm", labels=labels)
        assert containers(session_id) == {made, kept}
        pid, start = dead_owner()
        now = time.time()
        sessions = state / "sessions"
        sessions.mkdir(parents=True)
        # Session.__dict__ at cbbc6c6, field for field and in its order
        (sessions / f"{session_id}.json").write_text(json.dumps({
            "id": session_id, "pid": pid, "start": start, "host": socket.gethostname(), "backend": "docker",
            "machines": [made], "created": now - 60, "kept": [kept], "user": user, "project": project,
            "about": {kept: {"test": "test_db.py::test_db", "image": "debian:bookworm",
                             "created_at": now - 50, "kept_at": now - 40}},
            "adopted": []}))
        with open(state / "sessions.log", "a") as log:  # as Registry.open wrote it
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {session_id} pid={pid} backend=docker "
                      f"cwd={inner.path}\n")

        result = run(inner, "--orbstack-prune")

        out = result.stdout.str()
        assert result.ret == 0, out
        assert made in out and kept in out, out  # both named as deleted
        assert containers(session_id) == set(), out
        assert not (sessions / f"{session_id}.json").exists()
    finally:
        for name in containers(session_id):
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
