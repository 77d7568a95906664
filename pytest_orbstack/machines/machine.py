"""The object a test gets: one running machine, its testinfra host, deploys and diagnostics.

pyinfra and testinfra are imported on first use (first ``apply``, first ``host``), so that
loading the pytest plugin costs neither."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orbstack.backends.base import Backend
from pytest_orbstack.errors import MachineError
from pytest_orbstack.machines.applying import apply_to
from pytest_orbstack.model.checks import Reachability, Record, Resolution
from pytest_orbstack.model.inputs import Deploy
from pytest_orbstack.model.results import DeployResult, EngineFilesError, GroupResults, StaleServicesError, not_exempt
from pytest_orbstack.model.types import MachineInfo

if TYPE_CHECKING:
    from testinfra.host import Host

    from pytest_orbstack.testinfra_backend import MachineCommandResult

HOSTS_TAG = "# pytest-orbstack group"
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class Machine:
    """A machine on ``backend``. ``host`` is a testinfra Host running as root; ``run`` runs
    shell commands (as root unless ``user=``); ``apply`` runs a pyinfra deploy against it.

    ``search_dirs()`` gives the folders a relative deploy path given to :meth:`apply` is
    looked up in (the fixtures: the running test's folder, then the rootdir; default: the
    current directory). ``deploys`` holds every run's result; ``on_apply(machine, result)`` is
    called after each (the fixtures report it)."""

    def __init__(self, name: str, backend: Backend, image: str,
                 search_dirs: Callable[[], Sequence[Path]] = lambda: (),
                 created: MachineInfo | None = None) -> None:
        self.name = name
        self.backend = backend
        self.image = image
        self.created = created  # what the engine said when it made (or last rebooted) the machine
        self.search_dirs = search_dirs
        self.deploys: list[DeployResult] = []
        self.on_apply: Callable[[Machine, DeployResult], None] = lambda machine, result: None

    def __repr__(self) -> str:
        return f"<Machine {self.name} ({self.image} on {self.backend.name})>"

    # -- state ---------------------------------------------------------------------------
    @property
    def info(self) -> MachineInfo:
        """The machine as the engine sees it now (asks the engine)."""
        return self.backend.info(self.name)

    @property
    def ip4(self) -> str | None:
        """Its IPv4 address: the one the engine gave it when it was made (no engine call), else
        asked now."""
        return self.created.ip4 if self.created is not None and self.created.ip4 else self.info.ip4

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

        from pytest_orbstack.testinfra_backend import register
        register()
        if user:
            return testinfra.get_host(f"orbstack://{user}@{self.name}", engine=self.backend)
        return testinfra.get_host(f"orbstack://{self.name}", engine=self.backend, default_user=True)

    def run(self, command: str, *, user: str | None = "root") -> MachineCommandResult:
        """Run a shell command; ``.rc``, ``.stdout``, ``.stderr``, ``.succeeded`` (no truth
        value: ``assert machine.run(...)`` raises TypeError instead of always passing)."""
        from pytest_orbstack.testinfra_backend import MachineCommandResult
        return MachineCommandResult.of(self.host_as(user).run(command))

    def reboot(self) -> None:
        """Restart the machine's init with its engine's own restart and return once systemd is
        ready again (:meth:`.Backend.reboot`): enabled units started anew, ``/tmp`` empty, a new
        PID 1; ``host``, ``run`` and ``apply`` go on working (new shells)."""
        self.created = self.backend.reboot(self.name)

    # -- deploys -----------------------------------------------------------------------------
    def apply(self, deploy: Deploy, *, check: bool = True, check_idempotent: bool = False,
              allow_changes: Sequence[str] = (), data: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None, check_dry_run: bool = False) -> DeployResult:
        """Apply a pyinfra deploy (file path, callable or ``module.function`` name) as
        ``pyinfra -y @orbstack/NAME deploy.py`` would (:mod:`pytest_orbstack.pyinfra.deploy`):
        ``group_data/``, ``config.py`` and ``local.include`` from the deploy's folder;
        ``data`` as ``--data``, ``config`` as the CLI's flags (``{"SUDO": True}``).

        ``check``: raise DeployError (a test failure naming each failed operation with its
        stderr) if any operation fails. ``check_idempotent``: apply it a second time and raise
        IdempotenceError naming each operation that changed again with what it changed (a
        file's unified diff, mode and owner; a package's version; a service's state) and the
        commands it ran (except those pyinfra declares non-idempotent, such as
        ``server.shell``, and those whose name matches an ``allow_changes`` pattern).
        ``check_dry_run``: run pyinfra's plan (``--dry``) first and raise DryRunError naming
        each operation the apply changed that the plan did not name, then plan again after the
        apply(s) and raise DryRunError naming what it still proposes (:mod:`.model.dry_run`).
        Returns the first run's result.
        """
        __tracebackhide__ = True
        return apply_to({self.name: (self, (), {})}, deploy, check=check, check_idempotent=check_idempotent,
                        allow_changes=allow_changes, data=data, config=config,
                        check_dry_run=check_dry_run)[self.name]

    def apply_golden(self, deploy: Deploy, apply_args: dict[str, Any], allow_stale: Sequence[str]) -> None:
        """:meth:`apply` (``apply_args``: its keywords) to a golden machine, then raise
        :class:`.StaleServicesError` when the deploy left what a clone would not boot into:
        active services on configuration it changed after they started or reloaded
        (:class:`~.facts.StaleServices`), or units whose state a fresh boot would not give them
        and did not before the deploy (:class:`~.facts.BootDrift`: enabled but not started or
        failed, running but disabled, a unit file changed without daemon-reload); units that
        ``allow_stale`` patterns match are exempt."""
        since = self.run("date +%s.%N").stdout.strip()  # the machine's own clock
        drift_before = self.fact("BootDrift")
        sums = f"md5sum {' '.join(map(shlex.quote, self.backend.engine_files))} 2>/dev/null"
        files_before = set(self.run(sums).stdout.splitlines()) if self.backend.engine_files else set()
        self.apply(deploy, **apply_args)
        changed = sorted(set(self.run(sums).stdout.splitlines()) - files_before) if self.backend.engine_files else []
        if changed:
            raise EngineFilesError(self.deploys[-1], self.backend.name, self.backend.engine_files_why,
                                   [line.split()[-1] for line in changed])
        stale = not_exempt(self.fact("StaleServices", since=since), allow_stale)
        drift = {unit: why for unit, why in self.fact("BootDrift").items()
                 if drift_before.get(unit) != why}
        drift = not_exempt(drift, allow_stale)
        if stale or drift:
            raise StaleServicesError(self.deploys[-1], stale, drift)

    # -- diagnostics (the pyinfra facts, run directly) ------------------------------------
    def fact(self, name: str, **kwargs: Any) -> Any:
        """The pyinfra fact ``name`` of :mod:`pytest_orbstack.facts`, gathered in this machine as
        root (RuntimeError when its command fails)."""
        from pytest_orbstack import facts
        fact_cls = getattr(facts, name)
        fact = fact_cls()
        result = self.run(fact.command(**kwargs))
        if result.rc != 0:
            raise RuntimeError(f"{fact_cls.__name__} failed on {self.name}: {result.stderr.strip()}")
        return fact.process(result.stdout.splitlines())

    def network(self) -> Record:
        """IPs, ``NAME.orb.local`` domain, subnet, gateway, nameservers (the
        :class:`~.facts.MachineNetwork` fields): a read-only mapping with no truth value."""
        return Record("Machine.network()", self.fact("MachineNetwork"),
                      "network()['ip4'] == machine.ip4")

    def connectivity(self, target: str, method: str = "ping", port: int | None = None,
                     timeout: int = 5) -> Reachability:
        """Whether this machine reaches ``target`` (``ping``, ``tcp`` with ``port``, ``http``):
        false when it does not, and its repr says why (``assert m.connectivity(...)`` shows the
        target, method, port, exit code and error); ``result["reachable"]``, ``["status"]``,
        ``["detail"]``... as :class:`~.facts.Connectivity` gives them."""
        return Reachability(self.fact("Connectivity", target=target, method=method, port=port,
                                       timeout=timeout))

    def dns(self, hostname: str) -> Resolution:
        """Addresses ``hostname`` resolves to inside this machine: a list, empty and false when
        it does not resolve, whose repr then says why (getent's exit code)."""
        return self.fact("DnsLookup", hostname=hostname)

    def status(self) -> Record:
        """systemd state, failed units, uptime, load, memory, disk, OS, kernel (the
        :class:`~.facts.MachineStatus` fields): a read-only mapping with no truth value."""
        return Record("Machine.status()", self.fact("MachineStatus"),
                      "status()['system'] == 'running'")

    def logs(self, lines: int = 200, unit: str | None = None) -> list[str]:
        """The journal's last ``lines`` lines (of ``unit``): a list, empty (false) when the
        journal has none."""
        return self.fact("SystemLogs", lines=lines, unit=unit)

    def console_log(self) -> str:
        """The engine's console/boot log of the machine."""
        return self.backend.logs(self.name)


class MachineGroup(Mapping[str, Machine]):
    """Named machines that one multi-host deploy runs across, as ``pyinfra inventory.py
    deploy.py`` would: ``group["web"]`` is a :class:`Machine`; each is in the inventory group
    of its name and in the ``groups`` its spec names, so the deploy can branch on
    ``host.groups`` and find the others with ``inventory.get_group("db")``. With an
    ``inventory`` file, that file's groups and data are used instead (its ``@orbstack/NAME``
    hosts are the machines)."""

    def __init__(self, machines: dict[str, Machine], groups: Mapping[str, Sequence[str]] | None = None,
                 host_data: Mapping[str, Mapping[str, Any]] | None = None,
                 inventory: Path | None = None) -> None:
        self.machines = machines
        self.groups = {alias: (alias, *(groups or {}).get(alias, ())) for alias in machines}
        self.host_data = {alias: dict((host_data or {}).get(alias, {})) for alias in machines}
        self.inventory = inventory

    def __getitem__(self, alias: str) -> Machine:
        return self.machines[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(self.machines)

    def __len__(self) -> int:
        return len(self.machines)

    def __repr__(self) -> str:
        return f"<MachineGroup {', '.join(f'{a}={m.name}' for a, m in self.machines.items())}>"

    def name_each_other(self) -> None:
        """Make every member's group name resolve to its IPv4 inside every member, as
        ``NAME`` and ``NAME.orb.local`` (``/etc/hosts`` lines tagged ``# pytest-orbstack
        group``, replaced on each call): a deploy written for an inventory of
        ``@orbstack/dbserver`` reaches ``dbserver.orb.local`` unchanged. Names that are not
        host names are left out."""
        lines = [f"{m.ip4} {alias} {alias}.orb.local {HOSTS_TAG}" for alias, m in self.machines.items()
                 if m.ip4 and HOST_NAME_RE.match(alias)]
        script = (f"grep -vF {shlex.quote(HOSTS_TAG)} /etc/hosts > /etc/hosts.pto; "
                  f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} >> /etc/hosts.pto "
                  "&& cat /etc/hosts.pto > /etc/hosts; rm -f /etc/hosts.pto")
        for machine in self.machines.values() if lines else ():
            result = machine.run(script)
            if result.rc != 0:
                raise MachineError(f"cannot add the group's names to /etc/hosts of {machine.name}: "
                                   f"{result.stderr.strip()}")

    def apply(self, deploy: Deploy, *, check: bool = True, check_idempotent: bool = False,
              allow_changes: Sequence[str] = (), data: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None, check_dry_run: bool = False) -> GroupResults:
        """Run ``deploy`` once across every machine (keywords as :meth:`Machine.apply`); each
        machine's result, by its name in the group (no truth value: ``assert`` a result's)."""
        __tracebackhide__ = True
        targets = {alias: (m, self.groups[alias], self.host_data[alias])
                   for alias, m in self.machines.items()}
        return GroupResults(apply_to(targets, deploy, check=check, check_idempotent=check_idempotent,
                        allow_changes=allow_changes, data=data, config=config, inventory=self.inventory,
                        check_dry_run=check_dry_run))
