// Faults and limits (issue 6): a full upper filesystem (a small tmpfs), a daemon out of
// file descriptors, layer directories removed or renamed under a live mount. Every
// affected call must fail with a clear errno, the daemon must survive, the rest of the
// mount must keep working, nothing already in a layer may be damaged, and the lower
// layers of the first two tests are fingerprinted (content, metadata, xattrs, mtime,
// ctime) when made and checked by the last test.
//
// EIO from a layer: the layer is a small FUSE file system of our own
// (harness/eio-fs.js, served by a child process through ovlfs's binding) whose
// getattr, read or readdir of given names fails with EIO.
import { spawnSync } from 'node:child_process'
import { createHash, randomFillSync } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { alive, daemonPid, fdCount, sleep } from './harness/daemon'
import { startEioFs } from './harness/eio-fs-server'
import { isMounted, mountFuse, removeTree, tempDir, unmount, unmountAll, type Overlay } from './harness/mounts'
import { diff, snapshotMerged, snapshotUpper } from './harness/snapshot'
import { LayerGuard } from './harness/treehash'

const MiB = 1 << 20
const guard = new LayerGuard()
const roots: string[] = []
const tmpfsMounts: string[] = []

afterAll(async () => {
  await unmountAll()
  for (const t of tmpfsMounts.splice(0).reverse()) unmountTmpfs(t)
  for (const r of roots.splice(0)) { try { removeTree(r) } catch { /* something still mounted */ } }
})

function root (name: string): string {
  const r = tempDir(`ovlfs-test-faults-${name}-`)
  roots.push(r)
  return r
}

function put (p: string, data: string | Buffer): void {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
}

function sha (data: Buffer): string { return createHash('sha256').update(data).digest('hex') }

function mountTmpfs (dir: string, size: string): void {
  fs.mkdirSync(dir, { recursive: true })
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`mount tmpfs on ${dir}: ${r.stderr}`)
  tmpfsMounts.push(dir)
}

function unmountTmpfs (dir: string): void {
  if (isMounted(dir)) spawnSync('umount', [dir], { stdio: 'ignore' })
  if (isMounted(dir)) spawnSync('umount', ['-l', dir], { stdio: 'ignore' })
  const i = tmpfsMounts.indexOf(dir)
  if (i >= 0) tmpfsMounts.splice(i, 1)
}

/** Free bytes of the filesystem holding `p`. */
function freeBytes (p: string): number {
  const s = fs.statfsSync(p)
  return s.bfree * s.bsize
}

/** The errno code of a synchronous call, or 'ok'. */
function codeOf (f: () => unknown): string {
  try { f(); return 'ok' } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e) }
}

/**
 * What is left in `<workdir>/work` while mounted, less the one shared whiteout
 * (a char device 0/0 that whiteouts are hard links of, as the kernel keeps
 * one there; it goes at unmount): a second one would be a leftover.
 */
function workEntries (o: Overlay): string[] {
  const w = path.join(o.work, 'work')
  const names = fs.existsSync(w) ? fs.readdirSync(w) : []
  const shared = names.find((n) => {
    const st = fs.lstatSync(path.join(w, n))
    return st.isCharacterDevice() && st.rdev === 0
  })
  return names.filter(n => n !== shared)
}

/** Snapshot minus the given top-level names (the test's own scratch files). */
function without (snap: ReturnType<typeof snapshotUpper>, ...names: string[]): ReturnType<typeof snapshotUpper> {
  return { problems: snap.problems, entries: Object.fromEntries(Object.entries(snap.entries).filter(([p]) => !names.some(n => p === n || p.startsWith(n + '/')))) }
}

