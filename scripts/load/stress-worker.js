'use strict'
// One worker process of scripts/stress.js (started with child_process.fork, so it
// is a process of its own, never a thread of the daemon). It runs seeded random
// operations with synchronous fs calls against the mount until the deadline:
//   - on its own names it knows the exact outcome of every call (success or which
//     errno) from its model, and checks it, and the content it reads back;
//   - on shared names it accepts only the errnos a plain filesystem could give in
//     that race (ENOENT when another process removed the name first, ...);
//   - readers list and read everything and check that every file they read is
//     one whole version (self-checking content), and that listings are sane.
// It logs every operation (one line each) and writes its model and the versions
// it wrote to a JSON file at the end, for the parent's final check.

const fs = require('node:fs')
const path = require('node:path')
const { Rng, makeContent, checkContent } = require('./common')
const L = require('./layout')

const cfg = JSON.parse(process.argv[2])
const { k, role, seed, mnt, logDir, nWriters } = cfg
const rng = new Rng(seed)
const abs = (p) => path.join(mnt, p)

const logPath = path.join(logDir, `${role}-${k}.log`)
let logBuf = []
function logLine (s) {
  logBuf.push(s)
  if (logBuf.length >= 2000) flushLog()
}
function flushLog () {
  if (logBuf.length === 0) return
  fs.appendFileSync(logPath, logBuf.join('\n') + '\n')
  logBuf = []
}

const failures = []
// Results that differ from a plain filesystem in a way the README documents as a limit of
// the libfuse 2 path API: counted and reported (failures with --strict), never hidden.
const knownLimits = {}
const counts = {}
const errnos = {}
let seq = 0
let tagSeq = 0
const written = { r: [], p: [], sd: [] }

function fail (what) {
  failures.push(`#${seq} ${what}`)
  logLine(`#${seq} FAIL ${what}`)
}

/**
 * Run fn; return null on success or the errno code; record a failure unless allowed.
 * `limit` names a documented limit ({ code, what }) that explains one errno.
 */
function attempt (desc, fn, allowed, limit) {
  try {
    const r = fn()
    logLine(`#${seq} ${desc} ok`)
    return { code: null, value: r }
  } catch (err) {
    const code = err && err.code ? err.code : String(err)
    errnos[code] = (errnos[code] || 0) + 1
    logLine(`#${seq} ${desc} ${code}`)
    if (limit !== undefined && code === limit.code && !cfg.strict) {
      knownLimits[limit.what] = (knownLimits[limit.what] || 0) + 1
      logLine(`#${seq} known limit: ${limit.what}`)
    } else if (!allowed.includes(code)) fail(`${desc}: unexpected ${code} (allowed: ${allowed.join(',') || 'none'}): ${err && err.message}`)
    return { code, value: undefined }
  }
}

/** Run fn on an owned name whose outcome is known: `want` is null (success) or the errno. */
function exact (desc, fn, want) {
  let code = null
  let value
  try {
    value = fn()
  } catch (err) {
    code = err && err.code ? err.code : String(err)
    errnos[code] = (errnos[code] || 0) + 1
  }
  logLine(`#${seq} ${desc} ${code || 'ok'}${want !== code ? ` (expected ${want || 'ok'})` : ''}`)
  if (code !== want) fail(`${desc}: got ${code || 'success'}, expected ${want || 'success'}`)
  return { code, value }
}

function newTag (kind) { return `w${k}.${kind}.${++tagSeq}` }

// ---- writer k's own names: exact outcomes -------------------------------------

const model = role === 'writer' ? L.initialModel(k, nWriters) : new Map()
const ownFiles = role === 'writer' ? L.ownFilePaths(k) : []
const ownDirs = role === 'writer' ? L.ownDirPaths(k) : []
const tmpName = `shared/w${k}-tmp`

