"""The fixes docs/performance.md proposes for pytest_orbstack/, applied in a subclass so their
effect can be measured side by side without touching the package (benchmarks only).

``ProposedDockerBackend`` differs from ``DockerBackend`` in exactly these points:

1. ``create`` no longer runs ``docker container inspect NAME`` before ``docker run``: a name
   clash already fails ``docker run`` with "is already in use", which ``_run_container`` turns
   into MachineExists.
2. The prepared image tag is cached per image name for the backend's life, so ``create`` no
   longer runs ``docker image inspect BASE`` each time (a session does not see its base image
   change under it; ``--orbstack-prune``/a new session resolves it again).
3. The default user is added in the same ``docker exec`` as the first readiness probe instead
   of one more ``docker exec`` after boot (``useradd`` needs no running systemd).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pytest_orbstack.backends.base import READY_STATES
from pytest_orbstack.backends.docker import LABEL, DockerBackend, default_login, image_codename
from pytest_orbstack.errors import CommandTimeout, OrbStackError
from pytest_orbstack.names import validate_machine_name
from pytest_orbstack.orbctl import MachineInfo

SETUP_DONE = "pytest-orbstack-setup-done"


class ProposedDockerBackend(DockerBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._tags: dict[str, str] = {}

    def _prepared_image(self, image: str) -> str:  # fix 2
        if image not in self._tags:
            self._tags[image] = super()._prepared_image(image)
        return self._tags[image]

    def create(self, name: str, image: str, *, user: str | None = None,
               cloud_init: str | Path | None = None, labels: dict[str, str] | None = None) -> MachineInfo:
        validate_machine_name(name)
        image_codename(image)
        login = default_login(user)
        script = self._cloud_init_script(cloud_init)
        ref = self._prepared_image(image)  # fix 1: no _find(name) here
        self._run_container(name, ref, {**(labels or {}), LABEL: "1", f"{LABEL}.user": login,
                                        f"{LABEL}.image": image})
        with self._removed_on_failure(name):
            setup = None
            if login != "root":
                q, sudoers = shlex.quote(login), "/etc/sudoers.d/90-pytest-orbstack"
                setup = (f"(id -u {q} >/dev/null 2>&1 || useradd -m -s /bin/bash {q}) && "
                         f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q} > {sudoers} && chmod 0440 {sudoers}")
            self._wait_ready_after(name, setup)  # fix 3
            if script is not None:
                self._apply_cloud_init(name, script)
            return self.info(name)

    def _wait_ready_after(self, name: str, setup: str | None, timeout: float = 90.0) -> str:
        """DockerBackend.wait_ready whose first probe also runs ``setup`` (once)."""
        import time
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            probe = "systemctl is-system-running"
            if setup is not None:
                probe = f"{{ {setup}; }} >&2 && echo {SETUP_DONE}; {probe}"
            proc = self._exec_root(name, probe, check=False, timeout=30)
            lines = proc.stdout.split()
            if setup is not None:
                if SETUP_DONE not in lines:
                    if "is not running" in proc.stderr or "No such container" in proc.stderr:
                        raise OrbStackError(f"machine {name} stopped while booting")
                    raise OrbStackError(f"default user setup failed in {name}: {proc.stderr.strip()}")
                setup = None
            state = lines[-1] if lines else ""
            if state in READY_STATES:
                return state
            if "is not running" in proc.stderr or "No such container" in proc.stderr:
                raise OrbStackError(f"machine {name} stopped while booting")
            time.sleep(0.2)
        raise CommandTimeout(f"machine {name} did not finish booting in {timeout:.0f}s "
                             f"(systemd state: {state or 'unknown'})")
