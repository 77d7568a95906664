"""The pyinfra fact :class:`StaleServices`: running systemd services (and active oneshot ones,
``RemainAfterExit``: ``nftables``) whose configuration changed after they last (re)started or
systemd reloaded them, so that what runs is not what the files say.

A service's configuration, as this fact reads it:

* its unit file and drop-ins (``FragmentPath``, ``DropInPaths``; not those systemd generates
  under ``/run``);
* the files under ``/etc`` its ``ExecStart`` names (a folder, or a glob's folder: its entries),
  and its ``EnvironmentFiles``;
* the ``/etc`` files of the Debian package (``dpkg``) or RPM that ships its unit file: the
  files the package lists, every file in a folder below ``/etc/X`` that the package lists,
  and everything under an ``/etc/X`` that package alone owns (``/etc/nginx``). Folders that
  several packages share at the top (``/etc/default``, ``/etc/mysql``) count only through the
  package's own files and subfolders. Folders where many packages drop files for other
  programs (:data:`NOT_SERVICE_CONFIG`: ``/etc/systemd/system``, ``/etc/logrotate.d``,
  ``/etc/ufw/applications.d``...) never count.

A file is stale for a service when its change time (ctime) is after ``since`` and after the
service entered the active state and after its last reload (the journal's "Reloaded" entry,
``MESSAGE_ID`` 7b05ebc6...), and it is not exactly as an installed package ships it (its md5
is not the package's, or no package ships it): what a package installs after a service
started is the package manager's business on a real server too. Symbolic links count by their
own ctime (not followed; one a package lists is pristine). A folder of the configuration whose
ctime is after that time while none of its entries' is lost an entry: it is reported as
``FOLDER/ (an entry removed)``. A reload made outside systemd (``nginx -s reload``) is not
seen. A unit whose commands are all ``true`` (a parent unit: ``postgresql.service``, whose
clusters are ``postgresql@VERSION-NAME``) reads no configuration and is left out. Machines
without systemd give no service.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

RELOADED_MESSAGE_ID = "7b05ebc668384222baa8881179cfda54"  # systemd's SD_MESSAGE_UNIT_RELOADED

# Folders whose files configure other programs than the services of the packages that drop
# them there (unit files are checked through each unit's own FragmentPath).
NOT_SERVICE_CONFIG = (
    "/etc/systemd/system", "/etc/systemd/user", "/etc/init.d", "/etc/rc?.d", "/etc/default",
    "/etc/logrotate.d", "/etc/logcheck", "/etc/cron.*", "/etc/ufw", "/etc/apparmor.d",
    "/etc/pam.d", "/etc/profile.d", "/etc/bash_completion.d", "/etc/sudoers.d", "/etc/sysctl.d",
    "/etc/tmpfiles.d", "/etc/modprobe.d", "/etc/ld.so.conf.d", "/etc/apt", "/etc/update-motd.d",
    "/etc/network/if-*.d", "/etc/xdg", "/etc/X11", "/etc/insserv.conf.d",
)

# $1: since (seconds since the epoch, fractions allowed). Prints "package<TAB>UNIT<TAB>PACKAGE"
# per running unit's package and "stale<TAB>UNIT<TAB>unit|PACKAGE<TAB>FILE" per changed file.
_SCRIPT = r"""
since=$1
command -v systemctl >/dev/null 2>&1 || exit 0
tab=$(printf '\t')
packages_of() {  # the packages that ship path $1 (merged /usr or not)
  for p in "$1" "/usr$1" "${1#/usr}"; do
    if command -v dpkg-query >/dev/null 2>&1; then
      dpkg-query -S "$p" 2>/dev/null | grep -v '^diversion' | sed -n '1s/: .*//p' | tr -d ' ' | tr ',' '\n'
    elif command -v rpm >/dev/null 2>&1; then
      rpm -qf --qf '%{NAME}\n' "$p" 2>/dev/null | grep -v 'not owned'
    fi
  done | sort -u
}
files_of() {  # what package $1 lists
  if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -L "$1" 2>/dev/null; else rpm -ql "$1" 2>/dev/null; fi
}
pristine() {  # whether file $1 is exactly as an installed package ships it (a link: one lists it)
  if [ -L "$1" ]; then [ -n "$(packages_of "$1")" ]; return; fi
  if command -v dpkg-query >/dev/null 2>&1; then
    sum=$(md5sum < "$1" | cut -d' ' -f1)
    for pkg in $(packages_of "$1"); do
      dpkg-query -W -f='${Conffiles}\n' "$pkg" 2>/dev/null |
        awk -v f="$1" -v s="$sum" '$1 == f && $2 == s {found = 1} END {exit !found}' && return 0
      sums=$(dpkg-query --control-path "$pkg" md5sums 2>/dev/null) && [ -n "$sums" ] &&
        grep -qxF "$sum  ${1#/}" "$sums" && return 0
    done
    return 1
  fi
  rpm -qf "$1" >/dev/null 2>&1 && ! rpm -Vf "$1" 2>/dev/null | grep -q " $1\$"
}
not_config() {  # whether path $1 is in a folder of NOT_SERVICE_CONFIG
  case $1 in __NOT_CONFIG__) return 0 ;; esac
  return 1
}
runs_nothing() {  # whether unit $1 runs only true (a parent unit: postgresql.service): it reads no configuration
  ! systemctl show -p ExecStartPre,ExecStart,ExecStartPost,ExecReload "$1" | grep -o 'path=[^ ;]*' |
    grep -qvE '^path=(/usr)?/bin/true$'
}
config_of() {  # the unit's configuration: "MAXDEPTH<TAB>PATH<TAB>unit|PACKAGE" lines (module docstring)
  unit=$1
  frag=$(systemctl show -P FragmentPath "$unit")
  for f in $frag $(systemctl show -P DropInPaths "$unit"); do
    case $f in /run/*) ;; *) printf '0\t%s\tunit\n' "$f" ;; esac
  done
  systemctl show -P EnvironmentFiles "$unit" | awk '{print "0\t" $1 "\tunit"}'
  systemctl show -P ExecStart "$unit" | grep -o '/etc/[^ ;]*' | sed 's|/[^/]*[*?[].*||' |
    awk '{print "0\t" $1 "\tunit"}'
  [ -n "$frag" ] || return 0
  for pkg in $(packages_of "$frag"); do
    printf 'package\t%s\t%s\n' "$unit" "$pkg"
    files_of "$pkg" | grep '^/etc/' | while IFS= read -r path; do
      not_config "$path" && continue
      if [ ! -d "$path" ]; then printf '0\t%s\t%s\n' "$path" "$pkg"; continue; fi
      case ${path#/etc/} in
        */*) printf '1\t%s\t%s\n' "$path" "$pkg" ;;
        *) [ "$(packages_of "$path" | wc -l)" -eq 1 ] && printf '9\t%s\t%s\n' "$path" "$pkg" ;;
      esac
    done
  done
}
systemctl list-units --type=service --state=running,exited --plain --no-legend --no-pager | awk '{print $1}' |
while IFS= read -r unit; do
  runs_nothing "$unit" && continue
  entered=$(date -d "$(systemctl show -P ActiveEnterTimestamp --timestamp=us+utc "$unit" 2>/dev/null ||
                       systemctl show -P ActiveEnterTimestamp "$unit")" +%s.%N 2>/dev/null) || entered=0
  reloaded=$(journalctl -q -o short-unix --no-pager -n 1 "UNIT=$unit" "MESSAGE_ID=__RELOADED__" 2>/dev/null |
             awk 'NR == 1 {print $1}')
  after=$(printf '%s\n' "$since" "$entered" "${reloaded:-0}" | sort -g | tail -n 1)
  config_of "$unit" | sort -u | while IFS="$tab" read -r depth path scope; do
    if [ "$depth" = package ]; then printf 'package\t%s\t%s\n' "$path" "$scope"; continue; fi
    [ -e "$path" ] || [ -L "$path" ] || continue
    [ "$depth" = 0 ] && [ -d "$path" ] && [ ! -L "$path" ] && depth=1  # a folder named in the unit
    find "$path" -maxdepth "$depth" \( -type f -o -type l \) -newerct "@$after" -print 2>/dev/null |
    while IFS= read -r file; do
      not_config "$file" || pristine "$file" || printf 'stale\t%s\t%s\t%s\n' "$unit" "$scope" "$file"
    done
    [ "$depth" = 0 ] && continue
    find "$path" -maxdepth "$((depth - 1))" -type d -newerct "@$after" -print 2>/dev/null |
    while IFS= read -r dir; do  # entries changed, none new: one was removed (or renamed away)
      not_config "$dir" && continue
      [ -z "$(find "$dir" -mindepth 1 -maxdepth 1 -newerct "@$after" -print 2>/dev/null | head -n 1)" ] &&
        printf 'stale\t%s\t%s\t%s/ (an entry removed)\n' "$unit" "$scope" "$dir"
    done
  done | sort -u