const parentOf = (p) => p.slice(0, p.lastIndexOf('/'))
const parentOk = (p) => parentOf(p) === 'shared' || (model.get(parentOf(p)) || {}).t === 'd'
const childrenOf = (d) => [...model.keys()].filter(p => parentOf(p) === d)
function ownContent () {
  const len = 40 + rng.int(rng.chance(0.1) ? 60000 : 6000)
  return makeContent(newTag('own'), len)
}

const ownOps = [
  [3, function oWrite () {
    const p = rng.pick(ownFiles)
    const c = ownContent()
    const want = parentOk(p) ? null : 'ENOENT'
    const r = exact(`write ${p} len=${c.length}`, () => fs.writeFileSync(abs(p), c), want)
    if (r.code === null) model.set(p, { t: 'f', c })
  }],
  [2, function oReplace () {
    const p = rng.pick(ownFiles)
    const c = ownContent()
    exact(`write ${tmpName} len=${c.length}`, () => fs.writeFileSync(abs(tmpName), c), null)
    const want = parentOk(p) ? null : 'ENOENT'
    const r = exact(`rename ${tmpName} ${p}`, () => fs.renameSync(abs(tmpName), abs(p)), want)
    if (r.code === null) model.set(p, { t: 'f', c })
    else exact(`unlink ${tmpName}`, () => fs.unlinkSync(abs(tmpName)), null)
  }],
  [1, function oAppend () {
    const p = rng.pick(ownFiles)
    const c = makeContent(newTag('app'), 30 + rng.int(3000))
    const want = parentOk(p) ? null : 'ENOENT'
    const r = exact(`append ${p} len=${c.length}`, () => fs.appendFileSync(abs(p), c), want)
    if (r.code === null) { const cur = model.get(p); model.set(p, { t: 'f', c: (cur ? cur.c : '') + c }) }
  }],
  [1, function oPwrite () {
    const p = rng.pick(ownFiles)
    const cur = model.get(p)
    const data = makeContent(newTag('pw'), 30 + rng.int(2000))
    const pos = cur ? rng.int(cur.c.length + 1) : 0
    const r = exact(`pwrite ${p} at=${pos} len=${data.length}`, () => {
      const fd = fs.openSync(abs(p), 'r+')
      try { fs.writeSync(fd, data, pos) } finally { fs.closeSync(fd) }
    }, cur ? null : 'ENOENT')
    if (r.code === null) model.set(p, { t: 'f', c: cur.c.slice(0, pos) + data + cur.c.slice(pos + data.length) })
  }],
  [1, function oTruncate () {
    const p = rng.pick(ownFiles)
    const cur = model.get(p)
    const n = rng.int(cur ? cur.c.length + 100 : 100)
    const r = exact(`truncate ${p} ${n}`, () => fs.truncateSync(abs(p), n), cur ? null : 'ENOENT')
    if (r.code === null) model.set(p, { t: 'f', c: cur.c.length >= n ? cur.c.slice(0, n) : cur.c.padEnd(n, '\0') })
  }],
  [2, function oUnlink () {
    const p = rng.pick(ownFiles)
    const r = exact(`unlink ${p}`, () => fs.unlinkSync(abs(p)), model.has(p) ? null : 'ENOENT')
    if (r.code === null) model.delete(p)
  }],
  [2, function oRename () {
    const a = rng.pick(ownFiles)
    const b = rng.pick(ownFiles)
    const want = (!parentOk(a) || !parentOk(b) || !model.has(a)) ? 'ENOENT' : null
    const r = exact(`rename ${a} ${b}`, () => fs.renameSync(abs(a), abs(b)), want)
    if (r.code === null && a !== b) { model.set(b, model.get(a)); model.delete(a) }
  }],
  [1, function oMkdir () {
    const d = rng.pick(ownDirs)
    const r = exact(`mkdir ${d}`, () => fs.mkdirSync(abs(d)), model.has(d) ? 'EEXIST' : null)
    if (r.code === null) model.set(d, { t: 'd', merged: false })
  }],
  [1, function oRmdir () {
    const d = rng.pick(ownDirs)
    const want = !model.has(d) ? 'ENOENT' : childrenOf(d).length > 0 ? 'ENOTEMPTY' : null
    const r = exact(`rmdir ${d}`, () => fs.rmdirSync(abs(d)), want)
    if (r.code === null) model.delete(d)
  }],
  [1, function oRenameDir () {
    const a = rng.pick(ownDirs)
    const b = rng.pick(ownDirs)
    const sa = model.get(a)
    const sb = model.get(b)
    let want = null
    if (sa === undefined) want = 'ENOENT'
    else if (a === b) want = null
    else if (sb !== undefined && childrenOf(b).length > 0) want = 'ENOTEMPTY'
    const r = exact(`rename-dir ${a} ${b}`, () => fs.renameSync(abs(a), abs(b)), want)
    if (r.code === null && a !== b) {
      for (const c of childrenOf(b)) model.delete(c)
      const moved = childrenOf(a)
      model.delete(a)
      model.set(b, { t: 'd', merged: false })
      for (const c of moved) { model.set(b + c.slice(a.length), model.get(c)); model.delete(c) }
    }
  }],
  [1.5, function oRead () {
    const p = rng.pick(ownFiles)
    const cur = model.get(p)
    const r = exact(`read ${p}`, () => fs.readFileSync(abs(p), 'latin1'), cur ? null : 'ENOENT')
    if (r.code === null && r.value !== cur.c) fail(`read ${p}: content differs from the last written (${r.value.length} bytes, expected ${cur.c.length})`)
  }],
  [1, function oStat () {
    const p = rng.pick([...ownFiles, ...ownDirs])
    const cur = model.get(p)
    const r = exact(`stat ${p}`, () => fs.lstatSync(abs(p)), cur ? null : 'ENOENT')
    if (r.code !== null || cur === undefined) return
    if (cur.t === 'd' ? !r.value.isDirectory() : !r.value.isFile() || r.value.size !== cur.c.length) {
      fail(`stat ${p}: ${r.value.isDirectory() ? 'dir' : 'size ' + r.value.size}, expected ${cur.t === 'd' ? 'dir' : 'size ' + cur.c.length}`)
    }
  }],
  [1, function oList () {
    const r = exact('readdir shared (own names)', () => fs.readdirSync(abs('shared')), null)
    if (r.code !== null) return
    checkListing('shared', r.value.filter(n => n.startsWith(`w${k}-`)))
    for (const d of ownDirs) {
      if (!model.has(d)) continue
      const rd = exact(`readdir ${d}`, () => fs.readdirSync(abs(d)), null)
      if (rd.code === null) checkListing(d, rd.value)
    }
  }],
]

