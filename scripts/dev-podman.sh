# shellcheck shell=bash
# The Podman set-up of scripts/dev.sh (`bash scripts/dev.sh podman`), sourced by it: it uses
# dev.sh's log, as_root, apt_install and build_base_image. Each step checks first and
# does nothing when its part is already there. docs/podman.md says what was verified.
#
#   - Debian's podman (4.3 on bookworm; it brings netavark and aardvark-dns, which give the
#     machines' network its DNS) and debootstrap, when missing
#   - the base image debian:bookworm (localhost/debian:bookworm) imported from the same
#     debootstrap tree as the Docker one (no registry, no Docker needed), under a file lock
#
# Environment (optional): PYTEST_ORBSTACK_PODMAN_IMAGE  tag of the base image (default debian:bookworm)

PODMAN_IMAGE=${PYTEST_ORBSTACK_PODMAN_IMAGE:-debian:bookworm}
PODMAN_LOCK=/run/lock/pytest-orbstack-podman-image.lock

ensure_podman_packages() {
  if command -v podman >/dev/null 2>&1; then log "podman: $(podman --version) already installed"; return 0; fi
  log "podman: installing podman from Debian"
  apt_install podman
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
}

# Low --ulimit values: rootful Podman's defaults fail where root lacks CAP_SYS_RESOURCE (docs/podman.md).
podman_image_ok() {
  as_root podman image exists "$PODMAN_IMAGE" &&
    as_root podman --log-level=error run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
      --entrypoint /bin/sh "$PODMAN_IMAGE" -c 'test -x /lib/systemd/systemd' >/dev/null 2>&1
}

ensure_podman_image() (
  if podman_image_ok; then log "podman: image $PODMAN_IMAGE already there"; exit 0; fi
  exec 9>"$PODMAN_LOCK"
  flock -w 600 9 || { log "podman: another set-up holds $PODMAN_LOCK"; exit 1; }
  podman_image_ok ||
    build_base_image "$PODMAN_IMAGE" as_root podman import -q --change 'CMD ["/sbin/init"]' -
)

podman_setup() {
  ensure_podman_packages
  ensure_podman_image
}
