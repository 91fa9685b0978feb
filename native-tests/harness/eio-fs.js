'use strict'
// node native-tests/harness/eio-fs.js MNT [gate]
// A layer that fails with EIO (for faults.test.ts, "EIO from a layer"): a small
// read-only file system served through ovlfs's FUSE binding (dist/fuse), mounted
// at MNT and used as a lower layer. `/good` (a file), `/gooddir/f`, and names
// whose every request of one kind fails with EIO:
//   /eio-stat  its getattr (so a lookup of it);
//   /eio-read  a file of 10 bytes whose reads fail;
//   /eio-dir   a directory whose listing fails.
// With `gate`, a layer whose reads wait instead (for concurrency.test.ts: a
// copy-up that stays under way until the test lets it go): /a/x/f (2 bytes) and
// /a/y/g (64 KiB), whose reads are answered only once this process gets SIGUSR2.
// Prints "ready" once mounted; unmounts on SIGTERM/SIGINT.
const path = require('node:path')
const { FuseMount } = require(path.join(__dirname, '..', '..', 'dist', 'fuse', 'binding.js'))

const mnt = process.argv[2]
if (mnt === undefined) {
  process.stderr.write('usage: node native-tests/harness/eio-fs.js MNT\n')
  process.exit(1)
}
const EIO = -5
const ENOENT = -2
const now = new Date()
let ino = 2
const st = (mode, size) => ({ mode, uid: 0, gid: 0, size, dev: 1, nlink: 1, ino: ino++, rdev: 0, blksize: 4096, blocks: Math.ceil(size / 512), atime: now, mtime: now, ctime: now })
const gate = process.argv[3] === 'gate'
const DATA = gate
  ? { '/a/x/f': Buffer.from('f\n'), '/a/y/g': Buffer.alloc(64 * 1024, 0x47) }
  : { '/good': Buffer.from('good\n'), '/gooddir/f': Buffer.from('f\n'), '/eio-read': Buffer.alloc(10, 0x41) }
const NODES = gate
  ? { '/': st(0o40755, 0), '/a': st(0o40755, 0), '/a/x': st(0o40755, 0), '/a/y': st(0o40755, 0) }
  : { '/': st(0o40755, 0), '/gooddir': st(0o40755, 0), '/eio-dir': st(0o40755, 0), '/eio-read': st(0o100644, 10) }
for (const [p, d] of Object.entries(DATA)) if (NODES[p] === undefined) NODES[p] = st(0o100644, d.length)
const LISTS = gate
  ? { '/': ['a'], '/a': ['x', 'y'], '/a/x': ['f'], '/a/y': ['g'] }
  : { '/': ['good', 'gooddir', 'eio-stat', 'eio-read', 'eio-dir'], '/gooddir': ['f'] }
// Reads of /a/y/g wait here until SIGUSR2 opens the gate (then they and later ones are answered).
let held = gate ? [] : null
process.on('SIGUSR2', () => {
  const waiting = held ?? []
  held = null
  for (const answer of waiting) answer()
})
const ops = {
  getattr: (p, cb) => {
    if (p === '/eio-stat') return cb(EIO)
    const n = NODES[p]
    return n === undefined ? cb(ENOENT) : cb(0, n)
  },
  readdir: (p, cb) => {
    if (p === '/eio-dir') return cb(EIO)
    const l = LISTS[p]
    return l === undefined ? cb(ENOENT) : cb(0, l)
  },
  open: (p, _flags, cb) => (NODES[p] === undefined ? cb(ENOENT) : cb(0, 1)),
  read: (p, _fh, buf, len, pos, cb) => {
    if (p === '/eio-read') return cb(EIO)
    const d = DATA[p]
    if (d === undefined) return cb(EIO)
    const answer = () => {
      const n = Math.max(0, Math.min(len, d.length - pos))
      d.copy(buf, 0, pos, pos + n)
      cb(n)
    }
    if (p === '/a/y/g' && held !== null) held.push(answer)
    else answer()
  },
}
const fuse = new FuseMount(mnt, ops, { fsname: gate ? 'gatefs' : 'eiofs', subtype: gate ? 'gatefs' : 'eiofs', extraOptions: ['ro', 'attr_timeout=0', 'entry_timeout=0'], nullpathOk: true, timeout: false })
fuse.mount().then(() => {
  process.stdout.write('ready\n')
  const stop = () => { fuse.unmount().then(() => process.exit(0), () => process.exit(1)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}, (err) => {
  process.stderr.write(`eio-fs: mount failed: ${err && err.message}\n`)
  process.exit(1)
})