function checkListing (dir, names) {
  const want = childrenOf(dir).map(p => p.slice(dir.length + 1)).sort()
  const got = [...names].sort()
  if (JSON.stringify(want) !== JSON.stringify(got)) fail(`readdir ${dir}: [${got.join(' ')}], expected [${want.join(' ')}]`)
}

// ---- shared names: races, only plain-filesystem errors allowed ------------------------

const rName = () => `shared/r${rng.int(L.N_R)}`
const pName = () => `shared/p${rng.int(L.N_P)}`
const sdName = () => `shared/sd${rng.int(L.N_SD)}`
const sdFile = () => `${sdName()}/f${rng.int(L.N_SD_FILES)}`

function checkWhole (desc, text, { emptyOk = false } = {}) {
  if (text.length === 0 && emptyOk) return
  if (checkContent(text) === null) fail(`${desc}: not one whole version (${text.length} bytes: ${JSON.stringify(text.slice(0, 40))}...)`)
}

function checkSharedListing (desc, names) {
  const seen = new Set()
  for (const n of names) {
    if (seen.has(n)) fail(`${desc}: ${n} listed twice`)
    seen.add(n)
    if (n.startsWith('.wh.') || n.startsWith('#ovlfs')) fail(`${desc}: overlay-internal name ${n} visible`)
  }
  return seen
}

