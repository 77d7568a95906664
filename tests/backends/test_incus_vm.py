"""``vm=True``: the Incus VM command (argv), the one-line refusal where the daemon has no VM
driver (from incusd's own warning; the real daemon on hosts without vhost_vsock), and Docker's
and OrbStack's refusals."""

from __future__ import annotations

import pytest
from incusenv import why_no_incus

from pytest_orbstack.backends import get_backend
from pytest_orbstack.backends.incus import commands as cmd
from pytest_orbstack.backends.incus import vm
from pytest_orbstack.backends.incus.backend import IncusBackend
from pytest_orbstack.errors import InvalidInput
from pytest_orbstack.model.inputs import check_resources
from pytest_orbstack.model.types import Resources

NO_VSOCK = [{"type": "Instance type not operational", "last_message": "vhost_vsock kernel module not loaded"},
            {"type": "AppArmor support has been disabled", "last_message": "Disabled: no kernel support"}]


def test_a_vm_is_launched_with_vm_and_keeps_its_limits() -> None:
    config = {"limits.cpu": "2"}
    argv = cmd.launch("web", "images:debian/bookworm", config, Resources(cpus=2, disk_mib=8192, vm=True))
    assert argv == ["incus", "launch", "images:debian/bookworm", "web", "--vm", "-c", "limits.cpu=2",
                    "-d", "root,size=8192MiB"]
    assert "--vm" not in cmd.launch("web", "x", {}, Resources(cpus=2))
    recorded = cmd.machine_config("deploy", "debian:12", Resources(vm=True))[f"{cmd.KEY}.resources"]
    assert '"vm": true' in recorded  # clones are VMs too


def test_vm_is_a_checked_machine_keyword() -> None:
    assert check_resources(vm=True).vm and not check_resources().vm
    with pytest.raises(InvalidInput, match=r"^vm= must be True or False, not 'yes'$"):
        check_resources(vm="yes")


def test_the_refusal_is_incusd_own_reason_in_one_line() -> None:
    line = vm.refusal({"environment": {"driver": "lxc"}}, NO_VSOCK)
    assert line == ("vm=True: this Incus daemon cannot run VMs (drivers: lxc; incusd: vhost_vsock kernel module "
                    "not loaded); leave vm= out for a system container, or use a host with KVM and vhost_vsock")
    assert "no QEMU, /dev/kvm or vhost_vsock" in (vm.refusal({"environment": {"driver": "lxc"}}, []) or "")
    assert vm.refusal({"environment": {"driver": "lxc | qemu"}}, NO_VSOCK) is None
    assert vm.parse("not json", "") == ({}, [])


@pytest.mark.parametrize("engine", ["docker", "orbstack"])
def test_container_engines_refuse_a_vm_in_one_line(engine: str) -> None:
    backend = get_backend(engine)
    with pytest.raises(InvalidInput, match=r"^vm=True: .*(containers only|no VM per machine)[^\n]*$"):
        backend.refuse_resources(Resources(vm=True))
    backend.refuse_resources(Resources())  # no VM asked: nothing to refuse


@pytest.mark.skipif(why_no_incus() is not None, reason=why_no_incus() or "")
def test_this_daemon_says_why_it_has_no_vms() -> None:
    """On a host whose incusd runs VMs, this is None and create would launch one."""
    why = IncusBackend().vm_refusal()
    if why is None:
        pytest.skip("this Incus daemon runs VMs")
    assert why.startswith("vm=True: this Incus daemon cannot run VMs (drivers: lxc") and "\n" not in why
    with pytest.raises(InvalidInput, match="cannot run VMs"):
        IncusBackend().create("ptvm-never-made", "debian:12", resources=Resources(vm=True))
