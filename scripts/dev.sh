#!/usr/bin/env bash
# pytest-orbstack developer entry point. Idempotent; safe to run as root on a fresh Debian machine.
#
#   bash scripts/dev.sh example   # set everything up, then run the example suite (examples/)
#   bash scripts/dev.sh test      # set everything up, then run the project's test suite
#   bash scripts/dev.sh setup     # only set up: engine, base image, virtualenv
#
# Set-up steps (each skipped when already done):
#   - Debian packages docker.io and debootstrap (only when Docker's daemon is missing and we are root)
#   - start dockerd when `docker info` does not answer
#   - build the offline base image `debian:bookworm` (debootstrap + docker import) when missing
#   - a virtualenv in .venv with this package installed (editable) and its test dependencies
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
BASE_IMAGE=debian:bookworm
log() { printf '[dev.sh] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  # Update the package lists unless they are there and fresh (images often ship without them).
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    as_root apt-get update -qq
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_packages() {
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  if [ ${#need[@]} -gt 0 ]; then log "installing ${need[*]}"; apt_install "${need[@]}"; fi
}

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  if [ -n "${DOCKER_HOST:-}" ]; then log "DOCKER_HOST=$DOCKER_HOST does not answer"; return 1; fi
  log "starting dockerd"
  as_root sh -c 'nohup dockerd >/var/log/pytest-orbstack-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  log "dockerd did not start; see /var/log/pytest-orbstack-dockerd.log"; tail -20 /var/log/pytest-orbstack-dockerd.log >&2 || true
  return 1
}

ensure_base_image() {
  # The tests' orbctl emulator boots this image directly: it must have systemd (a registry's
  # debian:bookworm has not, so none is pulled).
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 &&
     docker run --rm --entrypoint /bin/sh "$BASE_IMAGE" -c 'test -x /lib/systemd/systemd' >/dev/null 2>&1; then
    return 0
  fi
  log "building $BASE_IMAGE offline with debootstrap (about a minute)"
  local rootfs; rootfs=$(mktemp -d /var/tmp/pytest-orbstack-rootfs.XXXXXX)
  trap 'as_root rm -rf "$rootfs"' RETURN
  as_root debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,iproute2,iputils-ping,procps,sudo,ca-certificates \
    bookworm "$rootfs" >/var/tmp/pytest-orbstack-debootstrap.log 2>&1 \
    || { tail -20 /var/tmp/pytest-orbstack-debootstrap.log >&2; return 1; }
  as_root tar -C "$rootfs" -c . | docker import --change 'CMD ["/sbin/init"]' - "$BASE_IMAGE" >/dev/null
}

ensure_venv() {
  local stamp="$VENV/.pytest-orbstack-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then return 0; fi
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  touch "$stamp"
}

setup() {
  ensure_packages
  ensure_dockerd
  ensure_base_image
  ensure_venv
}

cmd=${1:-test}; shift || true
case "$cmd" in
  setup) setup ;;
  example)
    setup
    cd "$ROOT/examples"
    exec "$VENV/bin/pytest" -p no:cacheprovider "$@"
    ;;
  test)
    setup
    cd "$ROOT"
    exec "$VENV/bin/pytest" "$@"
    ;;
  *) echo "usage: $0 example|test|setup [pytest args...]" >&2; exit 2 ;;
esac
