'use strict'
// node scripts/bench/null-fs.js MNT BOTTOM_PREFIX
// The floor of the binding's per-request cost (scripts/bench/split.js): a file
// system served through ovlfs's FUSE binding (the patched fuse-native, with the
// mount options ovlfs uses) that does no work at all. `/` and `/d` are
// directories; `/d/<BOTTOM_PREFIX>*` are empty files, answered at once from
// one precomputed stat; everything else is ENOENT. Prints "ready" on stdout
// once mounted; unmounts and exits on SIGTERM/SIGINT or an external unmount.
const path = require('node:path')
const { FuseMount } = require(path.join(__dirname, '..', '..', 'dist', 'fuse', 'binding.js'))

const [mnt, prefix] = process.argv.slice(2)
if (mnt === undefined || prefix === undefined) {
  process.stderr.write('usage: node scripts/bench/null-fs.js MNT BOTTOM_PREFIX\n')
  process.exit(1)
}
const now = new Date()
const stat = (mode) => ({ mode, uid: 0, gid: 0, size: 0, dev: 1, nlink: 1, ino: 1, rdev: 0, blksize: 4096, blocks: 0, atime: now, mtime: now, ctime: now })
const DIR = stat(0o40755)
const FILE = stat(0o100644)
const ENOENT = -2
const filePrefix = '/d/' + prefix
const ops = {
  getattr: (p, cb) => {
    if (p === '/' || p === '/d') return cb(0, DIR)
    if (p.startsWith(filePrefix)) return cb(0, FILE)
    return cb(ENOENT)
  },
  readdir: (p, cb) => cb(0, p === '/' ? ['d'] : []),
}
// ovlfs's mount options (src/cli/mount.ts), with the long timeouts it gives lower-layer answers.
const fuse = new FuseMount(mnt, ops, { fsname: 'nullfs', subtype: 'nullfs', extraOptions: ['use_ino', 'big_writes', 'nonempty', 'entry_timeout=86400', 'attr_timeout=86400', 'negative_timeout=1', 'hard_remove', 'default_permissions'], nullpathOk: true, timeout: false })
fuse.mount().then(() => {
  process.stdout.write('ready\n')
  const stop = () => { fuse.unmount().then(() => process.exit(0), () => process.exit(1)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  fuse.unmounted.then(() => process.exit(0), () => process.exit(0))
}, (err) => {
  process.stderr.write(`null-fs: mount failed: ${err && err.message}\n`)
  process.exit(1)
})
