# shellcheck shell=bash
# The Incus set-up of scripts/dev.sh (`bash scripts/dev.sh incus`), sourced by it: it uses dev.sh's
# log, as_root, apt_install, ROOT, VENV and LOG_DIR (the images need the virtualenv: ensure_venv). Each step checks first and does
# nothing (saying so) when its part is already there. docs/incus.md says what was verified.
#
# Environment (all optional):
#   PYTEST_ORBSTACK_INCUS_IMAGES   the images made sure of, as OrbStack names them (default
#                                  debian:bookworm -> Incus image pytest-orbstack/debian/bookworm)
#   PYTEST_ORBSTACK_INCUS_CLOUD_IMAGES  the same for their cloud variant (cloud-init; default
#                                  debian:bookworm -> pytest-orbstack/debian/bookworm/cloud)
#   PYTEST_ORBSTACK_INCUS_BRIDGE   the managed bridge network (default incusbr0)
#   PYTEST_ORBSTACK_INCUS_POOL     the storage pool of the default profile (default: default)
#   PYTEST_ORBSTACK_INCUS_POOL_DRIVER  auto (default: btrfs where the host has loop devices and
#                                  the pool can be made, else dir), btrfs (a sparse loop file of
#                                  PYTEST_ORBSTACK_INCUS_POOL_SIZE, default 30GiB: copies and launches
#                                  are snapshots, ~70 ms a copy) or dir (copies files, 1-4 s a copy)

INCUS_IMAGES=${PYTEST_ORBSTACK_INCUS_IMAGES-debian:bookworm}
INCUS_CLOUD_IMAGES=${PYTEST_ORBSTACK_INCUS_CLOUD_IMAGES-debian:bookworm}
INCUS_BRIDGE=${PYTEST_ORBSTACK_INCUS_BRIDGE:-incusbr0}
INCUS_DOMAIN=orb.local
INCUS_POOL=${PYTEST_ORBSTACK_INCUS_POOL:-default}
INCUS_POOL_DRIVER=${PYTEST_ORBSTACK_INCUS_POOL_DRIVER:-auto}
INCUS_POOL_SIZE=${PYTEST_ORBSTACK_INCUS_POOL_SIZE:-30GiB}
BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.list

ensure_incus_packages() {
  if command -v incus >/dev/null 2>&1 && [ -x /usr/libexec/incus/incusd ]; then
    log "incus: $(incus --version) already installed"; return 0
  fi
  if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "incus: adding the bookworm-backports source ($BACKPORTS_LIST)"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | as_root tee "$BACKPORTS_LIST" >/dev/null
  fi
  # incus-base: the daemon and client without QEMU (VMs cannot run on such hosts; docs/incus.md)
  log "incus: installing incus-base 6.0 from bookworm-backports (about 30 s)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
    incus-base dnsmasq-base >/dev/null
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
}

# incusd needs lxcfs running when it starts to give machines their own /proc/meminfo, uptime...
ensure_lxcfs() {
  if grep -qs ' /var/lib/lxcfs fuse.lxcfs ' /proc/mounts; then
    if as_root stat /var/lib/lxcfs/proc >/dev/null 2>&1; then log "incus: lxcfs already running"; return 0; fi
    # the mount of an lxcfs that ended ("Transport endpoint is not connected")
    log "incus: lxcfs ended, leaving a dead mount: unmounting it"
    as_root umount -l /var/lib/lxcfs || true
  fi
  [ -e /dev/fuse ] || { log "incus: no /dev/fuse, machines see the host's /proc/meminfo"; return 0; }
  log "incus: starting lxcfs on /var/lib/lxcfs (log: $LOG_DIR/pytest-orbstack-lxcfs.log)"
  as_root mkdir -p /var/lib/lxcfs
  # shellcheck disable=SC2016  # $1 is the inner sh's
  as_root sh -c 'nohup lxcfs /var/lib/lxcfs >"$1" 2>&1 &' sh "$LOG_DIR/pytest-orbstack-lxcfs.log"
  for _ in $(seq 1 20); do grep -qs ' /var/lib/lxcfs fuse.lxcfs ' /proc/mounts && return 0; sleep 0.5; done
  log "incus: lxcfs did not mount (see its log); going on without it"
}

