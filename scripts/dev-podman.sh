# shellcheck shell=bash
# The Podman set-up of scripts/dev.sh (`bash scripts/dev.sh podman`), sourced by it: it uses
# dev.sh's log, as_root, apt_install and build_base_image. Each step checks first and
# does nothing when its part is already there. docs/podman.md says what was verified.
#
#   - Debian's podman (4.3 on bookworm; it brings netavark and aardvark-dns, which give the
#     machines' network its DNS) and debootstrap, when missing
#   - the base image debian:bookworm (localhost/debian:bookworm) imported from the same
#     debootstrap tree as the Docker one (no registry), under a file lock: the one layer of
#     Docker's base image when dockerd has it (one debootstrap fewer), else a debootstrap of its own
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

# Docker's base image is `docker import` of the debootstrap tree: one layer, that tree. Import
# that layer when dockerd has the image (a subshell: its EXIT trap removes the saved image).
podman_image_from_docker() (
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || exit 1
  scratch=$(mktemp -d "$SCRATCH_DIR/pytest-orbstack-podman.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  docker save "$BASE_IMAGE" | tar -C "$scratch" -x || exit 1
  # manifest.json: [{..., "Layers":["<id>/layer.tar"]}]; more than one layer is not that tree
  layer=$(sed -n 's/.*"Layers":\["\([^"]*\)"\].*/\1/p' "$scratch/manifest.json")
  if [ -z "$layer" ] || [ ! -f "$scratch/$layer" ]; then log "podman: Docker's $BASE_IMAGE is not one layer"; exit 1; fi
  log "podman: importing $PODMAN_IMAGE from Docker's $BASE_IMAGE (the same debootstrap tree)"
  as_root podman import -q --change 'CMD ["/sbin/init"]' "$scratch/$layer" "$PODMAN_IMAGE" >/dev/null &&
    podman_image_ok
)

ensure_podman_image() (
  if podman_image_ok; then log "podman: image $PODMAN_IMAGE already there"; exit 0; fi
  exec 9>"$PODMAN_LOCK"
  flock -w 600 9 || { log "podman: another set-up holds $PODMAN_LOCK"; exit 1; }
  podman_image_ok || podman_image_from_docker ||
    build_base_image "$PODMAN_IMAGE" as_root podman import -q --change 'CMD ["/sbin/init"]' -
)

podman_setup() {
  ensure_podman_packages
  ensure_podman_image
}
