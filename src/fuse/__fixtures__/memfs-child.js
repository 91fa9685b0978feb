'use strict'
// Tiny in-memory filesystem served through FuseMount, run as a CHILD process by
// src/fuse/binding.test.ts (a process must never touch its own FUSE mount
// synchronously: it would deadlock).
//
//   node memfs-child.js BINDING_JS MOUNTPOINT LOGFILE
//
// BINDING_JS is src/fuse/binding.ts transpiled to CommonJS by the test. Every
// op appends one JSON line { op, ...args, ctx } to LOGFILE before answering, so
// the event is on disk when the caller's syscall returns. Prints READY once
// mounted; exits 0 after the session ends (our unmount on SIGTERM, or an
// external fusermount -u).

const fs = require('fs')
const [bindingPath, mountpoint, logFile] = process.argv.slice(2)
const { FuseMount, UTIME_NOW, UTIME_OMIT } = require(bindingPath)

const ENOENT = -2
const EEXIST = -17
const ENOTDIR = -20
const EISDIR = -21
const ENOTEMPTY = -39
const ENODATA = -61
const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000

let nextIno = 100
let nextFh = 1
const nodes = new Map() // path -> node
const handles = new Map() // fh -> node (survives unlink)
let mount = null

function nowNs () {
  return BigInt(Date.now()) * 1000000n
}

function makeNode (mode, uid, gid, ino) {
  const t = nowNs()
  return { ino: ino ?? nextIno++, mode, uid, gid, nlink: 1, rdev: 0, data: Buffer.alloc(0), target: '', xattrs: new Map(), atimeNs: t, mtimeNs: t, ctimeNs: t }
}

nodes.set('/', makeNode(S_IFDIR | 0o777, 0, 0, 1))
const big = makeNode(S_IFREG | 0o644, 0, 0, 0x123456789)
big.data = Buffer.from('hello\n')
big.atimeNs = 1000000000123456789n
big.mtimeNs = 1000000001987654321n
big.ctimeNs = 1000000002000000001n
nodes.set('/big', big)

function toStat (n) {
  return {
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: (n.mode & S_IFMT) === S_IFLNK ? Buffer.byteLength(n.target) : n.data.length,
    dev: 0,
    nlink: n.nlink,
    ino: n.ino,
    rdev: n.rdev,
    blksize: 4096,
    blocks: Math.ceil(n.data.length / 512),
    atimeNs: n.atimeNs,
    mtimeNs: n.mtimeNs,
    ctimeNs: n.ctimeNs,
  }
}

function log (op, fields) {
  let ctx = null
  try {
    ctx = mount.context() // synchronously, at the start of the handler
  } catch (err) {
    ctx = { error: String(err) }
  }
  const line = JSON.stringify({ op, ...fields, ctx }, (_k, v) => typeof v === 'bigint' ? v.toString() : v)
  fs.appendFileSync(logFile, line + '\n')
}

function parentOf (p) {
  const i = p.lastIndexOf('/')
  return i <= 0 ? '/' : p.slice(0, i)
}

function children (dir) {
  const prefix = dir === '/' ? '/' : dir + '/'
  const out = []
  for (const p of nodes.keys()) {
    if (p !== '/' && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) out.push(p.slice(prefix.length))
  }
  return out
}

function addNode (p, mode, ctx) {
  if (nodes.has(p)) return EEXIST
  const parent = nodes.get(parentOf(p))
  if (!parent) return ENOENT
  if ((parent.mode & S_IFMT) !== S_IFDIR) return ENOTDIR
  const n = makeNode(mode, ctx.uid, ctx.gid)
  nodes.set(p, n)
  return n
}

function applyTime (ts, current) {
  if (ts.nsec === UTIME_OMIT) return current
  if (ts.nsec === UTIME_NOW) return nowNs()
  return BigInt(ts.sec) * 1000000000n + BigInt(ts.nsec)
}

