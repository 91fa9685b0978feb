#!/usr/bin/env bash
# Set up this machine to build, run and test ovlfs.
#
# Works on a fresh Debian 12 machine with Node 20 and npm 11, as root, reaching
# only the npm registry and Debian's archive. Safe to run again: every step is
# skipped or cheap when already done.
#
#   bash scripts/setup.sh              everything (system packages, npm ci, build, ovlfs on PATH, checks)
#   bash scripts/setup.sh --build-only the same without the checks that need a live FUSE device
#                                      (used by Dockerfile.test: `docker build` has no /dev/fuse)
#   bash scripts/setup.sh --system-only only the Debian packages (a cached layer in Dockerfile.test)
#   OVLFS_SETUP_FORCE_NPM=1            run `npm ci` even when node_modules looks up to date
#
# How `mount -t fuse.ovlfs ovlfs MNT -o lowerdir=...` reaches ovlfs:
#   1. mount(8) (util-linux) has no built-in handler for type "fuse.ovlfs"; it looks for
#      /sbin/mount.fuse.ovlfs, then for /sbin/mount.fuse (the part of the type before the dot).
#   2. /sbin/mount.fuse (a link to mount.fuse3, from Debian's fuse3) splits "fuse.ovlfs" into
#      the helper name "ovlfs" and runs, through /bin/sh, `ovlfs SOURCE MNT -o OPTS` (adding
#      options such as `dev`/`suid` of its own) with a sanitized
#      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.
#   3. That finds /usr/local/bin/ovlfs (or /usr/sbin/ovlfs), which this script links to the
#      repository's dist/cli/main.js; its `#!/usr/bin/env -S node ...` shebang finds /usr/bin/node.
#   4. ovlfs returns once the mount is live, so mount(8) returns then too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd -P)"

BUILD_ONLY=0
SYSTEM_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --build-only) BUILD_ONLY=1 ;;
    --system-only) SYSTEM_ONLY=1 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- who and where we are ------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "must run as root (FUSE and overlay mounts, apt-get); current uid is $(id -u)"
command -v node >/dev/null || die "node is not installed (Node.js 20 is required)"
command -v npm >/dev/null || die "npm is not installed"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || die "Node.js >= 20 is required, found $(node --version)"

# --- system packages -----------------------------------------------------------
# libfuse2: the libfuse that fuse-native loads; fuse3: fusermount and mount.fuse;
# attr/acl: getfattr/setfattr/getfacl for tests; fuse-overlayfs: reference implementation;
# busybox-static: a static binary for layer fixtures; util-linux (mount, setpriv),
# procps, psmisc: process and mount handling in tests; g++/make/python3: node-gyp
# builds the native addon at `npm ci`; perl-base: the tests' process reaper; docker.io
# (with containerd, runc): native-tests/docker-real.test.ts runs a private dockerd of its own;
# stress-ng: filesystem stressors run by scripts/stress.js (native-tests/stress.test.ts);
# dpkg (dpkg, dpkg-deb; essential on Debian, listed so its absence is noticed), strace and
# npm (checked above): real tools run inside mounts by native-tests/tools-scenario.test.ts.
PACKAGES=(libfuse2 fuse3 attr acl fuse-overlayfs busybox-static util-linux procps psmisc
  g++ make python3 perl-base ca-certificates docker.io strace stress-ng dpkg)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # only what is missing, and no upgrades of what is there
  apt-get install -y --no-install-recommends --no-upgrade "${missing[@]}"
else
  log "system packages already installed"
fi
if [ "$SYSTEM_ONLY" = 1 ]; then
  log "done (system packages only)"
  exit 0
fi

# --- npm dependencies (install hooks build the native addon and patch fuse-native) ---
[ -f package-lock.json ] || die "package-lock.json is missing: npm ci needs it"

