'use strict'
// One worker process of scripts/soak.js: `ops` seeded operations (stat, open,
// read, write, create, unlink, rename, readdir, chmod, truncate) on a bounded
// working set shared with the other workers. Errnos other than the ones a plain
// filesystem gives in these races (ENOENT, EEXIST, ENOTEMPTY) are counted as
// failures. Reports progress to the parent every half second.

const fs = require('node:fs')
const path = require('node:path')
const { Rng } = require('./common')

const cfg = JSON.parse(process.argv[2])
const { k, seed, ops, mnt, dirs, files } = cfg
const rng = new Rng(seed)
const C = fs.constants
const name = () => path.join(mnt, 'soak', `d${rng.int(dirs)}`, `f${rng.int(files)}`)
const dirName = () => path.join(mnt, 'soak', `d${rng.int(dirs)}`)
const buf = Buffer.alloc(65536)
const data = Buffer.alloc(4096, 0x61 + k)

const failures = []
const counts = {}
const errnos = {}

function run (op, fn, allowed) {
  counts[op] = (counts[op] || 0) + 1
  try {
    fn()
  } catch (err) {
    const code = err && err.code ? err.code : String(err)
    errnos[code] = (errnos[code] || 0) + 1
    if (!allowed.includes(code) && failures.length < 100) failures.push(`${op}: ${code}: ${err && err.message}`)
  }
}

const OPS = [
  [30, () => run('stat', () => fs.statSync(name()), ['ENOENT'])],
  [14, () => run('read', () => {
    const fd = fs.openSync(name(), 'r')
    try { fs.readSync(fd, buf, 0, buf.length, 0) } finally { fs.closeSync(fd) }
  }, ['ENOENT'])],
  [10, () => run('write', () => {
    const fd = fs.openSync(name(), C.O_WRONLY)
    try { fs.writeSync(fd, data, 0, 1 + rng.int(data.length), rng.int(8192)) } finally { fs.closeSync(fd) }
  }, ['ENOENT'])],
  [8, () => run('create', () => fs.closeSync(fs.openSync(name(), 'wx')), ['EEXIST'])],
  [8, () => run('unlink', () => fs.unlinkSync(name()), ['ENOENT'])],
  [8, () => run('rename', () => fs.renameSync(name(), name()), ['ENOENT'])],
  [7, () => run('readdir', () => fs.readdirSync(dirName()), [])],
  [5, () => run('chmod', () => fs.chmodSync(name(), rng.pick([0o644, 0o600, 0o640])), ['ENOENT'])],
  [4, () => run('truncate', () => fs.truncateSync(name(), rng.int(10000)), ['ENOENT'])],
  [3, () => run('open-close', () => fs.closeSync(fs.openSync(name(), 'r')), ['ENOENT'])],
  [2, () => run('statfs', () => fs.statfsSync(mnt), [])],
  [1, () => run('fsync', () => {
    const fd = fs.openSync(name(), C.O_WRONLY)
    try { fs.writeSync(fd, data, 0, 100, 0); fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
  }, ['ENOENT'])],
]
const total = OPS.reduce((s, [w]) => s + w, 0)

let last = Date.now()
for (let i = 1; i <= ops; i++) {
  let x = rng.next() * total
  for (const [w, fn] of OPS) { if ((x -= w) < 0) { fn(); break } }
  if ((i & 255) === 0) {
    const now = Date.now()
    if (now - last >= 500) { last = now; process.send({ done: i }) }
  }
}
process.send({ done: ops, final: { k, ops, counts, errnos, failures } }, () => process.exit(0))