describe('faults and limits', () => {
  it('upper full (8 MiB tmpfs): ENOSPC, nothing damaged, nothing left behind, works again once space is freed', async () => {
    const r = root('enospc')
    const lower = path.join(r, 'lower')
    const med = randomFillSync(Buffer.alloc(3 * MiB))
    const huge = randomFillSync(Buffer.alloc(12 * MiB))
    put(path.join(lower, 'small'), 'small lower file\n')
    put(path.join(lower, 'med'), med)
    put(path.join(lower, 'huge'), huge)
    put(path.join(lower, 'dir', 'inner'), 'inner\n')
    put(path.join(lower, 'gone'), 'whited out by upper\n')
    guard.record(lower)

    const t = path.join(r, 'tmpfs')
    mountTmpfs(t, '8m')
    const o: Overlay = { lowers: [lower], upper: path.join(t, 'upper'), work: path.join(t, 'work'), mnt: path.join(r, 'mnt') }
    for (const d of [o.upper, o.work, o.mnt]) fs.mkdirSync(d)
    const keep = randomFillSync(Buffer.alloc(MiB))
    put(path.join(o.upper, 'keep'), keep)
    put(path.join(o.upper, 'u', 'file'), 'upper file\n')
    spawnSync('mknod', [path.join(o.upper, 'gone'), 'c', '0', '0'])
    try {
      await mountFuse(o)
      const pid = daemonPid(o.mnt)
      const m = (p: string): string => path.join(o.mnt, p)
      const upperBefore = snapshotUpper(o.upper)
      const mergedBefore = snapshotMerged(o.mnt)
      const free0 = freeBytes(t)

      // A copy-up that cannot fit (12 MiB into 8): by open for writing, by truncate.
      expect(codeOf(() => fs.openSync(m('huge'), 'a'))).toBe('ENOSPC')
      expect(codeOf(() => fs.truncateSync(m('huge'), 100))).toBe('ENOSPC')
      expect(fs.existsSync(path.join(o.upper, 'huge'))).toBe(false)
      expect(workEntries(o)).toEqual([])
      expect(Math.abs(freeBytes(t) - free0)).toBeLessThanOrEqual(64 * 1024) // no space held by a half copy
      expect(sha(fs.readFileSync(m('huge')))).toBe(sha(huge))

      // Fill the upper through the mount: writes end with ENOSPC.
      const fd = fs.openSync(m('filler'), 'w')
      const chunk = Buffer.alloc(256 * 1024, 0x5a)
      let written = 0
      let fillCode = 'ok'
      for (let i = 0; i < 64 && fillCode === 'ok'; i++) {
        fillCode = codeOf(() => { written += fs.writeSync(fd, chunk) })
      }
      fs.closeSync(fd)
      expect(fillCode).toBe('ENOSPC')
      expect(written).toBeGreaterThan(4 * MiB)
      expect(fs.statSync(m('filler')).size).toBe(written)

      // Full: a copy-up that would fit otherwise fails too, and leaves nothing behind.
      expect(codeOf(() => fs.appendFileSync(m('med'), 'appended\n'))).toBe('ENOSPC')
      expect(fs.existsSync(path.join(o.upper, 'med'))).toBe(false)
      expect(workEntries(o)).toEqual([])
      expect(sha(fs.readFileSync(m('med')))).toBe(sha(med))
      // Growing an upper file fails; what it held stays.
      const grow = codeOf(() => fs.appendFileSync(m('u/file'), Buffer.alloc(512 * 1024, 0x41)))
      expect(grow).toBe('ENOSPC')
      expect(fs.readFileSync(m('u/file')).subarray(0, 11).toString()).toBe('upper file\n')
      fs.truncateSync(m('u/file'), 11)

      // Nothing that was there is damaged (the filler is the test's own).
      expect(diff(upperBefore, without(snapshotUpper(o.upper), 'filler'), ['before', 'after'])).toEqual([])
      expect(diff(mergedBefore, without(snapshotMerged(o.mnt), 'filler'), ['before', 'after'])).toEqual([])
      expect(alive(pid)).toBe(true)

      // Free the space through the mount: everything works again.
      fs.unlinkSync(m('filler'))
      expect(freeBytes(t)).toBeGreaterThan(free0 - 64 * 1024)
      fs.appendFileSync(m('med'), 'appended\n')
      expect(sha(fs.readFileSync(m('med')))).toBe(sha(Buffer.concat([med, Buffer.from('appended\n')])))
      expect(sha(fs.readFileSync(path.join(o.upper, 'med')))).toBe(sha(Buffer.concat([med, Buffer.from('appended\n')])))
      fs.writeFileSync(m('new'), Buffer.alloc(MiB, 1))
      expect(fs.statSync(m('new')).size).toBe(MiB)
      fs.mkdirSync(m('dir/sub'))
      fs.writeFileSync(m('dir/sub/f'), 'f\n')
      fs.unlinkSync(m('small'))
      expect(fs.existsSync(m('small'))).toBe(false)
      // The too-big copy-up still fails cleanly.
      expect(codeOf(() => fs.openSync(m('huge'), 'r+'))).toBe('ENOSPC')
      expect(workEntries(o)).toEqual([])
      // A chmod needs no room for the data (metadata-only copy-up, metacopy=on): it works, the data stays below.
      fs.chmodSync(m('huge'), 0o600)
      expect(fs.statSync(path.join(o.upper, 'huge')).blocks * 512).toBeLessThan(64 * 1024)
      expect(sha(fs.readFileSync(m('huge')))).toBe(sha(huge))
      // Its data copy-up still does not fit, and leaves the metadata-only copy as it was.
      expect(codeOf(() => fs.openSync(m('huge'), 'r+'))).toBe('ENOSPC')
      expect(workEntries(o)).toEqual([])
      expect(fs.statSync(m('huge')).mode & 0o777).toBe(0o600)
      expect(sha(fs.readFileSync(m('huge')))).toBe(sha(huge))
      expect(sha(fs.readFileSync(path.join(o.upper, 'keep')))).toBe(sha(keep))
      expect(fs.readFileSync(m('dir/inner'), 'utf8')).toBe('inner\n')
      expect(fs.existsSync(m('gone'))).toBe(false)
      expect(alive(pid)).toBe(true)
      await unmount(o.mnt)
      expect(workEntries(o)).toEqual([])
    } finally {
      if (isMounted(o.mnt)) await unmount(o.mnt)
      unmountTmpfs(t)
    }
  })

  it('out of file descriptors: opens fail with EMFILE-like errors, the daemon survives and recovers', async () => {
    const r = root('emfile')
    const lower = path.join(r, 'lower')
    for (let i = 0; i < 200; i++) put(path.join(lower, 'many', `f${i}`), `file ${i}\n`)
    put(path.join(lower, 'cu', 'a'), 'copy me up\n')
    put(path.join(lower, 'cu', 'b'), 'copy me up too\n')
    guard.record(lower)
    const o: Overlay = { lowers: [lower], upper: path.join(r, 'upper'), work: path.join(r, 'work'), mnt: path.join(r, 'mnt') }
    for (const d of [o.upper, o.work, o.mnt]) fs.mkdirSync(d)
    await mountFuse(o)
    const m = (p: string): string => path.join(o.mnt, p)
    const pid = daemonPid(o.mnt)
    fs.readdirSync(m('many')) // warm up: the daemon's steady-state descriptors are open
    await sleep(200)
    const base = fdCount(pid)
    const limit = base + 24
    const pr = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`], { encoding: 'utf8' })
    expect(pr.status, pr.stderr).toBe(0)

    const held: number[] = []
    let failure = 'ok'
    try {
      for (let i = 0; i < 200; i++) {
        failure = codeOf(() => held.push(fs.openSync(m(`many/f${i}`), 'r')))
        if (failure !== 'ok') break
      }
      console.log(`daemon fd limit ${limit} (${base} in use at the start): ${held.length} opens through the mount succeeded, then ${failure}`)
      expect(['EMFILE', 'ENFILE', 'EIO', 'ENOMEM']).toContain(failure)
      expect(held.length).toBeGreaterThanOrEqual(10)
      expect(alive(pid)).toBe(true)
      // Calls that need no new descriptor in the daemon still work; a copy-up fails cleanly.
      expect(fs.statSync(m('many/f199')).size).toBe('file 199\n'.length)
      const buf = Buffer.alloc(16)
      expect(fs.readSync(held[0]!, buf, 0, 16, 0)).toBe('file 0\n'.length)
      const cu = codeOf(() => fs.appendFileSync(m('cu/a'), 'appended\n'))
      console.log(`copy-up while out of descriptors: ${cu}`)
      expect(['EMFILE', 'ENFILE', 'EIO', 'ENOMEM']).toContain(cu)
      expect(workEntries(o)).toEqual([])
      expect(fs.readFileSync(path.join(lower, 'cu', 'a'), 'utf8')).toBe('copy me up\n')
    } finally {
      for (const fd of held.splice(0)) fs.closeSync(fd)
    }
    // Descriptors back: the mount works again and the daemon holds no leaked descriptors.
    for (let i = 0; i < 50 && fdCount(pid) > base + 2; i++) await sleep(50)
    expect(fdCount(pid)).toBeLessThanOrEqual(base + 2)
    expect(alive(pid)).toBe(true)
    for (let i = 0; i < 200; i += 7) expect(fs.readFileSync(m(`many/f${i}`), 'utf8')).toBe(`file ${i}\n`)
    expect(fs.readdirSync(m('many')).length).toBe(200)
    fs.appendFileSync(m('cu/a'), 'appended\n')
    expect(fs.readFileSync(m('cu/a'), 'utf8')).toBe('copy me up\nappended\n')
    fs.appendFileSync(m('cu/b'), 'appended\n')
    expect(fs.readFileSync(path.join(o.upper, 'cu', 'b'), 'utf8')).toBe('copy me up too\nappended\n')
    fs.writeFileSync(m('new'), 'new\n')
    expect(workEntries(o)).toEqual([])
    await unmount(o.mnt)
  })

  describe('layer directories removed or renamed under a live mount', () => {
    const CLEAR = ['ENOENT', 'ESTALE', 'EIO']
    let o: Overlay
    let pid: number
    const m = (p: string): string => path.join(o.mnt, p)

    /** What still works, whatever happened to the other layer. */
    const restWorks = (tag: string): void => {
      expect(alive(pid)).toBe(true)
      expect(fs.readFileSync(m('top/a'), 'utf8')).toBe('top a\n')
      expect(fs.readdirSync(m('top')).sort()).toEqual(['a', 'b'])
      expect(fs.readFileSync(m('u/file'), 'utf8')).toBe('upper file\n')
      fs.writeFileSync(m(`new-${tag}`), `${tag}\n`)
      expect(fs.readFileSync(m(`new-${tag}`), 'utf8')).toBe(`${tag}\n`)
      fs.appendFileSync(m('top/b'), `${tag}\n`) // a copy-up (the first time) from the top lower
    }

    it('setup', async () => {
      const r = root('layers')
      o = { lowers: [path.join(r, 'l0'), path.join(r, 'l1')], upper: path.join(r, 'upper'), work: path.join(r, 'work'), mnt: path.join(r, 'mnt') }
      put(path.join(o.lowers[0]!, 'top', 'a'), 'top a\n')
      put(path.join(o.lowers[0]!, 'top', 'b'), 'top b\n')
      put(path.join(o.lowers[0]!, 'shared', 'x'), 'shared x\n')
      put(path.join(o.lowers[0]!, 'doomed', 'd1'), 'd1\n')
      put(path.join(o.lowers[0]!, 'doomed', 'd2'), 'd2\n')
      put(path.join(o.lowers[1]!, 'bot', 'b'), 'bottom b\n')
      put(path.join(o.lowers[1]!, 'bfile'), 'bottom file\n')
      put(path.join(o.lowers[1]!, 'shared', 'y'), 'shared y\n')
      put(path.join(o.upper, 'u', 'file'), 'upper file\n')
      for (const d of [o.work, o.mnt]) fs.mkdirSync(d)
      await mountFuse(o)
      pid = daemonPid(o.mnt)
      expect(fs.readdirSync(o.mnt).sort()).toEqual(['bfile', 'bot', 'doomed', 'shared', 'top', 'u'])
      expect(fs.readdirSync(m('shared')).sort()).toEqual(['x', 'y'])
    })

    it('the bottom lower layer renamed away: the mount keeps serving it, as the kernel does (it holds its layers open)', async () => {
      fs.renameSync(o.lowers[1]!, o.lowers[1]! + '.moved')
      try {
        await sleep(1100) // past the kernel's entry timeout
        expect(fs.readFileSync(m('bot/b'), 'utf8')).toBe('bottom b\n')
        expect(fs.readFileSync(m('bfile'), 'utf8')).toBe('bottom file\n')
        expect(fs.readdirSync(m('shared')).sort()).toEqual(['x', 'y'])
        restWorks('l1-moved')
        expect(workEntries(o)).toEqual([])
      } finally {
        fs.renameSync(o.lowers[1]! + '.moved', o.lowers[1]!)
      }
      await sleep(1100)
      expect(fs.readFileSync(m('bot/b'), 'utf8')).toBe('bottom b\n')
      expect(fs.readdirSync(m('shared')).sort()).toEqual(['x', 'y'])
    })

    it('a directory removed from a lower layer while a file in it is open: clear errors, the open file still reads', async () => {
      const fd = fs.openSync(m('doomed/d1'), 'r')
      fs.rmSync(path.join(o.lowers[0]!, 'doomed'), { recursive: true })
      await sleep(1100)
      const buf = Buffer.alloc(16)
      const n = fs.readSync(fd, buf, 0, 16, 0) // the daemon's descriptor outlives the name
      expect(buf.subarray(0, n).toString()).toBe('d1\n')
      fs.closeSync(fd)
      const calls = {
        'stat doomed/d2': codeOf(() => fs.statSync(m('doomed/d2'))),
        'read doomed/d2': codeOf(() => fs.readFileSync(m('doomed/d2'))),
        'create doomed/new': codeOf(() => fs.writeFileSync(m('doomed/new'), 'x')),
      }
      const dir = { 'stat doomed': codeOf(() => fs.statSync(m('doomed'))), 'readdir doomed': codeOf(() => fs.readdirSync(m('doomed'))) }
      console.log('lower directory removed:', JSON.stringify({ ...calls, ...dir }),
        dir['readdir doomed'] === 'ok' ? `(readdir doomed lists ${JSON.stringify(fs.readdirSync(m('doomed')))})` : '')
      for (const [call, code] of Object.entries(calls)) expect(CLEAR, call).toContain(code)
      for (const [call, code] of Object.entries(dir)) expect(['ok', ...CLEAR], call).toContain(code)
      restWorks('doomed')
      expect(workEntries(o)).toEqual([])
    })

    it('the upper layer renamed away: the mount keeps serving it and writes land in it, as the kernel does', async () => {
      fs.renameSync(o.upper, o.upper + '.moved')
      try {
        await sleep(1100)
        expect(fs.statSync(o.mnt).isDirectory()).toBe(true)
        expect(fs.readFileSync(m('top/a'), 'utf8')).toBe('top a\n')
        expect(fs.readFileSync(m('bot/b'), 'utf8')).toBe('bottom b\n')
        expect(fs.readFileSync(m('u/file'), 'utf8')).toBe('upper file\n')
        fs.writeFileSync(m('while-moved'), 'moved\n')
        expect(fs.readFileSync(path.join(o.upper + '.moved', 'while-moved'), 'utf8')).toBe('moved\n')
        expect(alive(pid)).toBe(true)
      } finally {
        fs.renameSync(o.upper + '.moved', o.upper)
      }
      await sleep(1100)
      fs.writeFileSync(m('after-upper'), 'back\n')
      expect(fs.readFileSync(path.join(o.upper, 'after-upper'), 'utf8')).toBe('back\n')
      fs.appendFileSync(m('top/a'), 'appended\n')
      expect(fs.readFileSync(m('top/a'), 'utf8')).toBe('top a\nappended\n')
      expect(fs.readFileSync(path.join(o.lowers[0]!, 'top', 'a'), 'utf8')).toBe('top a\n')
    })

    it('<workdir>/work removed: copy-ups fail with a clear error, reads work; recreated, copy-ups work', async () => {
      fs.rmSync(path.join(o.work, 'work'), { recursive: true })
      try {
        const cu = codeOf(() => fs.appendFileSync(m('shared/x'), 'x\n'))
        console.log('workdir/work removed: copy-up gives', cu)
        expect(CLEAR).toContain(cu)
        expect(fs.readFileSync(m('shared/x'), 'utf8')).toBe('shared x\n')
        expect(fs.existsSync(path.join(o.upper, 'shared', 'x'))).toBe(false)
        expect(alive(pid)).toBe(true)
      } finally {
        fs.mkdirSync(path.join(o.work, 'work'), { recursive: true, mode: 0o700 })
      }
      fs.appendFileSync(m('shared/x'), 'appended\n')
      expect(fs.readFileSync(m('shared/x'), 'utf8')).toBe('shared x\nappended\n')
      expect(alive(pid)).toBe(true)
      await unmount(o.mnt)
    })
  })

  it('EIO from a lower layer (lookup, read, listing, copy-up): EIO on those calls only, nothing left behind, the daemon survives', async () => {
    const r = root('eio')
    const eioMnt = path.join(r, 'eiofs')
    fs.mkdirSync(eioMnt)
    const server = await startEioFs(eioMnt)
    try {
      const o: Overlay = { lowers: [eioMnt, path.join(r, 'l1')], upper: path.join(r, 'upper'), work: path.join(r, 'work'), mnt: path.join(r, 'mnt') }
      put(path.join(o.lowers[1]!, 'below'), 'below\n')
      put(path.join(o.lowers[1]!, 'gooddir', 'g'), 'g\n')
      for (const d of [o.upper, o.work, o.mnt]) fs.mkdirSync(d)
      await mountFuse(o)
      const pid = daemonPid(o.mnt)
      const m = (p: string): string => path.join(o.mnt, p)
      try {
        expect(fs.readdirSync(o.mnt).sort()).toEqual(['below', 'eio-dir', 'eio-read', 'eio-stat', 'good', 'gooddir'])
        expect(fs.readFileSync(m('good'), 'utf8')).toBe('good\n')
        expect(codeOf(() => fs.statSync(m('eio-stat')))).toBe('EIO')
        expect(codeOf(() => fs.readFileSync(m('eio-read')))).toBe('EIO')
        expect(codeOf(() => fs.readdirSync(m('eio-dir')))).toBe('EIO')
        // A copy-up whose data cannot be read: EIO, and nothing of it in the upper layer or the work dir.
        expect(codeOf(() => fs.appendFileSync(m('eio-read'), 'more'))).toBe('EIO')
        expect(fs.readdirSync(o.upper)).toEqual([])
        expect(workEntries(o)).toEqual([])
        // The rest of the mount works: the other layer, a merged directory, new files, copy-ups of readable files.
        expect(alive(pid)).toBe(true)
        expect(fs.readFileSync(m('below'), 'utf8')).toBe('below\n')
        expect(fs.readdirSync(m('gooddir')).sort()).toEqual(['f', 'g'])
        fs.writeFileSync(m('new'), 'new\n')
        fs.appendFileSync(m('good'), 'more\n')
        expect(fs.readFileSync(m('good'), 'utf8')).toBe('good\nmore\n')
        expect(fs.readFileSync(path.join(o.upper, 'good'), 'utf8')).toBe('good\nmore\n')
        // The failing names fail the same way again (nothing cached as missing or broken).
        expect(codeOf(() => fs.statSync(m('eio-stat')))).toBe('EIO')
        expect(codeOf(() => fs.readFileSync(m('eio-read')))).toBe('EIO')
        expect(alive(pid)).toBe(true)
      } finally {
        await unmount(o.mnt)
      }
      expect(workEntries(o)).toEqual([])
    } finally {
      await server.stop()
    }
  }, 120_000)

  it('lower layers were never written (fingerprints of the full-disk and fd tests)', () => {
    expect(guard.roots.length).toBe(2)
    expect(guard.check()).toEqual([])
  })
})