ensure_incusd() {
  if as_root incus info >/dev/null 2>&1; then
    log "incus: incusd already answers"
    # an lxcfs that ended under a running incusd: machines started from now on get it again
    if grep -qs ' /var/lib/lxcfs fuse.lxcfs ' /proc/mounts; then ensure_lxcfs; fi
    return 0
  fi
  ensure_lxcfs
  local ilog="$LOG_DIR/pytest-orbstack-incusd.log"
  log "incus: starting incusd (log: $ilog)"
  # shellcheck disable=SC2016  # $1 is the inner sh's
  as_root sh -c 'nohup /usr/libexec/incus/incusd --group=incus-admin --logfile="$1" >>"$1" 2>&1 &' sh "$ilog"
  if ! as_root /usr/libexec/incus/incusd waitready --timeout=60; then
    log "incusd did not start; see $ilog"; tail -20 "$ilog" >&2 || true; return 1
  fi
}

# Print "A.B.C" of the first 10.A.B.0/24... candidate no IPv4 route or address of the host overlaps.
free_ipv4_subnet() {
  local nets third net base len lo hi
  nets=$( { ip -4 route show; ip -4 addr show | awk '/inet /{print $2}'; } |
    awk '$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/ {print $1}')
  for third in $(seq 100 250); do
    lo=$(( (10 << 24) + (182 << 16) + (third << 8) )); hi=$(( lo + 255 ))
    local clash=0
    for net in $nets; do
      base=${net%/*}; len=32; [ "$net" = "$base" ] || len=${net#*/}
      IFS=. read -r a b c d <<<"$base"
      local start=$(( (a << 24) + (b << 16) + (c << 8) + d )) size=$(( 1 << (32 - len) ))
      start=$(( start - start % size ))
      if [ $start -le $hi ] && [ $(( start + size - 1 )) -ge $lo ]; then clash=1; break; fi
    done
    [ $clash = 1 ] || { echo "10.182.$third"; return 0; }
  done
  return 1
}

# Machines find each other as NAME.orb.local, as on OrbStack: the bridge's DNS domain (dnsmasq
# answers NAME.<domain>; DHCP hands the domain out, resolved makes it the search domain).
ensure_incus_network() {
  if as_root incus network show "$INCUS_BRIDGE" >/dev/null 2>&1; then
    log "incus: network $INCUS_BRIDGE already there ($(as_root incus network get "$INCUS_BRIDGE" ipv4.address))"
    if [ "$(as_root incus network get "$INCUS_BRIDGE" dns.domain)" != "$INCUS_DOMAIN" ]; then
      log "incus: $INCUS_BRIDGE: DNS domain $INCUS_DOMAIN (machines are NAME.$INCUS_DOMAIN)"
      as_root incus network set "$INCUS_BRIDGE" "dns.domain=$INCUS_DOMAIN"
    fi
    return 0
  fi
  local prefix
  prefix=$(free_ipv4_subnet) || { log "incus: no free 10.182.X.0/24 subnet"; return 1; }
  log "incus: creating bridge $INCUS_BRIDGE on $prefix.1/24 (NAT, DHCP, DNS domain $INCUS_DOMAIN)"
  as_root incus network create "$INCUS_BRIDGE" "ipv4.address=$prefix.1/24" ipv4.nat=true ipv6.address=none \
    "dns.domain=$INCUS_DOMAIN" >/dev/null
}

ensure_incus_storage() {
  if as_root incus storage show "$INCUS_POOL" >/dev/null 2>&1; then
    log "incus: storage pool $INCUS_POOL already there ($(as_root incus storage show "$INCUS_POOL" | awk '/^driver:/{print $2}'))"
    ensure_btrfs_quotas
    return 0
  fi
  case $INCUS_POOL_DRIVER in
    dir) create_dir_pool ;;
    btrfs) create_btrfs_pool ;;
    auto)
      if [ ! -e /dev/loop-control ]; then
        log "incus: no /dev/loop-control (no loop devices for a btrfs pool)"; create_dir_pool
      elif ! create_btrfs_pool; then
        log "incus: the btrfs pool could not be made (above); falling back to dir"; create_dir_pool
      fi ;;
    *) log "incus: PYTEST_ORBSTACK_INCUS_POOL_DRIVER must be auto, btrfs or dir, not $INCUS_POOL_DRIVER"; return 1 ;;
  esac
}

