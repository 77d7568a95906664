"""``Machine.reboot()`` on every engine, real machines (one per engine): a deploy writes and
enables a tiny systemd unit, the machine is rebooted, and the unit ran again in the new boot,
``/tmp`` is empty, PID 1 is a new process, and commands and deploys work afterwards.

A container keeps the host's kernel, so ``/proc/sys/kernel/random/boot_id`` does not change (and
``/proc/uptime`` is the host's, except where lxcfs gives Incus containers their own): what marks
a new boot is PID 1's start time (``/proc/1/stat``, field 22) and how long PID 1 has run."""

from __future__ import annotations

import io
import time

import pytest
from incusenv import why_no_incus
from podmanenv import why_no_podman
from testenv import needs_docker, unique

from pytest_orbstack.backends import get_backend
from pytest_orbstack.machines.machine import Machine

UNIT = "pto-reboot.service"
STARTED = "/run/pto-reboot-started"  # written by the unit at each start (/run: a tmpfs)
UNIT_TEXT = f"""[Unit]
Description=pytest-orbstack reboot test
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'cat /proc/1/stat > {STARTED}'
[Install]
WantedBy=multi-user.target
"""
BOOT = "sed 's/.*) //' /proc/1/stat | cut -d' ' -f20"  # PID 1's start time (after its comm)


def enable_unit() -> None:
    """The deploy: the unit written, enabled and started."""
    from pyinfra.operations import files, systemd
    files.put(name="Write the unit", src=io.StringIO(UNIT_TEXT), dest=f"/etc/systemd/system/{UNIT}")
    systemd.service(name="Enable and start it", service=UNIT, running=True, enabled=True, daemon_reload=True)


def _skip_unless(why: str | None) -> None:
    if why:
        pytest.skip(why)


@pytest.fixture(params=["docker", "podman", "incus", "orbstack"])
def machine(request):
    """A running debian:bookworm machine on the engine (OrbStack: through the orbctl emulator,
    or the real one with PYTEST_ORBSTACK_REAL=1), deleted at the end."""
    engine_name = request.param
    if engine_name == "docker":
        mark = needs_docker("the reboot tests")
        _skip_unless(mark.kwargs["reason"] if mark.args[0] else None)
    elif engine_name == "podman":
        _skip_unless(why_no_podman())
    elif engine_name == "incus":
        _skip_unless(why_no_incus())
    else:
        request.getfixturevalue("orbctl_path")
    engine, name = get_backend(engine_name), unique("reboot")
    request.addfinalizer(lambda: engine.delete_if_exists(name))  # also after a failed create
    return Machine(name, engine, "debian:bookworm", created=engine.create(name, "debian:bookworm"))


def test_reboot_restarts_init_units_and_tmp(machine: Machine) -> None:
    assert machine.apply(enable_unit, config={"SUDO": True}).success
    assert machine.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    first_start = machine.run(f"cat {STARTED}").stdout
    before = machine.run(BOOT).stdout.strip()
    assert machine.run("echo left > /tmp/pto-left && cat /tmp/pto-left").stdout == "left\n"
    time.sleep(1.1)  # PID 1's start time counts clock ticks: the new one must differ visibly

    began = time.monotonic()
    machine.reboot()
    took = time.monotonic() - began

    after = machine.run(BOOT)
    assert after.rc == 0 and after.stdout.strip().isdigit(), after.stderr
    assert int(after.stdout) > int(before), f"PID 1 started at {before} before and {after.stdout} after"
    assert machine.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    started = machine.run(f"cat {STARTED}").stdout
    assert started != first_start and started.split(") ")[1].split()[19] == after.stdout.strip()
    assert machine.run("test -e /tmp/pto-left").rc == 1  # /tmp holds only what this boot made
    assert machine.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert machine.host.file(f"/etc/systemd/system/{UNIT}").exists  # testinfra after the reboot
    assert machine.run("id -un", user=None).rc == 0  # the default user's shell too
    assert took < 120
    uptime = machine.status()["uptime_seconds"]  # since PID 1 started: restarted with it
    assert 0 <= uptime <= took + 10, f"uptime {uptime}s after a reboot that took {took:.1f}s"
    # the pyinfra connector after the reboot: its facts find the unit enabled and running, so
    # only the reload daemon_reload=True always asks for runs
    again = machine.apply(enable_unit, config={"SUDO": True})
    assert [(op.name, op.commands) for op in again.changed] == [("Enable and start it", ["systemctl daemon-reload"])]


def reboot_in_deploy() -> None:
    from pyinfra.operations import server
    server.reboot(delay=2, interval=1, reboot_timeout=60)


def test_server_reboot_in_a_deploy_on_incus(request) -> None:
    """pyinfra's ``server.reboot`` through the connector: the ``reboot`` in the machine restarts
    it (LXC restarts a container whose init rebooted) and lxcfs gives it its own
    ``/proc/uptime``, which pyinfra compares; the connect that fails while the machine is
    down is not the deploy's error once one succeeds. (Docker and Podman stop a container whose
    init rebooted, and their /proc/uptime is the host's: README, "Rebooting".)"""
    from incusenv import incus_machine
    engine, name = incus_machine(request, "rbt")
    machine = Machine(name, engine, "debian:bookworm")
    before = machine.run(BOOT).stdout.strip()
    result = machine.apply(reboot_in_deploy, config={"SUDO": True})
    assert result.success, result.summary()
    assert int(machine.run(BOOT).stdout) > int(before)