// open() of a name another process unlinks at the same moment: the kernel has resolved the name,
// the unlink then detaches it, and the OPEN request that follows carries no path any more.
const OPEN_RACING_UNLINK = { code: 'ENOENT', what: 'open(O_CREAT) of an existing file racing with its unlink: ENOENT (libfuse 2 path API)' }

const sharedWriteOps = [
  [2, function rReplace () {
    const p = rName()
    const c = makeContent(newTag('r'), 100 + rng.int(8000))
    attempt(`write ${tmpName} len=${c.length}`, () => fs.writeFileSync(abs(tmpName), c), [])
    const r = attempt(`rename ${tmpName} ${p}`, () => fs.renameSync(abs(tmpName), abs(p)), [])
    if (r.code === null) written.r.push(checkContent(c))
    else attempt(`unlink ${tmpName}`, () => fs.unlinkSync(abs(tmpName)), ['ENOENT'])
  }],
  [1, function rRename () { const a = rName(); const b = rName(); attempt(`rename ${a} ${b}`, () => fs.renameSync(abs(a), abs(b)), ['ENOENT']) }],
  [1, function rUnlink () { const p = rName(); attempt(`unlink ${p}`, () => fs.unlinkSync(abs(p)), ['ENOENT']) }],
  [2, function pWrite () {
    const p = pName()
    const c = makeContent(newTag('p'), L.P_LEN)
    const r = attempt(`pwrite0 ${p}`, () => {
      const fd = fs.openSync(abs(p), fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o644)
      try {
        const n = fs.writeSync(fd, c, 0)
        if (n !== c.length) throw Object.assign(new Error(`short write ${n}`), { code: 'SHORTWRITE' })
      } finally { fs.closeSync(fd) }
    }, [], OPEN_RACING_UNLINK)
    if (r.code === null) written.p.push(checkContent(c))
  }],
  [0.5, function pUnlink () { const p = pName(); attempt(`unlink ${p}`, () => fs.unlinkSync(abs(p)), ['ENOENT']) }],
  [1, function sdMkdir () { const d = sdName(); attempt(`mkdir ${d}`, () => fs.mkdirSync(abs(d)), ['EEXIST']) }],
  [1, function sdRmdir () { const d = sdName(); attempt(`rmdir ${d}`, () => fs.rmdirSync(abs(d)), ['ENOENT', 'ENOTEMPTY']) }],
  [2, function sdCreate () {
    const p = sdFile()
    const c = makeContent(newTag('sd'), 50 + rng.int(3000))
    let fd = -1
    const r = attempt(`create ${p}`, () => { fd = fs.openSync(abs(p), 'wx') }, ['ENOENT', 'EEXIST'])
    if (r.code !== null) return
    const w = attempt(`write ${p} len=${c.length}`, () => fs.writeSync(fd, c, 0), [])
    attempt(`close ${p}`, () => fs.closeSync(fd), [])
    if (w.code === null) written.sd.push(checkContent(c))
  }],
  [1, function sdUnlink () { const p = sdFile(); attempt(`unlink ${p}`, () => fs.unlinkSync(abs(p)), ['ENOENT']) }],
  [1, function sdRenameFile () { const a = sdFile(); const b = sdFile(); attempt(`rename ${a} ${b}`, () => fs.renameSync(abs(a), abs(b)), ['ENOENT']) }],
  // Directories with lower parts rename like any other (redirect_dir=on, ovlfs's default): no EXDEV.
  [0.7, function sdRenameDir () { const a = sdName(); const b = sdName(); attempt(`rename-dir ${a} ${b}`, () => fs.renameSync(abs(a), abs(b)), ['ENOENT', 'ENOTEMPTY', 'EEXIST']) }],
]

/**
 * Read a shared file whose name may go at any moment: only its open may fail
 * (ENOENT, the name raced away). Once open, the file is that process's until
 * it closes it: fstat and read of the open file must succeed whatever happens
 * to its name (POSIX; an fstat that failed here once made Node's readFileSync
 * keep the fd, and the daemon with it).
 */
