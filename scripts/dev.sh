#!/usr/bin/env bash
# pytest-orbstack developer entry point. Idempotent; safe to run as root on a fresh Debian machine.
#
#   bash scripts/dev.sh example      # set everything up, then run the example suite (examples/)
#   bash scripts/dev.sh test         # set everything up, then run the project's test suite
#   bash scripts/dev.sh setup        # only set up: engine, base image, virtualenv
#   bash scripts/dev.sh base-image   # only the engine and the base image (no virtualenv)
#   bash scripts/dev.sh incus        # only Incus: daemon, bridge, pool, profile, offline images
#                                    # (scripts/dev-incus.sh; docs/incus.md)
#   bash scripts/dev.sh podman       # only Podman: the package and its offline base image
#                                    # (scripts/dev-podman.sh; docs/podman.md)
#
# Set-up steps (each skipped when already done; root is asked for through sudo when not root):
#   - Debian packages docker.io, debootstrap and python3-venv when their commands are missing
#   - start dockerd when `docker info` does not answer
#   - build the offline base image (debootstrap + docker import, CMD /sbin/init) when it is
#     missing or has no systemd; the debootstrap tree is removed afterwards, also on failure
#     or interruption, and nothing is left in /tmp or /var/tmp
#   - a virtualenv with this package installed (editable) and its test dependencies
#
# Environment (all optional):
#   PYTEST_ORBSTACK_BASE_IMAGE   tag of the base image (default debian:bookworm, which the
#                                tests boot); another tag builds a throwaway copy, as .ci/run does
#   PYTEST_ORBSTACK_VENV         the virtualenv (default .venv in the repository)
#   PYTEST_ORBSTACK_WORKERS      xdist workers of `test` (default 2; 0: one process)
#   PYTEST_ORBSTACK_LOG_DIR      where dockerd's log, and debootstrap's log when it fails, are
#                                kept (default /var/log)
#   PYTEST_ORBSTACK_SCRATCH_DIR  parent of the temporary debootstrap tree (default /var/tmp: /tmp
#                                may be a tmpfs mounted nodev/noexec, where debootstrap fails)
#   PYTEST_ORBSTACK_SYSCTL_DIR   where fs/inotify/max_user_instances is (default /proc/sys)
# The last four exist so that tests/setup/test_dev_sh.py can run this script against stubs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_IMAGE=${PYTEST_ORBSTACK_BASE_IMAGE:-debian:bookworm}
VENV=${PYTEST_ORBSTACK_VENV:-$ROOT/.venv}
LOG_DIR=${PYTEST_ORBSTACK_LOG_DIR:-/var/log}
SCRATCH_DIR=${PYTEST_ORBSTACK_SCRATCH_DIR:-/var/tmp}
SYSCTL_DIR=${PYTEST_ORBSTACK_SYSCTL_DIR:-/proc/sys}
INOTIFY_INSTANCES=1024
log() { printf '[dev.sh] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  # Update the package lists unless they are there and fresh (images often ship without them).
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    as_root apt-get update -qq
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_packages engine|venv...: install the Debian packages those steps need, if missing.
ensure_packages() {
  local need=() what
  for what in "$@"; do
    case $what in
      engine)
        if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
          need+=(docker.io)
        fi
        command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
        ;;
      venv)
        command -v python3 >/dev/null 2>&1 || need+=(python3)
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
        ;;
    esac
  done
  if [ ${#need[@]} -gt 0 ]; then log "installing ${need[*]}"; apt_install "${need[@]}"; fi
}

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  if [ -n "${DOCKER_HOST:-}" ]; then log "DOCKER_HOST=$DOCKER_HOST does not answer"; return 1; fi
  local dlog="$LOG_DIR/pytest-orbstack-dockerd.log"
  log "starting dockerd (log: $dlog)"
  # shellcheck disable=SC2016  # $1 is the inner sh's: the log path, passed as an argument
  as_root sh -c 'nohup dockerd >"$1" 2>&1 &' sh "$dlog"
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  log "dockerd did not start; see $dlog"; tail -20 "$dlog" >&2 || true
  return 1
}

# Each systemd machine holds about 7 inotify instances of the host's root user: Debian's default
# limit of 128 lets about 20 machines boot, the next ones exit at once (measured: 22 of 45 at
# 128, 45 of 45 at 1024). Raised for this boot only; a local engine needs it, a remote one not.
ensure_inotify() {
  local limit="$SYSCTL_DIR/fs/inotify/max_user_instances" current
  [ -z "${DOCKER_HOST:-}" ] && [ -r "$limit" ] || return 0
  current=$(cat "$limit")
  [ "$current" -lt "$INOTIFY_INSTANCES" ] || return 0
  log "raising fs.inotify.max_user_instances from $current to $INOTIFY_INSTANCES (systemd machines)"
  # shellcheck disable=SC2016  # $1 and $2 are the inner sh's
  as_root sh -c 'echo "$1" > "$2"' sh "$INOTIFY_INSTANCES" "$limit" ||
    log "could not raise it: more than about 20 machines at once will fail to boot"
}

