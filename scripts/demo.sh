#!/usr/bin/env bash
# The main job on a built-in default: set the machine up, build a small
# three-layer stack (two lowers with a whiteout and an opaque directory, an
# empty upper), mount it read-write with ovlfs, show a copy-up and a
# whiteout happening in the upper layer, compare with the kernel's overlayfs
# over a copy of the same layers, and unmount. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh >/dev/null 2>&1 || bash scripts/setup.sh

D="$(mktemp -d "${TMPDIR:-/tmp}/ovlfs-demo-XXXXXX")"
cleanup() {
  for m in "$D/mnt" "$D/kmnt"; do
    if mountpoint -q "$m" 2>/dev/null; then fusermount -u "$m" 2>/dev/null || umount "$m" || umount -l "$m"; fi
  done
  rm -rf "$D"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# Layers: base (bottom), app (middle, deletes and hides things), then an empty upper.
mkdir -p "$D"/base/{etc,usr/share/doc,var/cache/apt} "$D"/app/{etc,usr/share/doc,var/cache/apt} "$D"/upper "$D"/work "$D"/mnt
echo "NAME=demo-base" >"$D/base/etc/os-release"
echo "root:x:0:0:root:/root:/bin/sh" >"$D/base/etc/passwd"
echo "old docs" >"$D/base/usr/share/doc/README"
echo "stale" >"$D/base/var/cache/apt/pkgcache.bin"
echo "server { listen 80; }" >"$D/app/etc/nginx.conf"
echo "NAME=demo-app" >"$D/app/etc/os-release"
mknod "$D/app/usr/share/doc/README" c 0 0                     # whiteout: the app layer deleted it
setfattr -n trusted.overlay.opaque -v y "$D/app/var/cache/apt" # opaque: the app layer replaced the dir
echo "fresh" >"$D/app/var/cache/apt/index"

say "the layers (top lower first): $D/app : $D/base, upper $D/upper"
show ovlfs -o "lowerdir=$D/app:$D/base,upperdir=$D/upper,workdir=$D/work" "$D/mnt"
show grep " $D/mnt " /proc/self/mountinfo

say "merged view: app's files win, the whiteout hides README, the opaque dir hides the stale cache"
show find "$D/mnt" -mindepth 1 -printf '%y %M %P\n'
show cat "$D/mnt/etc/os-release"

say "copy-up: appending to a lower file copies it (and its parent) into the upper layer first"
show stat -c 'before: ino=%i size=%s %n' "$D/mnt/etc/passwd"
show sh -c "echo 'demo:x:1000:1000::/home/demo:/bin/sh' >> '$D/mnt/etc/passwd'"
show stat -c 'after:  ino=%i size=%s %n' "$D/mnt/etc/passwd"
show find "$D/upper" -printf '%y %M %P\n'
show cat "$D/base/etc/passwd"

say "whiteout: deleting a lower file leaves a character device 0/0 in the upper layer"
show rm "$D/mnt/etc/nginx.conf"
show ls -l "$D/upper/etc"
show ls "$D/mnt/etc"

say "opaque dir: a directory made where a lower one was deleted hides the old contents"
show rm -r "$D/mnt/var/cache/apt"
show mkdir "$D/mnt/var/cache/apt"
show getfattr -n trusted.overlay.opaque "$D/upper/var/cache/apt"
show ls -A "$D/mnt/var/cache/apt"

say "the kernel's overlayfs over the same layers and this upper shows the same tree"
mkdir -p "$D/kmnt" "$D/kwork"
fusermount -u "$D/mnt"
mount -t overlay overlay -o "lowerdir=$D/app:$D/base,upperdir=$D/upper,workdir=$D/kwork,redirect_dir=off,index=off,metacopy=off" "$D/kmnt"
ovlfs -o "lowerdir=$D/app:$D/base,upperdir=$D/upper,workdir=$D/work" "$D/mnt" -o ro
(cd "$D/mnt" && find . -printf '%y %M %s %P\n' | sort) >"$D/ovlfs.txt"
(cd "$D/kmnt" && find . -printf '%y %M %s %P\n' | sort) >"$D/kernel.txt"
show diff "$D/kernel.txt" "$D/ovlfs.txt" && echo "identical: $(wc -l <"$D/ovlfs.txt") entries"
umount "$D/kmnt"

say "unmount"
show fusermount -u "$D/mnt"
echo "done."
