#!/usr/bin/env bash
# Run the whole test suite: set the machine up (scripts/setup.sh), then every
# vitest test, unit and native. Extra arguments go to `vitest run`, e.g.
#   bash scripts/test.sh native-tests/cli.test.ts -t 'bad input'
# Exits with vitest's exit code. On the way out, mounts that tests left behind
# under their temp dirs (${TMPDIR:-/tmp}/ovlfs-test-* and the other prefixes
# below) are unmounted, loudly; nothing else is touched.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Prefixes of the temp dirs that tests make in os.tmpdir() (TMPDIR or /tmp):
# native-tests/harness/cli.ts (ovlfs-test-), harness/mounts.ts (ovlfs-diff-),
# src/fuse/binding.test.ts (ovlfs-binding-), src/native/sys.test.ts (ovlfs-sys-).
TEST_TMP="${TMPDIR:-/tmp}"
TEST_TMP="${TEST_TMP%/}"
PREFIXES=(ovlfs-test- ovlfs-diff- ovlfs-binding- ovlfs-sys-)

# Mountpoints under those temp dirs, deepest first; mountinfo escapes blanks as \040 etc.
leftover_mounts() {
  local p prefix
  awk '{ print $5 }' /proc/self/mountinfo | while IFS= read -r p; do
    p="$(printf '%b' "$p")"
    for prefix in "${PREFIXES[@]}"; do
      case "$p" in "$TEST_TMP/$prefix"*) printf '%s\n' "$p"; break ;; esac
    done
  done | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

cleanup_mounts() {
  local mounts mnt
  mounts="$(leftover_mounts)"
  [ -n "$mounts" ] || return 0
  {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! test.sh: tests left these mounts behind; unmounting them now:"
    while IFS= read -r mnt; do echo "!!!   $mnt"; done <<<"$mounts"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
  while IFS= read -r mnt; do
    fusermount -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" ||
      echo "!!! test.sh: could not unmount $mnt" >&2
  done <<<"$mounts"
}
trap cleanup_mounts EXIT

bash scripts/setup.sh

rc=0
# The tests themselves are strict TypeScript too (vitest only strips the types).
npx tsc -p native-tests/tsconfig.json || rc=$?
npx vitest run "$@" || rc=$?
exit "$rc"