# Everything that decides what `npm ci` produces; when none of it changed since the
# last successful run, node_modules is kept (npm ci would rebuild it from scratch).
npm_inputs_hash() {
  local f dirs=()
  for f in patches src/native; do
    if [ -d "$f" ]; then dirs+=("$f"); fi
  done
  {
    node --version
    cat package.json package-lock.json
    for f in binding.gyp scripts/patch-fuse-native.js; do
      if [ -f "$f" ]; then cat "$f"; fi
    done
    if [ "${#dirs[@]}" -gt 0 ]; then
      find "${dirs[@]}" -type f \( -name '*.patch' -o -name '*.c' -o -name '*.h' -o -name '*.cc' \) |
        LC_ALL=C sort | while IFS= read -r f; do printf '%s\n' "$f"; cat "$f"; done
    fi
  } | sha256sum | cut -d' ' -f1
}
STAMP=node_modules/.ovlfs-setup-stamp
want="$(npm_inputs_hash)"
if [ "${OVLFS_SETUP_FORCE_NPM:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "node_modules is up to date (delete $STAMP or set OVLFS_SETUP_FORCE_NPM=1 to reinstall)"
else
  log "npm ci"
  ci_log="$(mktemp)"
  if ! npm ci --no-audit --no-fund 2>&1 | tee "$ci_log"; then
    # The npm registry reachable here answers 404 for other platforms' optional
    # packages (e.g. @rollup/rollup-darwin-arm64), so a lock file written here lacks
    # them and `npm ci` calls it out of sync. `npm install --no-save` installs the
    # very versions the lock file pins, without rewriting it.
    if grep -q 'package-lock.json or npm-shrinkwrap.json are in sync' "$ci_log"; then
      log "WARNING: npm ci rejected package-lock.json as out of sync (other platforms' optional"
      log "WARNING: packages missing from it); installing the locked versions with npm install --no-save"
      npm install --no-save --no-audit --no-fund
    else
      rm -f "$ci_log"
      die "npm ci failed (output above)"
    fi
  fi
  rm -f "$ci_log"
  printf '%s\n' "$want" >"$STAMP"
fi

# --- build ---------------------------------------------------------------------
log "npm run build"
npm run build
CLI="$REPO/dist/cli/main.js"
[ -f "$CLI" ] || die "the build did not produce $CLI"
[ -x "$CLI" ] || chmod +x "$CLI"
head -n1 "$CLI" | grep -q '^#!.*node' || die "$CLI has no node shebang (#!/usr/bin/env node)"

# --- ovlfs on PATH ----------------------------------------------------------------
# /usr/local/bin for people; /usr/sbin as well since mount helpers may run with a
# sanitized PATH (see the top of this file).
for link in /usr/local/bin/ovlfs /usr/sbin/ovlfs; do
  if [ "$(readlink "$link" 2>/dev/null || true)" != "$CLI" ]; then
    ln -sfn "$CLI" "$link"
    log "linked $link -> $CLI"
  fi
done
found="$(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c 'command -v ovlfs' || true)"
[ -n "$found" ] || die "ovlfs is not found on the PATH that mount helpers use"

# --- mount(8) -> mount.fuse -> ovlfs -------------------------------------------
MOUNT_FUSE=""
for helper in /sbin/mount.fuse /usr/sbin/mount.fuse /sbin/mount.fuse3 /usr/sbin/mount.fuse3; do
  if [ -x "$helper" ]; then MOUNT_FUSE="$helper"; break; fi
done
[ -n "$MOUNT_FUSE" ] || die "no mount.fuse helper found (package fuse3 provides /sbin/mount.fuse)"
[ -x /sbin/mount.fuse ] || die "/sbin/mount.fuse is missing: mount -t fuse.ovlfs would not find it (only $MOUNT_FUSE exists)"
command -v fusermount >/dev/null || command -v fusermount3 >/dev/null || die "fusermount is missing (package fuse3)"

# --- the kernel and the device ------------------------------------------------------
if [ "$BUILD_ONLY" = 1 ]; then
  log "done (build only: /dev/fuse and kernel checks skipped)"
  exit 0
fi
[ -c /dev/fuse ] || die "/dev/fuse is missing: load the fuse module, or run the container with --device /dev/fuse --cap-add SYS_ADMIN"
grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || die "the kernel has no FUSE support (fuse not in /proc/filesystems)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  die "the kernel has no overlayfs (needed by the differential tests): overlay not in /proc/filesystems"

log "done: ovlfs -> $CLI"
