'use strict'
// Mounting and unmounting the three implementations, finding the FUSE
// daemon's pid, and the registry the exit handlers use to undo everything.

const fs = require('node:fs')
const path = require('node:path')
const { log, sh, runShell, isMounted, mounts, cmdline, alive, sleep } = require('./lib')

const IMPLS = ['kernel', 'fuse-overlayfs', 'ovlfs']
const FSTYPE = { kernel: 'overlay', 'fuse-overlayfs': 'fuse.fuse-overlayfs', ovlfs: 'fuse.ovlfs' }

/** Live mounts of ours: mnt -> { impl, pid }. */
const active = new Map()

/** The -o list; without `upper` a read-only overlay of the lowers alone. */
function optionString (lowers, upper, work) {
  const esc = (p) => p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,')
  const lower = `lowerdir=${lowers.map(esc).join(':')}`
  return upper == null ? lower : `${lower},upperdir=${esc(upper)},workdir=${esc(work)}`
}

/** The command line that mounts `impl`. */
function mountCommand (impl, opts, mnt, ovlfsCli) {
  if (impl === 'kernel') return ['mount', ['-t', 'overlay', 'overlay', '-o', opts, mnt]]
  if (impl === 'fuse-overlayfs') return ['fuse-overlayfs', ['-o', opts, mnt]]
  return [process.execPath, [ovlfsCli, '-o', opts, mnt]]
}

/**
 * The daemon serving mnt: a live process (not us) whose argv has mnt as one
 * of its arguments; mountpoints are unique temp paths, so it is the one we started.
 */
function findDaemon (mnt) {
  const found = []
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const pid = Number(e)
    if (pid === process.pid) continue
    const argv = cmdline(pid)
    if (argv && argv.includes(mnt) && alive(pid)) found.push(pid)
  }
  // Prefer the one holding /dev/fuse open (the serving process, not a parent on its way out).
  const serving = found.filter(holdsDevFuse)
  const pick = serving.length > 0 ? serving : found
  return pick.length > 0 ? Math.max(...pick) : null
}

function holdsDevFuse (pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).some(fd => {
      try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/fuse' } catch { return false }
    })
  } catch { return false }
}

/** Is pid still the daemon of mnt (guards against pid reuse before a kill)? */
function isOurDaemon (pid, mnt) {
  const argv = cmdline(pid)
  return argv !== null && argv.includes(mnt) && alive(pid)
}

async function mount (impl, { lowers, upper, work, mnt, ovlfsCli, timeoutMs = 120_000 }) {
  const [cmd, args] = mountCommand(impl, optionString(lowers, upper, work), mnt, ovlfsCli)
  const quoted = [cmd, ...args].map(a => "'" + a.replace(/'/g, "'\\''") + "'").join(' ')
  const r = await runShell(quoted, { timeoutMs })
  const m = mounts().filter(x => x.mountpoint === mnt)
  if (m.length > 0) active.set(mnt, { impl, pid: null })
  let pid = null
  if (impl !== 'kernel' && m.length > 0) {
    for (let i = 0; i < 20 && pid === null; i++) {
      pid = findDaemon(mnt)
      if (pid === null) await sleep(50)
    }
    active.set(mnt, { impl, pid })
  }
  if (r.code !== 0 || m.length === 0 || m[m.length - 1].fstype !== FSTYPE[impl]) {
    const why = r.timedOut ? 'mount timed out' : `mount exit ${r.code}${m.length ? ` (fstype ${m[m.length - 1].fstype})` : ', not mounted'}`
    if (m.length > 0) {
      await unmount(mnt, { force: true })
    } else if (impl !== 'kernel') {
      // A daemon that never got the mount live (hung, or still starting): ours, by its unique mountpoint.
      const stray = findDaemon(mnt)
      if (stray !== null && isOurDaemon(stray, mnt)) try { process.kill(stray, 'SIGKILL') } catch {}
    }
    throw new Error(`${why}: ${r.stderr.trim().slice(-500)}`)
  }
  if (impl !== 'kernel' && pid === null) {
    await unmount(mnt, { force: true })
    throw new Error('mounted, but the daemon process was not found')
  }
  return { pid }
}

async function waitGone (pid, ms) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (!alive(pid)) return true
    await sleep(50)
  }
  return !alive(pid)
}