# A btrfs pool enforces disk= through qgroups; deleting many snapshots at once can leave their
# accounting "inconsistent", and then no limit holds until a rescan.
ensure_btrfs_quotas() {
  local mount="/var/lib/incus/storage-pools/$INCUS_POOL"
  command -v btrfs >/dev/null 2>&1 && [ -d "$mount" ] || return 0
  if as_root btrfs qgroup show "$mount" 2>&1 | grep -q 'inconsistent'; then
    log "incus: $INCUS_POOL's btrfs quota accounting is inconsistent: rescanning it (disk= limits hold again)"
    as_root btrfs quota rescan -w "$mount" >/dev/null
  fi
}

create_dir_pool() {
  log "incus: creating storage pool $INCUS_POOL (dir: every copy copies the machine's files)"
  as_root incus storage create "$INCUS_POOL" dir >/dev/null
}

create_btrfs_pool() {
  command -v mkfs.btrfs >/dev/null 2>&1 || apt_install btrfs-progs
  log "incus: creating storage pool $INCUS_POOL (btrfs on a $INCUS_POOL_SIZE sparse loop file: copies are snapshots)"
  as_root incus storage create "$INCUS_POOL" btrfs "size=$INCUS_POOL_SIZE" >/dev/null
}

ensure_incus_profile() {
  local devices
  devices=$(as_root incus profile device list default)
  if grep -qx eth0 <<<"$devices"; then log "incus: default profile already has eth0"; else
    log "incus: default profile: eth0 on $INCUS_BRIDGE"
    as_root incus profile device add default eth0 nic name=eth0 "network=$INCUS_BRIDGE" >/dev/null
  fi
  if grep -qx root <<<"$devices"; then log "incus: default profile already has root"; else
    log "incus: default profile: root disk on pool $INCUS_POOL"
    as_root incus profile device add default root disk path=/ "pool=$INCUS_POOL" >/dev/null
  fi
}

# Docker sets the FORWARD policy to DROP, which drops the machines' traffic to the outside. The
# two rules Incus' docs give for this let the bridge's own traffic through, and nothing else.
ensure_incus_firewall() {
  if ! command -v iptables >/dev/null 2>&1; then log "incus: no iptables command, no rule needed"; return 0; fi
  if ! as_root iptables -S FORWARD 2>/dev/null | grep -qx -- '-P FORWARD DROP'; then
    log "incus: iptables FORWARD policy is not DROP, no rule needed"; return 0
  fi
  local chain=FORWARD added=0
  as_root iptables -S DOCKER-USER >/dev/null 2>&1 && chain=DOCKER-USER
  local -a rules=("-i $INCUS_BRIDGE -j ACCEPT" "-o $INCUS_BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
  local rule
  for rule in "${rules[@]}"; do
    # shellcheck disable=SC2086  # a rule is words
    as_root iptables -C "$chain" $rule 2>/dev/null && continue
    # shellcheck disable=SC2086
    as_root iptables -I "$chain" $rule; added=1
  done
  if [ $added = 1 ]; then log "incus: FORWARD policy is DROP: accepting $INCUS_BRIDGE's traffic in $chain"
  else log "incus: $chain already accepts $INCUS_BRIDGE's traffic"; fi
}

# The images: built and imported by the package's own recipe (pytest_orbstack/backends/incus/
# rootfs.py, which the engine also runs when a machine asks for an image that is missing), once
# per host under its file lock: a parallel caller waits and then finds the image there.
ensure_incus_images() {
  local image
  for image in $INCUS_IMAGES; do
    "$VENV/bin/python" -m pytest_orbstack.backends.incus.images "$image" 2>&1 | sed 's/^/[dev.sh] incus: /' >&2
    [ "${PIPESTATUS[0]}" = 0 ] || return 1
  done
  if [ -n "$INCUS_CLOUD_IMAGES" ]; then
    # shellcheck disable=SC2086  # a list of names
    "$VENV/bin/python" -m pytest_orbstack.backends.incus.images --cloud $INCUS_CLOUD_IMAGES 2>&1 |
      sed 's/^/[dev.sh] incus: /' >&2
    [ "${PIPESTATUS[0]}" = 0 ] || return 1
  fi
}

incus_setup() {
  ensure_incus_packages
  ensure_incusd
  ensure_incus_network
  ensure_incus_storage
  ensure_incus_profile
  ensure_incus_firewall
  ensure_incus_images
}
