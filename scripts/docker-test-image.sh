#!/usr/bin/env bash
# Make the base image that Dockerfile.test builds FROM (default name debian-local:12).
#
# No image registry is reachable here, so the base cannot be pulled. Instead:
#   1. debootstrap a minimal Debian 12 (bookworm) root file system from Debian's
#      archive (the same archive this machine's apt uses);
#   2. add what a machine of this kind has beyond plain Debian 12: Node.js 20 with
#      its headers and npm 11 (Debian 12 ships Node 18 only), copied from this
#      machine, plus its npm settings that matter for builds (nodedir, cafile) and
#      its extra CA certificates (npm's registry may be reached through them);
#   3. import the tree as an image:  tar -C ROOTFS -c . | docker import - debian-local:12
#
# Usage (as root, with a running Docker engine):
#   bash scripts/docker-test-image.sh [IMAGE]      # FORCE=1 rebuilds an existing image
# then:
#   docker build --network host -f Dockerfile.test -t ovlfs-test .
#   docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined ovlfs-test
set -euo pipefail

IMAGE="${1:-debian-local:12}"
SUITE=bookworm

log() { printf '[docker-test-image] %s\n' "$*" >&2; }
die() { printf '[docker-test-image] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v docker >/dev/null || die "docker is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${FORCE:-0}" != 1 ]; then
  log "$IMAGE already exists (FORCE=1 to rebuild)"
  exit 0
fi

command -v node >/dev/null || die "this machine has no node to copy into the image"
[ -d /usr/lib/node_modules/npm ] || die "npm is expected in /usr/lib/node_modules/npm"
[ -d /usr/include/node ] || die "Node's headers are expected in /usr/include/node (node-gyp builds against them)"

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/ovlfs-rootfs.XXXXXX")"
trap 'rm -rf --one-file-system "$ROOTFS"' EXIT

# The archive this machine's apt uses (debootstrap's own default otherwise).
MIRROR=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  MIRROR="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
elif [ -f /etc/apt/sources.list ]; then
  MIRROR="$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list)"
fi

log "debootstrap $SUITE into $ROOTFS ${MIRROR:+(archive: $MIRROR)}"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" ${MIRROR:+"$MIRROR"}

# apt: the same sources as this machine (main archive, updates, security)
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  cp /etc/apt/sources.list.d/debian.sources "$ROOTFS/etc/apt/sources.list.d/debian.sources"
  rm -f "$ROOTFS/etc/apt/sources.list"
fi

# Node.js 20 and npm 11, as on this machine
log "copying Node.js $(node --version) and npm $(npm --version 2>/dev/null) from this machine"
install -m 0755 "$(readlink -f "$(command -v node)")" "$ROOTFS/usr/bin/node"
mkdir -p "$ROOTFS/usr/include" "$ROOTFS/usr/lib/node_modules"
cp -a /usr/include/node "$ROOTFS/usr/include/"
cp -a /usr/lib/node_modules/npm "$ROOTFS/usr/lib/node_modules/"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/bin/npx"

# npm: build native addons against the local headers (no header download), trust the CA bundle
mkdir -p "$ROOTFS/usr/etc"
cat >"$ROOTFS/usr/etc/npmrc" <<'NPMRC'
nodedir=/usr
cafile=/etc/ssl/certs/ca-certificates.crt
fund=false
audit=false
update-notifier=false
NPMRC

# extra CA certificates of this machine; the ca-certificates package (installed by
# scripts/setup.sh) merges them into /etc/ssl/certs/ca-certificates.crt
mkdir -p "$ROOTFS/usr/local/share/ca-certificates" "$ROOTFS/etc/ssl/certs"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
fi
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"

# smaller image
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

log "importing $ROOTFS as $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE"
log "done: $(docker image inspect -f '{{.Id}} {{.Size}}' "$IMAGE")"