/**
 * Unmount mnt. FUSE: fusermount -u and wait for the daemon to exit; with
 * force (after a hang), SIGKILL our daemon first (this aborts the FUSE
 * connection, so stuck callers get ENOTCONN) and unmount lazily. Returns
 * notes on anything unusual.
 */
async function unmount (mnt, { force = false } = {}) {
  const entry = active.get(mnt)
  const notes = []
  if (entry === undefined) return notes
  const { impl, pid } = entry
  const fuse = impl !== 'kernel'
  if (force && fuse && pid !== null && isOurDaemon(pid, mnt)) {
    try { process.kill(pid, 'SIGKILL') } catch {}
    notes.push('daemon killed (SIGKILL)')
  }
  if (!force) {
    for (let i = 0; i < 10 && isMounted(mnt); i++) {
      const r = fuse
        ? sh('fusermount', ['-u', mnt], { allowFail: true, timeoutMs: 60_000 })
        : sh('umount', [mnt], { allowFail: true, timeoutMs: 60_000 })
      if (r.status === 0) break
      if (i === 9) notes.push(`unmount failed: ${(r.stderr || '').trim()}`)
      await sleep(500)
    }
  }
  if (isMounted(mnt)) {
    sh('umount', ['-l', mnt], { allowFail: true, timeoutMs: 60_000 })
    if (!force) notes.push('lazily unmounted')
  }
  if (fuse && pid !== null) {
    if (!(await waitGone(pid, 20_000))) {
      notes.push('daemon did not exit within 20 s of the unmount; SIGTERM')
      if (isOurDaemon(pid, mnt)) try { process.kill(pid, 'SIGTERM') } catch {}
      if (!(await waitGone(pid, 5_000)) && isOurDaemon(pid, mnt)) {
        notes.push('SIGKILL')
        try { process.kill(pid, 'SIGKILL') } catch {}
        await waitGone(pid, 5_000)
      }
    }
  }
  if (isMounted(mnt)) notes.push('STILL MOUNTED')
  else active.delete(mnt)
  return notes
}

/** Exit handler: synchronous, best effort, only our mounts and our daemons. */
function unmountAllSync () {
  const order = [...active.keys()].sort((a, b) => b.length - a.length)
  for (const mnt of order) {
    const { impl, pid } = active.get(mnt)
    if (impl !== 'kernel') sh('fusermount', ['-u', mnt], { allowFail: true, timeoutMs: 10_000 })
    else sh('umount', [mnt], { allowFail: true, timeoutMs: 10_000 })
    if (isMounted(mnt)) {
      if (pid !== null && isOurDaemon(pid, mnt)) try { process.kill(pid, 'SIGKILL') } catch {}
      sh('umount', ['-l', mnt], { allowFail: true, timeoutMs: 10_000 })
    }
    if (!isMounted(mnt)) active.delete(mnt)
    else log(`bench: could not unmount ${mnt}`)
  }
}

/**
 * A read-only bind mount of the data set, so that no implementation can
 * change the cached layers.
 */
function bindReadOnly (src, dst) {
  fs.mkdirSync(dst, { recursive: true })
  sh('mount', ['--bind', src, dst])
  active.set(dst, { impl: 'kernel', pid: null })
  const r = sh('mount', ['-o', 'remount,bind,ro', dst], { allowFail: true })
  if (r.status !== 0) log(`bench: warning: could not make ${dst} read-only: ${r.stderr.trim()}`)
  return dst
}

/**
 * A new ext4 file system (mkfs defaults, so with a journal; inode tables and
 * journal written out now, not by ext4lazyinit during a run) in the sparse
 * file `img`, loop-mounted at `dir`, so that every run's upper and work dirs
 * start on an identical, empty file system. Registered in `active`: the
 * exit handlers unmount it (the loop device goes with it).
 */
function freshExt4 (img, dir, bytes) {
  fs.rmSync(img, { force: true })
  fs.closeSync(fs.openSync(img, 'w'))
  fs.truncateSync(img, bytes)
  sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', img])
  sh('mount', ['-o', 'loop', img, dir])
  active.set(dir, { impl: 'kernel', pid: null })
  sh('sync', ['-f', dir])
}

module.exports = { IMPLS, FSTYPE, mount, unmount, unmountAllSync, bindReadOnly, freshExt4, optionString, active, path }
