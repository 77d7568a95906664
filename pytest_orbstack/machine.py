"""The object a test gets: one running machine, its testinfra host, deploys and diagnostics.

pyinfra and testinfra are imported on first use (first ``apply``, first ``host``), so that
loading the pytest plugin costs neither."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import Backend
from .backends.types import MachineInfo
from .inputs import Deploy, check_deploy, describe
from .results import DeployError, DeployResult, IdempotenceError

if TYPE_CHECKING:
    from testinfra.backend.base import CommandResult
    from testinfra.host import Host


class Machine:
    """A machine on ``backend``. ``host`` is a testinfra Host running as root; ``run`` runs
    shell commands (as root unless ``user=``); ``apply`` runs a pyinfra deploy against it.

    ``search_dirs()`` gives the folders a relative deploy path given to :meth:`apply` is
    looked up in (the fixtures: the running test's folder, then the rootdir; default: the
    current directory)."""

    def __init__(self, name: str, backend: Backend, image: str,
                 search_dirs: Callable[[], Sequence[Path]] = lambda: ()) -> None:
        self.name = name
        self.backend = backend
        self.image = image
        self.search_dirs = search_dirs
        self.deploys: list[DeployResult] = []

    def __repr__(self) -> str:
        return f"<Machine {self.name} ({self.image} on {self.backend.kind})>"

    # -- state ---------------------------------------------------------------------------
    @property
    def info(self) -> MachineInfo:
        return self.backend.info(self.name)

    @property
    def ip4(self) -> str | None:
        return self.info.ip4

    @property
    def domain(self) -> str:
        return f"{self.name}.orb.local"

    @property
    def host(self) -> Host:
        """testinfra Host (``orbstack://root@NAME``): ``machine.host.service("nginx")`` ..."""
        return self.host_as("root")

    def host_as(self, user: str | None) -> Host:
        """testinfra Host running as ``user`` (None: the machine's default user)."""
        import testinfra

        from .testinfra_backend import register
        register()
        spec = f"orbstack://{user}@{self.name}" if user else f"orbstack://{self.name}"
        return testinfra.get_host(spec, engine=self.backend)

    def run(self, command: str, *, user: str | None = "root") -> CommandResult:
        """Run a shell command; ``.rc``, ``.stdout``, ``.stderr``, ``.succeeded``."""
        return self.host_as(user).run(command)

    # -- deploys -----------------------------------------------------------------------------
    def apply(self, deploy: Deploy, *, check: bool = True, check_idempotent: bool = False,
              data: dict[str, Any] | None = None) -> DeployResult:
        """Apply a pyinfra deploy (file path or callable) through pyinfra's API.

        ``check``: raise DeployError (a test failure naming each failed operation with its
        stderr) if any operation fails. ``check_idempotent``: apply it a second time and raise
        IdempotenceError listing operations that changed again (operations pyinfra declares
        non-idempotent, such as ``server.shell``, are excluded).
        """
        __tracebackhide__ = True
        deploy = check_deploy(deploy, self.search_dirs())
        result = self._apply_once(deploy, data)
        if check and not result.success:
            raise DeployError(result)
        if check_idempotent:
            second = self._apply_once(deploy, data)
            if check and not second.success:
                raise DeployError(second)
            changed = [op.name for op in second.changed if op.idempotent]
            if changed:
                raise IdempotenceError(
                    f"deploy {describe(deploy)} is not idempotent on {self.name}: "
                    f"{len(changed)} operation(s) changed on the second run: {', '.join(changed)}")
        return result

    def _apply_once(self, deploy: Deploy, data: dict[str, Any] | None) -> DeployResult:
        from .deploy import apply_deploy
        result = apply_deploy(self.name, deploy, backend=self.backend, data=data)
        self.deploys.append(result)
        return result

    # -- diagnostics (the pyinfra facts, run directly) ------------------------------------
    def _fact(self, name: str, **kwargs: Any) -> Any:
        from . import facts
        fact_cls = getattr(facts, name)
        fact = fact_cls()
        result = self.run(fact.command(**kwargs))
        if result.rc != 0:
            raise RuntimeError(f"{fact_cls.__name__} failed on {self.name}: {result.stderr.strip()}")
        return fact.process(result.stdout.splitlines())

    def network(self) -> dict[str, Any]:
        """IPs, ``NAME.orb.local`` domain, subnet, gateway, nameservers."""
        return self._fact("MachineNetwork")

    def connectivity(self, target: str, method: str = "ping", port: int | None = None,
                     timeout: int = 5) -> dict[str, Any]:
        """Whether this machine reaches ``target`` (``ping``, ``tcp`` with ``port``, ``http``)."""
        return self._fact("Connectivity", target=target, method=method, port=port, timeout=timeout)

    def dns(self, hostname: str) -> list[str]:
        """Addresses ``hostname`` resolves to inside this machine (``[]`` if none)."""
        return self._fact("DnsLookup", hostname=hostname)

    def status(self) -> dict[str, Any]:
        """systemd state, failed units, uptime, load, memory, disk, OS, kernel."""
        return self._fact("MachineStatus")

    def logs(self, lines: int = 200, unit: str | None = None) -> list[str]:
        """The journal's last ``lines`` lines (of ``unit``)."""
        return self._fact("SystemLogs", lines=lines, unit=unit)

    def console_log(self) -> str:
        """The engine's console/boot log of the machine."""
        return self.backend.logs(self.name)