done
""".replace("__RELOADED__", RELOADED_MESSAGE_ID).replace(
    "__NOT_CONFIG__", "|".join(f"{d}|{d}/*" for d in NOT_SERVICE_CONFIG))


class StaleServices(FactBase):
    """Running services whose configuration changed after ``since`` and after they last
    started or reloaded (see the module docstring for what counts as configuration).

    ``since``: seconds since the epoch, as ``date +%s.%N`` prints them in the machine.
    Returns ``{"nginx.service": ["/etc/nginx/conf.d/site.conf", ...], ...}`` (empty: none).
    """

    def command(self, since: str) -> str:
        float(since)  # a number, or ValueError before anything runs
        return f"sh -c {shlex.quote(_SCRIPT.strip())} stale-services {shlex.quote(since)}"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        units_of: dict[str, set[str]] = {}
        found: list[tuple[str, str, str]] = []
        for line in output:
            kind, unit, scope, *rest = line.split("\t", 3)
            if kind == "package":
                units_of.setdefault(scope, set()).add(unit)
            elif kind == "stale" and rest:
                found.append((unit, scope, rest[0]))
        stale: dict[str, set[str]] = {}
        for unit, scope, path in found:
            if scope == "unit" or _belongs(unit, path, units_of.get(scope, set())):
                stale.setdefault(unit, set()).add(path)
        return {unit: sorted(paths) for unit, paths in sorted(stale.items())}


def _belongs(unit: str, path: str, package_units: set[str]) -> bool:
    """Whether a file of the package that ships ``unit`` configures ``unit``: always when the
    package runs that one service; when it runs several (systemd: journald, logind...), only
    a file whose path names the unit (``/etc/systemd/journald.conf`` for
    ``systemd-journald.service``)."""
    if len(package_units) <= 1:
        return True
    stem = unit.removesuffix(".service").split("@")[0].removeprefix("systemd-")
    return stem in path
