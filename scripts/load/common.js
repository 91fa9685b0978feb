'use strict'
// Shared by scripts/stress.js and scripts/soak.js: argument parsing, a seeded
// PRNG, self-checking file contents, mounting ovlfs through its CLI (in a child
// process), sampling the daemon's memory and descriptors, and tearing down on
// every exit path. Mounting reuses scripts/bench/mounts.js.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { mount, unmount, unmountAllSync, active } = require('../bench/mounts')
const { isMounted, alive, sleep, removeTree, log, mulberry32 } = require('../bench/lib')

const REPO = path.resolve(__dirname, '..', '..')
const CLI = path.join(REPO, 'dist', 'cli', 'main.js')

/** `--name value` pairs into an object, with defaults; unknown flags are an error. */
function parseArgs (argv, defaults, usage) {
  const out = { ...defaults }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h' || a === '--help') { process.stdout.write(usage); process.exit(0) }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a)
    if (m === null || !(camel(m[1]) in defaults)) die(`unknown argument: ${a}\n${usage}`)
    const key = camel(m[1])
    if (typeof defaults[key] === 'boolean' && m[2] === undefined) { out[key] = true; continue }
    const raw = m[2] !== undefined ? m[2] : argv[++i]
    if (raw === undefined) die(`--${m[1]} needs a value`)
    if (typeof defaults[key] === 'number') {
      const n = Number(raw)
      if (!Number.isFinite(n) || n < 0) die(`--${m[1]} must be a non-negative number, not ${raw}`)
      out[key] = n
    } else if (typeof defaults[key] === 'boolean') {
      out[key] = raw === 'true' || raw === '1' || raw === 'yes'
    } else {
      out[key] = raw
    }
  }
  return out
}

function camel (s) { return s.replace(/-([a-z])/g, (_m, c) => c.toUpperCase()) }

function die (msg) {
  process.stderr.write(msg.endsWith('\n') ? msg : msg + '\n')
  process.exit(2)
}

class Rng {
  constructor (seed) { this.next = mulberry32(seed) }
  int (n) { return Math.floor(this.next() * n) }
  pick (xs) { return xs[this.int(xs.length)] }
  chance (p) { return this.next() < p }
}

/** A seed for sub-stream i of a run seeded with `seed`. */
function subSeed (seed, i) {
  return (Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0
}

function hash32 (s) {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * Self-checking content: `<tag>|<len>|` and then a body that the tag alone
 * determines, `len` bytes in all. Any reader can tell a whole version from a
 * torn or mixed one, and which version (tag) it is.
 */
function makeContent (tag, len) {
  const head = `${tag}|${len}|`
  if (head.length + 1 > len) throw new Error(`content of ${len} bytes cannot hold tag ${tag}`)
  const r = mulberry32(hash32(tag))
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
  let body = ''
  for (let i = head.length; i < len - 1; i++) body += alphabet[Math.floor(r() * 36)]
  return head + body + '\n'
}

/** The tag of a whole version, or null when `text` is not exactly one (torn, mixed, empty). */
function checkContent (text) {
  const m = /^([^|]{1,80})\|(\d{1,9})\|/.exec(text)
  if (m === null) return null
  const len = Number(m[2])
  if (text.length !== len) return null
  return makeContent(m[1], len) === text ? m[1] : null
}

// ---- the mount ----------------------------------------------------------------

/** A fresh root under the temp dir with lower0..lowerN-1, upper, work, mnt. */
function makeRoot (prefix, nLowers) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const lowers = Array.from({ length: nLowers }, (_v, i) => path.join(root, `lower${i}`))
  const o = { root, lowers, upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt') }
  for (const d of [...lowers, o.upper, o.work, o.mnt]) fs.mkdirSync(d)
  return o
}

/** Mount ovlfs (`node dist/cli/main.js -o lowerdir=...,upperdir=...,workdir=... MNT`); returns the daemon pid. */
async function mountOvlfs (o) {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} does not exist: build ovlfs first (npm run build)`)
  // mounts.js takes lowers top first, as lowerdir= does.
  const { pid } = await mount('ovlfs', { lowers: o.lowers, upper: o.upper, work: o.work, mnt: o.mnt, ovlfsCli: CLI })
  return pid
}

/** Read-only kernel overlay of the given layers (top first): no upper, so nothing is written. */
function mountKernelReadOnly (layersTopFirst, mnt) {
  const esc = (p) => p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,')
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${layersTopFirst.map(esc).join(':')}`, mnt], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`kernel overlay mount failed: ${r.stderr}`)
  active.set(mnt, { impl: 'kernel', pid: null })
}

/**
 * What a daemon that died left in the kernel's log (it writes its warnings and the report
 * of a crash there when started without --log-file; see daemonize in src/cli/mount.ts):
 * its last lines, joined, or a note that there are none.
 */
function lastWords (pid) {
  const r = spawnSync('dmesg', [], { encoding: 'utf8', maxBuffer: 64 << 20 })
  const mine = (r.stdout || '').split('\n').filter((l) => l.includes(`ovlfs[${pid}]:`))
  return mine.length === 0 ? `nothing from ovlfs[${pid}] in dmesg` : `dmesg: ${mine.slice(-12).join(' / ')}`
}

/** Unmount everything of ours on any exit (normal, error, SIGINT/SIGTERM). */
function installTeardown (extra = () => {}) {
  const undo = () => {
    try { extra() } catch {}
    unmountAllSync()
  }
  process.once('exit', undo)
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
    process.once(sig, () => { process.stderr.write(`${sig}: tearing down\n`); process.exit(128 + n) })
  }
}

// ---- sampling the daemon ----------------------------------------------------------

function procStatusKiB (pid, field) {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch { return null }
}

function fdCount (pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length } catch { return null }
}

/**
 * Sample the daemon's VmRSS, VmHWM and open fds every `everyMs`; `samples`
 * keeps them all ({t, rssKiB, hwmKiB, fds}) for growth checks.
 */
class Sampler {
  constructor (pid, everyMs = 1000) {
    this.pid = pid
    this.samples = []
    this.t0 = Date.now()
    this.sample()
    this.timer = setInterval(() => this.sample(), everyMs)
  }

  sample () {
    const rssKiB = procStatusKiB(this.pid, 'VmRSS')
    if (rssKiB === null) return null
    const s = { t: (Date.now() - this.t0) / 1000, rssKiB, hwmKiB: procStatusKiB(this.pid, 'VmHWM'), fds: fdCount(this.pid) }
    this.samples.push(s)
    return s
  }

  stop () { clearInterval(this.timer); this.sample() }

  get peak () {
    const max = (k) => this.samples.reduce((m, s) => Math.max(m, s[k] ?? 0), 0)
    return { rssKiB: max('rssKiB'), hwmKiB: max('hwmKiB'), fds: max('fds'), samples: this.samples.length }
  }
}

module.exports = {
  REPO, CLI, parseArgs, die, Rng, mulberry32, subSeed, hash32, makeContent, checkContent,
  makeRoot, mountOvlfs, mountKernelReadOnly, unmount, installTeardown, Sampler, fdCount, procStatusKiB,
  isMounted, alive, lastWords, sleep, removeTree, log,
}
