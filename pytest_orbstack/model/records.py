"""One machine's record: its timings and fate, for the terminal summary, JUnit properties
and ``--orbstack-timings`` (plain data: xdist workers send it to the controller as JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_orbstack.model.results import DeployResult

JSON_KEYS = {"role": "kind", "alias": "role"}  # attribute -> its key in the JSON


@dataclass
class MachineRecord:
    """One machine's timings and fate, for the terminal summary and ``--orbstack-timings``."""
    name: str
    image: str
    backend: str
    role: str  # test, shared, golden
    created_by: str = "create"  # create (engine builders), clone, spare (a clone started while
    # the previous test ran: .spares), operations.machine (pyinfra), reused
    test: str = ""  # the key it was made for: the test id (and its number or role in the test),
    # or for a golden or session machine what it is ("golden machine of debian:bookworm with ...")
    alias: str = ""  # its name in an orbstack_machines group ("web", "db"), else ""
    created_at: float = 0.0  # when its making began (time.time()); 0: not made by this session
    phases: dict[str, float] = field(default_factory=dict)
    outcome: str = "alive"  # deleted, kept, failed
    deploys: list[dict[str, Any]] = field(default_factory=list)  # every apply: add_deploy()
    spec: str = ""  # what it was made as (image, user, resources, cloud-init): a kept one is reused only for the same

    def as_json(self) -> dict[str, Any]:
        """The record as JSON data, with the keys ``--orbstack-timings`` has always had
        (``kind``: the role, ``role``: the alias)."""
        return {JSON_KEYS.get(k, k): v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineRecord:
        """The record :meth:`as_json` wrote."""
        fields = {v: k for k, v in JSON_KEYS.items()}
        return cls(**{fields.get(k, k): v for k, v in data.items()})

    def add_deploy(self, result: DeployResult) -> None:
        """Record one apply (by a fixture or in a test body); the ``deploy`` phase is the sum."""
        self.deploys.append(dict(
            deploy=result.deploy, duration=round(result.duration, 3), success=result.success,
            operations=[dict(name=op.name, changed=op.changed, success=op.success,
                             duration=op.duration) for op in result.operations]))
        self.phases["deploy"] = round(sum(d["duration"] for d in self.deploys), 3)
