"""The host a Docker engine runs on: where the checks that read a host (its inotify instances, the
free space of the engine's data-root: :mod:`.host_limits`) run, which is not the machine running
pytest when the engine is remote. The engine's address (``DOCKER_HOST``, else the current docker
context's endpoint) says which host it is:

* unset or ``unix://...``: this host; the checks read it directly.
* ``ssh://[USER@]HOST[:PORT]``: the host whose sshd docker's own connection reaches, reached the
  same way: the system ``ssh`` with that user, host and port (so the user's ssh configuration,
  keys and known hosts apply), non-interactive (``BatchMode``) with a 10 s connect timeout; a
  check's argv runs there quoted (``ssh ... -- 'df' '-Pk' '/var/lib/docker'``).
* anything else (``tcp://``, ``npipe://``): a host this package cannot log in to; the checks
  say that instead of reading this host.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

CHECK_TIMEOUT = 20.0  # seconds for one check's command on the engine's host


@dataclass(frozen=True)
class EngineHost:
    """The engine's host: ``url`` (``""``: this host) and the argv prefix that runs a command
    there (``()``: this host, ``None``: no way to run one)."""

    url: str
    prefix: tuple[str, ...] | None

    @property
    def local(self) -> bool:
        return self.prefix == ()

    def label(self) -> str:
        """How messages name it: ``this host`` or ``the engine's host ssh://...``."""
        return "this host" if self.local else f"the engine's host {self.url}"

    def run(self, argv: list[str]) -> str | None:
        """``argv``'s stdout when it ran there and succeeded; None otherwise (no way to run it,
        ssh refused, a timeout, a failed command): a check that cannot run says nothing."""
        if self.prefix is None:
            return None
        full = [*self.prefix, shlex.join(argv)] if self.prefix else list(argv)
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None


def engine_host(url: str | None) -> EngineHost:
    """The host of the engine at ``url`` (a ``DOCKER_HOST`` value; None or ``""``: the local socket)."""
    if not url or url.startswith("unix://"):
        return EngineHost("", ())
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        return EngineHost(url, None)
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    argv += ["-p", str(parts.port)] if parts.port else []
    argv += ["-l", parts.username] if parts.username else []
    return EngineHost(url, (*argv, "--", parts.hostname))
