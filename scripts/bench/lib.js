'use strict'
// Small helpers shared by the benchmark: logging, shell commands with
// timeouts and process-group kills, mountinfo, careful deletion, /proc reads.

const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')

const log = (...args) => { process.stderr.write(args.join(' ') + '\n') }

/** Quote for bash. */
function q (s) {
  return "'" + String(s).replace(/'/g, "'\\''") + "'"
}

/**
 * Process groups of commands that are running right now (spawned detached,
 * so each has its own group); the exit handlers kill exactly these.
 */
const liveGroups = new Set()

/**
 * Run `bash -c cmd` in its own process group. Resolves (never rejects) with
 * { code, signal, seconds, stdout, stderr, timedOut }. On timeout the whole
 * group gets SIGKILL.
 */
function runShell (cmd, { timeoutMs = 600_000, cwd, env } = {}) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    const child = spawn('bash', ['-c', cmd], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd, env: env ?? process.env })
    liveGroups.add(child.pid)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    let done = false
    let seconds
    let grace
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (d) => { if (stdout.length < 1 << 20) stdout += d })
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000) })
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
      // Something stuck beyond SIGKILL (a hung FUSE request): give up waiting;
      // the caller kills the daemon, which frees it.
      grace = setTimeout(() => finish(null, 'SIGKILL'), 10_000)
    }, timeoutMs)
    const finish = (code, signal) => {
      if (done) return
      done = true
      clearTimeout(timer)
      clearTimeout(grace)
      liveGroups.delete(child.pid)
      if (seconds === undefined) seconds = Number(process.hrtime.bigint() - t0) / 1e9
      resolve({ code, signal, seconds, stdout, stderr, timedOut })
    }
    child.on('error', (err) => { stderr += String(err); seconds = Number(process.hrtime.bigint() - t0) / 1e9; finish(-1, null) })
    // Time is taken at exit; output is complete at close, unless a daemon we
    // started (a mount command) still holds the pipe: then 1 s after exit.
    child.on('exit', (code, signal) => {
      seconds = Number(process.hrtime.bigint() - t0) / 1e9
      clearTimeout(grace)
      grace = setTimeout(() => finish(code, signal), 1000)
    })
    child.on('close', (code, signal) => {
      if (seconds === undefined) seconds = Number(process.hrtime.bigint() - t0) / 1e9
      finish(code, signal)
    })
  })
}

function killGroup (pgid) {
  try { process.kill(-pgid, 'SIGKILL') } catch {}
}

function killLiveGroups () {
  for (const g of liveGroups) killGroup(g)
  liveGroups.clear()
}

/** Synchronous command; throws with its stderr unless it exits 0 (or opts.allowFail). */
function sh (cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28, timeout: opts.timeoutMs, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'], cwd: opts.cwd })
  if (r.status !== 0 && !opts.allowFail) {
    const why = r.error ? r.error.message : `exit ${r.status}${r.signal ? ' ' + r.signal : ''}`
    throw new Error(`${cmd} ${args.join(' ')}: ${why}\n${(r.stderr || '').slice(-2000)}`)
  }
  return r
}

/** Mount points from /proc/self/mountinfo (unescaped), with fstype. */
function mounts () {
  const out = []
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue
    const f = line.split(' ')
    const sep = f.indexOf('-')
    const unesc = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))
    out.push({ mountpoint: unesc(f[4]), fstype: f[sep + 1] })
  }
  return out
}

function isMounted (mnt) {
  return mounts().some(m => m.mountpoint === mnt)
}

/** Mount points at or below dir, deepest first. */
function mountsUnder (dir) {
  const d = path.resolve(dir)
  return mounts().map(m => m.mountpoint)
    .filter(p => p === d || p.startsWith(d + '/'))
    .sort((a, b) => b.length - a.length)
}

/**
 * Delete a tree we made. Mounts below it (ours: a debootstrap that died, a
 * mount whose unmount failed) are lazily unmounted first; if any remain we
 * refuse. rm --one-file-system never crosses into another file system.
 */
function removeTree (dir) {
  if (!fs.existsSync(dir)) return true
  for (const m of mountsUnder(dir)) sh('umount', ['-l', m], { allowFail: true })
  const left = mountsUnder(dir)
  if (left.length > 0) {
    log(`bench: NOT deleting ${dir}: still mounted below it: ${left.join(', ')}`)
    return false
  }
  const r = sh('rm', ['-rf', '--one-file-system', dir], { allowFail: true })
  if (r.status !== 0) log(`bench: could not delete ${dir}: ${r.stderr}`)
  return r.status === 0
}

/** The process's argv (NUL-split) or null. */
function cmdline (pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(s => s !== '')
  } catch { return null }
}

function alive (pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = st.slice(st.lastIndexOf(')') + 2).split(' ')[0]
    return state !== 'Z' && state !== 'X'
  } catch { return false }
}

let clkTck
/** utime+stime in seconds (all threads), or null. */
function cpuSeconds (pid) {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
    clkTck = Number(r.stdout) || 100
  }
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
    // f[0] is field 3 (state); utime is field 14, stime 15.
    return (Number(f[11]) + Number(f[12])) / clkTck
  } catch { return null }
}

/** VmHWM in KiB, or null. */
function peakRssKiB (pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch { return null }
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/** mulberry32: a small seeded 32-bit PRNG; returns floats in [0, 1). */
function mulberry32 (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

module.exports = {
  mulberry32,
  log, q, runShell, killGroup, killLiveGroups, sh, mounts, isMounted, mountsUnder, removeTree, cmdline, alive, cpuSeconds, peakRssKiB, sleep,
}