function readShared (p) {
  let fd
  const r = attempt(`open ${p}`, () => { fd = fs.openSync(abs(p), 'r') }, ['ENOENT'])
  if (r.code !== null) return r
  try {
    return exact(`read ${p}`, () => fs.readFileSync(fd, 'latin1'), null)
  } finally { fs.closeSync(fd) }
}

const readOps = [
  [2, function rRead () {
    const p = rName()
    const r = readShared(p)
    if (r.code === null) checkWhole(`read ${p}`, r.value)
  }],
  [1, function pRead () {
    const p = pName()
    const r = readShared(p)
    // A file of the p kind may be empty for a moment (just created, not yet written).
    if (r.code === null && r.value.length !== 0 && r.value.length !== L.P_LEN) fail(`read ${p}: ${r.value.length} bytes, expected 0 or ${L.P_LEN}`)
  }],
  [1, function sdRead () {
    const p = sdFile()
    const r = readShared(p)
    if (r.code === null) checkWhole(`read ${p}`, r.value, { emptyOk: true })
  }],
  [1, function sdList () {
    const d = sdName()
    const r = attempt(`readdir ${d}`, () => fs.readdirSync(abs(d)), ['ENOENT'])
    if (r.code !== null) return
    for (const n of checkSharedListing(`readdir ${d}`, r.value)) {
      if (!/^f\d+$/.test(n) || Number(n.slice(1)) >= L.N_SD_FILES) fail(`readdir ${d}: unexpected name ${n}`)
    }
  }],
  [1, function sharedList () {
    const r = attempt('readdir shared', () => fs.readdirSync(abs('shared'), { withFileTypes: true }), [])
    if (r.code !== null) return
    checkSharedListing('readdir shared', r.value.map(e => e.name))
    for (const e of r.value) {
      const kind = L.classify(e.name, nWriters)
      // Temp names of writers come and go (w<k>-tmp): fine in a listing, never at the end.
      if (kind === null && !/^w\d+-tmp$/.test(e.name)) fail(`readdir shared: unexpected name ${e.name}`)
      if ((kind === 'sd' && !e.isDirectory()) || ((kind === 'r' || kind === 'p') && !e.isFile())) fail(`readdir shared: ${e.name} has the wrong type`)
    }
  }],
  [1, function statAny () {
    const p = rng.pick([rName(), pName(), sdName(), sdFile(), `shared/w${rng.int(nWriters)}-f${rng.int(L.N_OWN_FILES)}`])
    attempt(`stat ${p}`, () => fs.lstatSync(abs(p)), ['ENOENT'])
  }],
  [0.5, function statfsMnt () { attempt('statfs', () => fs.statfsSync(mnt), []) }],
]

function table (entries) {
  const total = entries.reduce((s, [w]) => s + w, 0)
  return () => {
    let x = rng.next() * total
    for (const [w, fn] of entries) { if ((x -= w) < 0) return fn }
    return entries[0][1]
  }
}

const pickOp = role === 'writer'
  ? table([...ownOps.map(([w, f]) => [w * 1.2, f]), ...sharedWriteOps, ...readOps.map(([w, f]) => [w * 0.4, f])])
  : table(readOps)

process.send({ ready: true })
process.once('message', (m) => { run(m.deadline) })

function run (deadline) {
  let lastBeat = 0
  while (Date.now() < deadline) {
    const op = pickOp()
    seq++
    counts[op.name] = (counts[op.name] || 0) + 1
    op()
    const now = Date.now()
    if (now - lastBeat > 500) {
      lastBeat = now
      process.send({ beat: seq, failures: failures.length })
    }
  }
  flushLog()
  const out = {
    k, role, ops: seq, counts, errnos, knownLimits, failures: failures.slice(0, 200), failureCount: failures.length,
    model: [...model.entries()], written,
  }
  fs.writeFileSync(path.join(logDir, `${role}-${k}.final.json`), JSON.stringify(out))
  process.send({ done: true }, () => process.exit(0))
}
