"""PyInfra facts gathered inside the current machine (any connector, typically
``@orbstack/NAME``): :class:`MachineNetwork`, :class:`Connectivity`, :class:`DnsLookup`,
:class:`MachineStatus`, :class:`SystemLogs`. They need only POSIX sh, iproute2, getent, ps and
systemd; ``Connectivity`` uses curl or ping when present and falls back to bash's /dev/tcp.
``DnsLookup`` gives a list that is empty (false) when the name does not resolve and says why
(:mod:`pytest_orbstack.model.checks`); the others give plain dicts and lists, as pyinfra facts do.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any
from urllib.parse import urlsplit

from pyinfra.api import FactBase

from pytest_orbstack.model.checks import HTTP_STATUS, Resolution

_NETWORK_SCRIPT = r"""
echo "hostname=$(hostname)"
ip -o -4 addr show scope global | awk '{print "ip4=" $4}'
ip -o -6 addr show scope global | awk '{print "ip6=" $4}'
ip -4 route show default | awk '{print "gateway=" $3; exit}'
awk '/^nameserver/ {print "nameserver=" $2}' /etc/resolv.conf
"""


class MachineNetwork(FactBase):
    """Network details of the current machine.

    ``{"hostname", "domain" (NAME.orb.local), "ip4", "ip6", "subnet4", "subnet6", "gateway",
    "addresses4", "addresses6", "nameservers"}``; ``ip4``/``subnet4`` are those of the first
    global IPv4 address.
    """

    def command(self) -> str:
        return _NETWORK_SCRIPT.strip()

    def process(self, output: list[str]) -> dict[str, Any]:
        values: dict[str, list[str]] = {}
        for line in output:
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value.strip())
        hostname = (values.get("hostname") or [""])[0]
        ifaces4 = [ipaddress.ip_interface(v) for v in values.get("ip4", [])]
        ifaces6 = [ipaddress.ip_interface(v) for v in values.get("ip6", [])]
        return {
            "hostname": hostname,
            "domain": f"{hostname}.orb.local" if hostname else None,
            "ip4": str(ifaces4[0].ip) if ifaces4 else None,
            "ip6": str(ifaces6[0].ip) if ifaces6 else None,
            "subnet4": str(ifaces4[0].network) if ifaces4 else None,
            "subnet6": str(ifaces6[0].network) if ifaces6 else None,
            "addresses4": [str(i.ip) for i in ifaces4],
            "addresses6": [str(i.ip) for i in ifaces6],
            "gateway": values["gateway"][0] if values.get("gateway") else None,
            "nameservers": values.get("nameserver", []),
        }


CONNECTIVITY_METHODS = ("ping", "tcp", "http")


class Connectivity(FactBase):
    """Whether the current machine reaches ``target``.

    ``method``: ``ping`` (ICMP), ``tcp`` (connect to ``port``) or ``http`` (GET ``target``, a URL
    or host, expecting any HTTP status). Returns ``{"reachable": bool, "method", "target",
    "port", "timeout", "status" (HTTP status code or None), "rc" (the check's exit code),
    "detail" (its output)}``: test ``["reachable"]`` (the dict itself is always true; a dict
    whose truth were ``reachable`` would print as ``{}`` in pyinfra's indented JSON output).
    ``Machine.connectivity`` gives it as a :class:`~pytest_orbstack.model.checks.Reachability`,
    false when unreached. Never fails the deploy.
    """

    def command(self, target: str, method: str = "ping", port: int | None = None,
                timeout: int = 5) -> str:
        if method not in CONNECTIVITY_METHODS:
            raise ValueError(f"unknown connectivity method {method!r}: use one of "
                             f"{', '.join(CONNECTIVITY_METHODS)}")
        t = int(timeout)
        self.args = {"target": target, "method": method, "port": port, "timeout": t}
        if method == "ping":
            check = f"ping -c 1 -W {t} {shlex.quote(target)} 2>&1"
        elif method == "tcp":
            if not port:
                raise ValueError("connectivity method 'tcp' needs a port")
            dev = shlex.quote(f"/dev/tcp/{target}/{int(port)}")
            check = f"timeout {t} bash -c {shlex.quote(f'exec 3<>{dev}')} 2>&1 && echo connected"
        else:
            check = _http_check(target, port, t)
        return f"out=$({check}); rc=$?; echo \"rc=$rc\"; echo \"$out\""

    def process(self, output: list[str]) -> dict[str, Any]:
        rc = int(output[0].partition("=")[2]) if output else 1
        detail = "\n".join(output[1:]).strip()
        status = None
        if self.args["method"] == "http":
            codes = [int(m[1]) for m in map(HTTP_STATUS.match, output[1:]) if m and m[1] != "000"]
            status = codes[0] if codes else None
            reachable = rc == 0 and bool(status)
        else:
            reachable = rc == 0
        return {**self.args, "reachable": reachable, "status": status, "rc": rc, "detail": detail}


def _http_check(target: str, port: int | None, timeout: int) -> str:
    """A GET of ``target`` (a URL, or a host for ``http://HOST:PORT/``) by curl; without curl, a
    plain HTTP/1.0 request over bash's /dev/tcp for ``http`` URLs, and a failure naming curl
    for any other scheme (plain HTTP sent to an https URL's host would answer for it)."""
    url = target if "://" in target else f"http://{target}:{int(port or 80)}/"
    parts = urlsplit(url)
    if port and parts.port and int(port) != parts.port:
        raise ValueError(f"connectivity: port={port} and the port of {target!r} differ")
    if port and not parts.port:
        parts = parts._replace(netloc=f"{parts.netloc}:{int(port)}")
        url = parts.geturl()
    if parts.scheme == "http":
        host, path = parts.hostname or "", parts.path or "/"
        dev = shlex.quote(f"/dev/tcp/{host}/{parts.port or 80}")
        raw = (f"exec 3<>{dev} && printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "
               f"{shlex.quote(path)} {shlex.quote(host)} >&3 && head -1 <&3")
        fallback = f"timeout {timeout} bash -c {shlex.quote(raw)}"
    else:
        fallback = f"echo {shlex.quote(f'{parts.scheme}: needs curl in the machine (it has none)')}; false"
    return (f"if command -v curl >/dev/null; then curl -sS -o /dev/null -m {timeout} "
            f"-w 'HTTP %{{http_code}}' {shlex.quote(url)}; else {fallback}; fi 2>&1")


class DnsLookup(FactBase):
    """Addresses ``hostname`` resolves to from the current machine (``getent ahosts``), in
    resolver order without duplicates: a :class:`~pytest_orbstack.model.checks.Resolution`, a
    list that is empty and false when the name does not resolve, with ``hostname`` and
    ``reason`` (getent's exit code and message)."""

    @staticmethod
    def default() -> list:
        return []

    def command(self, hostname: str) -> str:
        self.hostname = hostname
        return (f"out=$(getent ahosts {shlex.quote(hostname)} 2>&1); rc=$?; "
                'echo "rc=$rc"; printf \'%s\\n\' "$out"')

    def process(self, output: list[str]) -> Resolution:
        rc = int(output[0].partition("=")[2]) if output and output[0].startswith("rc=") else 1
        addresses, other = [], []
        for line in filter(None, (line.strip() for line in output[1:])):
            try:
                addresses.append(str(ipaddress.ip_address(line.split()[0])))
            except ValueError:
                other.append(line)
        why = "; ".join(other) or GETENT_EXITS.get(rc, "no address")
        reason = "" if addresses else f"getent ahosts exit {rc}: {why}"
        return Resolution(dict.fromkeys(addresses), getattr(self, "hostname", ""), reason)


GETENT_EXITS = {1: "missing argument or unknown database", 2: "name not found",
                3: "enumeration not supported"}


# The machine's memory cgroup: PID 1's (cgroup v1: the memory controller's line; v2: the 0:: line)
# without the init.scope systemd moves itself into, i.e. the machine's root cgroup, which holds
# every process of the machine. Used memory leaves out the inactive file cache, as `docker stats`.
MEMORY_SCRIPT = r"""
p1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/1/cgroup)
p2=$(awk -F: '$1 == "0" {print $3; exit}' /proc/1/cgroup)
d1=/sys/fs/cgroup/memory${p1%/init.scope}; d2=/sys/fs/cgroup${p2%/init.scope}
if [ -n "$p1" ] && [ -r "$d1/memory.usage_in_bytes" ]; then
  echo "cgroup_version=1"; echo "cgroup_used=$(cat "$d1/memory.usage_in_bytes")"
  echo "cgroup_limit=$(cat "$d1/memory.limit_in_bytes")"
  awk '$1 == "total_inactive_file" {print "cgroup_inactive_file=" $2}' "$d1/memory.stat"
elif [ -n "$p2" ] && [ -r "$d2/memory.current" ]; then
  echo "cgroup_version=2"; echo "cgroup_used=$(cat "$d2/memory.current")"
  echo "cgroup_limit=$(cat "$d2/memory.max")"
  awk '$1 == "inactive_file" {print "cgroup_inactive_file=" $2}' "$d2/memory.stat"
fi
""".strip()

_STATUS_SCRIPT = r"""
echo "system=$(systemctl is-system-running 2>/dev/null)"
systemctl list-units --state=failed --no-legend --plain 2>/dev/null | awk '{print "failed=" $1}'
e=$(ps -o etimes= -p 1 | tr -d ' '); u=$(cut -d. -f1 /proc/uptime); echo "uptime=$((e < u ? e : u))"
echo "load=$(ps -e -o stat= | grep -c '^[RD]')"
echo "host_load=$(cut -d' ' -f1-3 /proc/loadavg)"
awk '/^MemTotal/ {print "meminfo_total_kib=" $2} /^MemAvailable/ {print "meminfo_available_kib=" $2}' /proc/meminfo
__MEMORY__
df -Pk / | awk 'NR==2 {print "disk_total_kib=" $2; print "disk_used_kib=" $3}'
[ ! -e /run/cloud-init/enabled ] || echo "cloud_init=$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')"
. /etc/os-release 2>/dev/null; echo "os=$PRETTY_NAME"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
""".replace("__MEMORY__", MEMORY_SCRIPT)


class MachineStatus(FactBase):
    """Detailed status of the current machine, its own numbers where the kernel is shared:

    ``system`` (systemd state), ``failed_units``, ``uptime_seconds`` (since the machine's init
    started, not the kernel's uptime: the lesser of PID 1's age and /proc/uptime, which lxcfs makes
    the machine's own on Incus, where ``ps`` gets PID 1's age wrong), ``load`` (tasks running or in
    uninterruptible sleep in the machine now: what load averages are made of, counted in the
    machine's own process list), ``host_load`` (the kernel's 1/5/15-minute load averages, shared by
    every machine on that kernel), ``mem_total_kib`` / ``mem_used_kib`` / ``mem_available_kib``
    (from the machine's memory cgroup when it has one, on cgroup v1 or v2: the whole machine's use
    without its inactive file cache, as ``docker stats`` counts it, and its limit or else the
    kernel's total; else from /proc/meminfo), ``memory_source`` (``cgroup`` or ``meminfo``),
    ``cgroup_version`` (1, 2, or 0 with meminfo), ``disk_total_kib``, ``disk_used_kib``, ``os``,
    ``kernel``, ``arch``, ``cloud_init`` (cloud-init's status: ``done``, ``error``, ``running``;
    ``""`` when cloud-init is not enabled in the machine)."""

    def command(self) -> str:
        return _STATUS_SCRIPT.strip()

    def process(self, output: list[str]) -> dict[str, Any]:
        raw: dict[str, str] = {}
        status: dict[str, Any] = {"failed_units": []}
        for line in output:
            key, _, value = line.partition("=")
            if key == "failed":
                status["failed_units"].append(value)
            else:
                raw[key] = value.strip()
        for key in ("system", "os", "kernel", "arch", "cloud_init"):
            status[key] = raw.get(key, "")
        status["uptime_seconds"] = float(raw.get("uptime") or 0)
        status["load"] = float(raw.get("load") or 0)
        status["host_load"] = [float(x) for x in raw.get("host_load", "").split()]
        for key in ("disk_total_kib", "disk_used_kib"):
            status[key] = int(raw.get(key) or 0)
        total = int(raw.get("meminfo_total_kib") or 0)
        if raw.get("cgroup_used", "").isdigit():
            inactive = int(raw.get("cgroup_inactive_file") or 0)
            used = max(int(raw["cgroup_used"]) - inactive, 0) // 1024
            limit = raw.get("cgroup_limit", "")
            if limit.isdigit() and int(limit) // 1024 < total:
                total = int(limit) // 1024
            status.update(mem_total_kib=total, mem_used_kib=used,
                          mem_available_kib=max(total - used, 0), memory_source="cgroup",
                          cgroup_version=int(raw.get("cgroup_version") or 0))
        else:
            available = int(raw.get("meminfo_available_kib") or 0)
            status.update(mem_total_kib=total, mem_used_kib=total - available,
                          mem_available_kib=available, memory_source="meminfo", cgroup_version=0)
        return status


class SystemLogs(FactBase):
    """The tail of the systemd journal of the current machine: the last ``lines`` lines,
    optionally of one ``unit``, as a list of strings. Needs root (use ``_sudo=True``) to see
    every unit's messages."""

    @staticmethod
    def default() -> list:
        return []

    def command(self, lines: int = 100, unit: str | None = None) -> str:
        unit_arg = f" -u {shlex.quote(unit)}" if unit else ""
        return f"journalctl --no-pager -q -o short-iso -n {int(lines)}{unit_arg}"

    def process(self, output: list[str]) -> list[str]:
        return list(output)