const ops = {
  getattr (path, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    cb(0, toStat(n))
  },
  fgetattr (path, fh, cb) {
    log('fgetattr', { path, fh })
    const n = handles.get(fh) || nodes.get(path)
    if (!n) return cb(ENOENT)
    cb(0, toStat(n))
  },
  readdir (path, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    const names = ['.', '..']
    const stats = [toStat(n), toStat(nodes.get(parentOf(path)))]
    for (const name of children(path)) {
      names.push(name)
      stats.push(toStat(nodes.get((path === '/' ? '' : path) + '/' + name)))
    }
    cb(0, names, stats)
  },
  open (path, flags, cb) {
    log('open', { path, flags })
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    if (path.endsWith('.refused')) return cb(-13) // EACCES: an open that fails after the name was found
    const fh = nextFh++
    handles.set(fh, n)
    cb(0, fh)
  },
  create (path, mode, flags, cb) {
    const ctx = mount.context()
    log('create', { path, mode, flags })
    const n = addNode(path, mode, ctx)
    if (typeof n === 'number') return cb(n)
    const fh = nextFh++
    handles.set(fh, n)
    cb(0, fh)
  },
  read (path, fh, buf, len, pos, cb) {
    const n = handles.get(fh)
    if (!n) return cb(-9)
    if ((n.mode & S_IFMT) === S_IFDIR) return cb(EISDIR)
    const chunk = n.data.subarray(pos, pos + len)
    chunk.copy(buf)
    cb(chunk.length)
  },
  write (path, fh, buf, len, pos, cb) {
    const n = handles.get(fh)
    if (!n) return cb(-9)
    const end = pos + len
    if (end > n.data.length) {
      const grown = Buffer.alloc(end)
      n.data.copy(grown)
      n.data = grown
    }
    buf.copy(n.data, pos, 0, len)
    n.mtimeNs = n.ctimeNs = nowNs()
    cb(len)
  },
  flush (path, fh, cb) {
    cb(0)
  },
  release (path, fh, cb) {
    log('release', { path, fh })
    handles.delete(fh)
    cb(0)
  },
  truncate (path, size, cb) {
    log('truncate', { path, size })
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    const d = Buffer.alloc(size)
    n.data.copy(d, 0, 0, Math.min(size, n.data.length))
    n.data = d
    cb(0)
  },
  ftruncate (path, fh, size, cb) {
    log('ftruncate', { path, fh, size })
    const n = handles.get(fh)
    if (!n) return cb(-9)
    const d = Buffer.alloc(size)
    n.data.copy(d, 0, 0, Math.min(size, n.data.length))
    n.data = d
    cb(0)
  },
  utimens (path, atime, mtime, cb) {
    log('utimens', { path, atime, mtime })
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    n.atimeNs = applyTime(atime, n.atimeNs)
    n.mtimeNs = applyTime(mtime, n.mtimeNs)
    n.ctimeNs = nowNs()
    cb(0)
  },
  chmod (path, mode, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777)
    cb(0)
  },
  chown (path, uid, gid, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    if (uid !== 0xffffffff) n.uid = uid
    if (gid !== 0xffffffff) n.gid = gid
    cb(0)
  },
  mkdir (path, mode, cb) {
    const ctx = mount.context()
    log('mkdir', { path, mode })
    const n = addNode(path, S_IFDIR | (mode & 0o7777), ctx)
    cb(typeof n === 'number' ? n : 0)
  },
  rmdir (path, cb) {
    if (!nodes.has(path)) return cb(ENOENT)
    if (children(path).length) return cb(ENOTEMPTY)
    nodes.delete(path)
    cb(0)
  },
  unlink (path, cb) {
    log('unlink', { path })
    if (!nodes.has(path)) return cb(ENOENT)
    nodes.delete(path)
    cb(0)
  },
  rename (src, dest, cb) {
    log('rename', { src, dest })
    const n = nodes.get(src)
    if (!n) return cb(ENOENT)
    nodes.delete(src)
    nodes.set(dest, n)
    cb(0)
  },
  symlink (target, path, cb) {
    log('symlink', { target, path })
    const n = addNode(path, S_IFLNK | 0o777, mount.context())
    if (typeof n === 'number') return cb(n)
    n.target = target
    cb(0)
  },
  readlink (path, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    cb(0, n.target)
  },
  setxattr (path, name, value, position, flags, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    n.xattrs.set(name, Buffer.from(value)) // copy: value is detached after cb
    cb(0)
  },
  getxattr (path, name, position, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    cb(0, n.xattrs.get(name) || null)
  },
  listxattr (path, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    cb(0, [...n.xattrs.keys()])
  },
  removexattr (path, name, cb) {
    const n = nodes.get(path)
    if (!n) return cb(ENOENT)
    if (!n.xattrs.delete(name)) return cb(ENODATA)
    cb(0)
  },
  statfs (path, cb) {
    cb(0, { bsize: 4096, frsize: 4096, blocks: 2 ** 40, bfree: 2 ** 39, bavail: 2 ** 39, files: 2 ** 33, ffree: 2 ** 32 + 5, favail: 2 ** 32 + 5, fsid: 0, flag: 0, namemax: 255 })
  },
}

// MEMFS_OPTIONS (JSON) may override extraOptions / nullpathOk for experiments.
const overrides = process.env.MEMFS_OPTIONS ? JSON.parse(process.env.MEMFS_OPTIONS) : {}

mount = new FuseMount(mountpoint, ops, {
  fsname: 'memfs,test',
  subtype: 'memfs',
  extraOptions: ['use_ino', 'allow_other', 'default_permissions', 'hard_remove', 'attr_timeout=0', 'entry_timeout=0', 'negative_timeout=0'],
  nullpathOk: true,
  ...overrides,
  onHandlerError: (op, err) => process.stderr.write(`handler error in ${op}: ${err && err.stack}\n`),
})

mount.unmounted.then(() => {
  fs.appendFileSync(logFile, JSON.stringify({ op: 'unmounted' }) + '\n')
})

process.on('SIGTERM', () => {
  mount.unmount().then(() => process.exit(0), (err) => {
    process.stderr.write(`unmount failed: ${err && err.stack}\n`)
    process.exit(1)
  })
})

mount.mount().then(() => {
  process.stdout.write(`READY ${mount.optionString}\n`)
}, (err) => {
  process.stderr.write(`mount failed: ${err && err.stack}\n`)
  process.exit(1)
})