# build_base_image IMAGE IMPORT...: build IMAGE from a debootstrap tree, imported by the command
# IMPORT... (it reads the tree's tar on stdin; IMAGE is appended). A subshell, so that its EXIT
# trap (which bash also runs when INT, TERM or HUP end it) removes the tree whatever happens.
build_base_image() (
  image=$1; shift
  log "building $image offline with debootstrap (about a minute)"
  scratch=$(mktemp -d "$SCRATCH_DIR/pytest-orbstack-build.XXXXXX")
  trap 'as_root rm -rf "$scratch"' EXIT
  failed_log="$LOG_DIR/pytest-orbstack-debootstrap.log"
  # the one package list of base images (backends/debian_build.py reads it for other suites)
  packages=$(tr -d ' \n' < "$ROOT/pytest_orbstack/backends/debian-base-packages")
  if ! as_root debootstrap --variant=minbase --include="$packages" \
      bookworm "$scratch/rootfs" >"$scratch/debootstrap.log" 2>&1; then
    tail -20 "$scratch/debootstrap.log" >&2
    as_root cp "$scratch/debootstrap.log" "$failed_log" 2>/dev/null &&
      log "debootstrap failed; its whole log: $failed_log"
    exit 1
  fi
  as_root tar -C "$scratch/rootfs" -c . | "$@" "$image" >/dev/null
  as_root rm -f "$failed_log"   # an earlier failure's log would only mislead now
)

ensure_base_image() {
  # The tests' orbctl emulator boots this image directly: it must have systemd (a registry's
  # debian:bookworm has not, so none is pulled).
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 &&
     docker run --rm --entrypoint /bin/sh "$BASE_IMAGE" -c 'test -x /lib/systemd/systemd' >/dev/null 2>&1; then
    return 0
  fi
  build_base_image "$BASE_IMAGE" docker import --change 'CMD ["/sbin/init"]' -
}

ensure_venv() {
  local stamp="$VENV/.pytest-orbstack-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then return 0; fi
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q -e "${ROOT}[test]"
  touch "$stamp"
}

base_image() {
  ensure_packages engine
  ensure_dockerd
  ensure_base_image
}

setup() {
  ensure_packages engine venv
  ensure_dockerd
  ensure_inotify
  ensure_base_image
  ensure_venv
}

# shellcheck source=scripts/dev-incus.sh
. "$ROOT/scripts/dev-incus.sh"
# shellcheck source=scripts/dev-podman.sh
. "$ROOT/scripts/dev-podman.sh"

cmd=${1:-test}; shift || true
case "$cmd" in
  setup) setup ;;
  base-image) base_image ;;
  incus) ensure_packages venv; ensure_venv; incus_setup ;;
  podman) podman_setup ;;
  example)
    setup
    cd "$ROOT/examples"
    exec "$VENV/bin/pytest" -p no:cacheprovider "$@"
    ;;
  test)
    setup
    # the Incus engine's tests need Incus (PYTEST_ORBSTACK_INCUS=off: not set up, they skip)
    if [ "${PYTEST_ORBSTACK_INCUS:-on}" != off ]; then
      incus_setup || log "incus: set-up failed (above): the Incus tests will be skipped"
    fi
    # the Podman engine's tests need Podman (PYTEST_ORBSTACK_PODMAN=off: not set up, they skip)
    if [ "${PYTEST_ORBSTACK_PODMAN:-on}" != off ]; then
      podman_setup || log "podman: set-up failed (above): the Podman tests will be skipped"
    fi
    cd "$ROOT"
    # The suite starts over a thousand Python processes (inner pytest sessions, xdist workers,
    # the orbctl emulator's calls). With PYTHONDONTWRITEBYTECODE set (some images set it), each
    # compiled this package from source and pytest rewrote its asserts anew: 0.5 s of CPU per
    # process, a fifth of the suite's time on 2 cores. Cached bytecode goes to __pycache__.
    unset PYTHONDONTWRITEBYTECODE
    # two xdist workers (the CI machine's cores; PYTEST_ORBSTACK_WORKERS=0 runs in one process)
    exec "$VENV/bin/pytest" -n "${PYTEST_ORBSTACK_WORKERS:-2}" "$@"
    ;;
  *) echo "usage: $0 example|test|setup|base-image|incus|podman [pytest args...]" >&2; exit 2 ;;
esac
