// Crashes and restarts (issue 6): the daemon is killed with SIGKILL at seeded random
// moments while an op loop (a child process, harness/crash-worker.cjs) copies up big
// files, renames, makes and removes directories, whites out lower files, creates over
// whiteouts and writes with fsync. After each kill: `fusermount -u -z`, a fresh mount
// over the same upper and work dirs, and the merged tree must be one a correct
// filesystem could show: the state after the ops that completed, or (for the op in
// flight) the state after it or one of its allowed in-between states. Only the daemon
// dies, never the kernel, so every completed op must be there, fsync'ed or not; the
// report says which were fsync'ed. Big files are checked in full in the upper layer
// (no partial copy-up), nothing named #ovlfs* may be visible, and <workdir>/work must
// be empty after the fresh mount. Between a kill and the next mount the test puts the
// big files back to their lower originals by removing their copies (or whiteouts) from
// the upper dir (an offline edit, as one may make to an unmounted overlay), so that every
// cycle has big copy-ups to interrupt; those copies are checked in full before.
//
// Several arenas (each its own upper, work and mount over shared lower layers) run at
// once to get many kills per minute. Environment:
//   OVLFS_CRASH_KILLS   kills in all (default 200)
//   OVLFS_CRASH_ARENAS  mounts killed in parallel (default 4)
//   OVLFS_CRASH_SEED    replay a run's ops and delays (timing still varies)
//
// Also here: a stale mount after a crash is reported with the command that clears it,
// and fsync/fdatasync reach the upper filesystem unless `volatile` (strace of the daemon).
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  type BigContent, type CrashOp, type Model, OpGenerator, applyOp, compare, describeOp, fsynced,
  intermediates, observe, parentOf, showNode,
} from './harness/crash-model'
import { alive, daemonPid, lazyUnmount, sleep, waitGone } from './harness/daemon'
import { fuseCommand, isMounted, mountFuse, removeTree, tempDir, unmount, unmountAll, type Overlay } from './harness/mounts'
import { mulberry32 } from './harness/random'
import { LayerGuard } from './harness/treehash'

const KILLS = Number(process.env.OVLFS_CRASH_KILLS ?? 200)
const ARENAS = Math.max(1, Number(process.env.OVLFS_CRASH_ARENAS ?? 4))
const SEED = process.env.OVLFS_CRASH_SEED !== undefined ? Number(process.env.OVLFS_CRASH_SEED) : (Date.now() % 1_000_000_007)
const MiB = 1 << 20
const BIGS = 6
const OPS_PER_CYCLE = 600
const WORKER = path.join(__dirname, 'harness', 'crash-worker.cjs')
const DEAD = ['ENOTCONN', 'ECONNABORTED']

const guard = new LayerGuard()
const roots: string[] = []
const tmpfsMounts: string[] = []
afterAll(async () => {
  await unmountAll()
  for (const t of tmpfsMounts.splice(0)) {
    spawnSync('umount', [t], { stdio: 'ignore' })
    if (isMounted(t)) spawnSync('umount', ['-l', t], { stdio: 'ignore' })
  }
  for (const r of roots.splice(0)) { try { removeTree(r) } catch { /* still mounted: unmountAll reports */ } }
})

// ---- the shared lower layers ------------------------------------------------------

interface Lowers { top: string, bottom: string, bigs: Buffer[], initial: Model }

/** lower0 (top) and lower1 (bottom): 6 big files of 8–64 MiB, small files, merged dirs. */
function buildLowers (root: string, rand: () => number): Lowers {
  const top = path.join(root, 'lower0')
  const bottom = path.join(root, 'lower1')
  const initial: Model = new Map()
  const put = (layer: string, rel: string, data: string | Buffer): void => {
    fs.mkdirSync(path.dirname(path.join(layer, rel)), { recursive: true })
    fs.writeFileSync(path.join(layer, rel), data)
  }
  const small = (tag: string): string => (`${tag} lower original` + '.'.repeat(64)).slice(0, 63) + '\n'
  const pool = randomFillSync(Buffer.allocUnsafe(96 * MiB))
  const bigs: Buffer[] = []
  initial.set('big', { t: 'dir', pure: false })
  for (let i = 0; i < BIGS; i++) {
    const size = (8 + Math.floor(rand() * 57)) * MiB - Math.floor(rand() * 4096)
    const off = Math.floor(rand() * (pool.length - size))
    bigs.push(pool.subarray(off, off + size))
    put(bottom, `big/b${i}`, bigs[i]!)
    initial.set(`big/b${i}`, { t: 'big', i, tail: '' })
  }
  for (const d of ['d', 'm', 'm/sub', 'e0', 'e1', 'e2']) initial.set(d, { t: 'dir', pure: false })
  const files: Array<[string, string]> = [
    ...Array.from({ length: 6 }, (_v, i) => [bottom, `d/l${i}`] as [string, string]),
    [bottom, 'e0/x'], [bottom, 'e1/x'], [bottom, 'e2/x'], [bottom, 'm/a'], [bottom, 'm/b'],
    ...Array.from({ length: 3 }, (_v, i) => [top, `d/t${i}`] as [string, string]),
    [top, 'm/c'], [top, 'm/sub/y'], [top, 't'],
  ]
  for (const [layer, rel] of files) {
    put(layer, rel, small(rel))
    initial.set(rel, { t: 'file', data: small(rel) })
  }
  execSync('sync')
  return { top, bottom, bigs, initial }
}

function execSync (cmd: string): void { spawnSync('sh', ['-c', cmd], { stdio: 'ignore' }) }

function bigContent (bigs: Buffer[]): BigContent {
  return {
    length: (i, tail) => bigs[i]!.length + Buffer.byteLength(tail),
    slice: (i, tail, start, end) => {
      const base = bigs[i]!
      const t = Buffer.from(tail)
      const parts: Buffer[] = []
      if (start < base.length) parts.push(base.subarray(start, Math.min(end, base.length)))
      if (end > base.length) parts.push(t.subarray(Math.max(0, start - base.length), end - base.length))
      return Buffer.concat(parts)
    },
  }
}

// ---- an arena: one upper/work/mount, its daemon and its op-loop worker -----------------

interface Arena {
  id: number
  o: Overlay
  model: Model
  gen: OpGenerator
  worker: ChildProcess
  pid: number
  cycles: number
  /** Copy-up speed estimate of this arena, refined as copy-ups complete. */
  msPerMiB: number
}

/** The upper layer's own starting content (so some directories are merged over three layers). */
function seedUpper (upper: string, model: Model): void {
  const small = (tag: string): string => (`${tag} upper original` + '.'.repeat(64)).slice(0, 63) + '\n'
  for (const rel of ['d/u0', 'm/u']) {
    fs.mkdirSync(path.dirname(path.join(upper, rel)), { recursive: true })
    fs.writeFileSync(path.join(upper, rel), small(rel))
    model.set(rel, { t: 'file', data: small(rel) })
  }
}

function newOverlay (lowers: Lowers, dir: string): Overlay {
  const o: Overlay = { lowers: [lowers.top, lowers.bottom], upper: path.join(dir, 'upper'), work: path.join(dir, 'work'), mnt: path.join(dir, 'mnt') }
  for (const d of [o.upper, o.work, o.mnt]) fs.mkdirSync(d, { recursive: true })
  return o
}

function startWorker (): ChildProcess {
  const w = fork(WORKER, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  w.on('error', () => {})
  return w
}

interface WorkerDone {
  completed: number
  error: { code: string | null, message: string } | null
  durations: number[]
  /** Whether the worker's killer thread sent the SIGKILL, and how long after the first op started. */
  killed: boolean
  killDelay: number
}

/** Run the ops in the worker, which kills daemon `pid` `delay` ms after they start; resolves with its report. */
function runOps (w: ChildProcess, mnt: string, ops: CrashOp[], pid: number, delay: number): Promise<WorkerDone> {
  return new Promise<WorkerDone>((resolve, reject) => {
    const onMsg = (m: { type: string } & WorkerDone): void => {
      if (m.type !== 'done') return
      w.off('message', onMsg); w.off('exit', onExit)
      resolve(m)
    }
    const onExit = (): void => reject(new Error('the op worker exited'))
    w.on('message', onMsg)
    w.on('exit', onExit)
    w.send({ type: 'run', mnt, ops, pid, delay })
  })
}

function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms)
    p.then((v) => { clearTimeout(t); resolve(v) }, (e: unknown) => { clearTimeout(t); reject(e as Error) })
  })
}

/** What the upper layer holds for big/bI, read in full before the reset. */
type UpperBig = { kind: 'lower' } | { kind: 'whiteout' } | { kind: 'file', tail: string } | { kind: 'bad', what: string }

function classifyUpperBig (upper: string, i: number, base: Buffer): UpperBig {
  const p = path.join(upper, 'big', `b${i}`)
  let st: fs.Stats
  try { st = fs.lstatSync(p) } catch { return { kind: 'lower' } }
  if (st.isCharacterDevice() && st.rdev === 0) return { kind: 'whiteout' }
  if (!st.isFile()) return { kind: 'bad', what: `not a file (mode ${st.mode.toString(8)})` }
  // A metadata-only copy (metacopy=on: a rename first copies the lower file up in place, as metadata only,
  // then renames it; a kill in between leaves it here): no data of its own, it reads as the lower original.
  if (hasMetacopyXattr(p)) return st.size === base.length ? { kind: 'lower' } : { kind: 'bad', what: `metadata-only copy of ${st.size} bytes, not ${base.length}` }
  if (st.size < base.length) return { kind: 'bad', what: `partial copy-up: ${st.size} of ${base.length} bytes` }
  if (st.size > base.length + 65536) return { kind: 'bad', what: `${st.size} bytes, more than the original + appends` }
  const data = fs.readFileSync(p)
  if (!data.subarray(0, base.length).equals(base)) {
    let at = 0
    while (at < base.length && data[at] === base[at]) at++
    return { kind: 'bad', what: `copy-up differs from the lower original at byte ${at} of ${base.length}` }
  }
  return { kind: 'file', tail: data.subarray(base.length).toString('latin1') }
}

/** Whether the upper file carries the overlay metacopy marker (trusted.* as root, user.* rootless). */
function hasMetacopyXattr (p: string): boolean {
  return ['trusted.overlay.metacopy', 'user.overlay.metacopy'].some(name =>
    spawnSync('getfattr', ['--absolute-names', '--only-values', '-n', name, p], { encoding: 'utf8' }).status === 0)
}

function showUpperBig (u: UpperBig): string {
  return u.kind === 'file' ? `copy + ${JSON.stringify(u.tail)}` : u.kind === 'bad' ? `BAD: ${u.what}` : u.kind
}

/** Whether what upper held for big/bI is what model state `m` says. */
function upperBigAgrees (m: Model, i: number, u: UpperBig): boolean {
  const e = m.get(`big/b${i}`)
  if (e === undefined) return u.kind === 'whiteout'
  if (e.t !== 'big') return false
  if (e.tail === '') return u.kind === 'lower' || (u.kind === 'file' && u.tail === '')
  return u.kind === 'file' && u.tail === e.tail
}

/** The model after the offline reset: every big/bI back to its lower original. */
function resetBigs (m: Model): Model {
  const n = new Map(m)
  for (let i = 0; i < BIGS; i++) n.set(`big/b${i}`, { t: 'big', i, tail: '' })
  return n
}

/** Relative paths of the entries under `root` whose name `bad` picks. */
function walkNames (root: string, bad: (name: string) => boolean): string[] {
  const found: string[] = []
  const visit = (rel: string): void => {
    for (const d of fs.readdirSync(rel === '' ? root : path.join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`
      if (bad(d.name)) found.push(r)
      if (d.isDirectory()) visit(r)
    }
  }
  visit('')
  return found
}

// ---- the kill loop ---------------------------------------------------------------------

interface Stats {
  kills: number
  inFlight: Map<string, number>
  duringCopyUp: number
  workLeftovers: number
  partialCopies: number
  idle: number
  ms: { delay: number, afterKill: number, remount: number, verify: number, killDelay: number }
}

function opLabel (before: Model, op: CrashOp): string {
  const src = op.op === 'append' ? op.path : op.op === 'rename' ? op.from : null
  const e = src === null ? undefined : before.get(src)
  if (src !== null && e?.t === 'big' && e.tail === '' && parentOf(src) === 'big') return `${op.op} of a big lower file (copy-up)`
  if (op.op === 'create') return 'create + write + fsync'
  if (op.op === 'write') return 'write + fsync'
  return op.op
}

/** For each path in the diff lines: the last completed op on it, and whether its fsync had returned. */
function lastOpsOn (lines: string[], ops: CrashOp[], completed: number): string[] {
  const out: string[] = []
  for (const p of new Set(lines.map(l => l.split(':')[0]!))) {
    for (let k = completed - 1; k >= 0; k--) {
      const op = ops[k]!
      const touches = op.op === 'rename' ? op.from === p || op.to === p : op.path === p
      if (touches) { out.push(`  ${p}: last completed op on it: ${k + 1}. ${describeOp(op)}${fsynced(op) ? ' (its fsync had returned)' : ''}`); break }
    }
  }
  return out
}

describe('the crash model', () => {
  // CI at c998b52, seed 189966016: b4 (20,971,497 bytes) + a 21-byte tail, the kill during the
  // append of "+12230\n" left "+1" of it: 20,971,497 + 21 + 2 is a multiple of 4096.
  it('allows an append to stop at a page boundary it crosses, and nowhere else', () => {
    const before: Model = new Map([['big/b4', { t: 'big', i: 4, tail: '+12191\n+12192\n+12221\n' }]])
    const op: CrashOp = { op: 'append', path: 'big/b4', data: '+12230\n', fsync: true }
    const tails = (size: number): string[] => intermediates(before, op, { length: (_i, tail) => size + Buffer.byteLength(tail) }).map(m => {
      const e = m.get('big/b4')
      return e?.t === 'big' ? e.tail : '?'
    })
    expect(tails(20_971_497)).toEqual(['+12191\n+12192\n+12221\n+1'])
    expect(tails(20_971_497 - 2)).toEqual(['+12191\n+12192\n+12221\n+122'])
    expect(tails(20_971_520)).toEqual([]) // the append starts at 21 past a boundary and ends at 28
    expect(tails(20_971_520 - 21)).toEqual([]) // it starts on a boundary: nothing before it to keep
  })
})

describe('crashes and restarts', () => {
  let lowers: Lowers
  let base: string

  it('setup: lower layers (fingerprinted; checked by the last test)', () => {
    base = tempDir('ovlfs-test-crash-')
    roots.push(base)
    lowers = buildLowers(path.join(base, 'layers'), mulberry32(SEED))
    guard.record(lowers.top, lowers.bottom)
  }, 120_000)

  it(`survives ${KILLS} SIGKILLs of the daemon at random moments`, async () => {
    const big = bigContent(lowers.bigs)
    const stats: Stats = { kills: 0, inFlight: new Map(), duringCopyUp: 0, workLeftovers: 0, partialCopies: 0, idle: 0, ms: { delay: 0, afterKill: 0, remount: 0, verify: 0, killDelay: 0 } }
    const t0 = performance.now()
    console.log(`crash test: seed=${SEED} kills=${KILLS} arenas=${ARENAS} (replay: OVLFS_CRASH_SEED=${SEED})`)

    // Arena 0 has its upper on the disk (ext4 here), the others on a tmpfs: copy-ups and fsyncs there
    // do not wait for the disk, so more kills fit in the time (and both kinds of upper are covered).
    const tmpfs = path.join(base, 'tmpfs')
    fs.mkdirSync(tmpfs)
    const mt = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4g,mode=0755', 'tmpfs', tmpfs], { encoding: 'utf8' })
    expect(mt.status, mt.stderr).toBe(0)
    tmpfsMounts.push(tmpfs)
    const arenas: Arena[] = []
    for (let id = 0; id < ARENAS; id++) {
      const o = newOverlay(lowers, path.join(id === 0 ? base : tmpfs, `arena${id}`))
      const model = new Map(lowers.initial)
      seedUpper(o.upper, model)
      const gen = new OpGenerator(mulberry32((SEED + 1) * 7919 + id), { closedDirs: ['big'], maxMovedBigs: 2 }, model)
      arenas.push({ id, o, model, gen, worker: startWorker(), pid: 0, cycles: 0, msPerMiB: 8 })
    }
    await Promise.all(arenas.map(async (a) => { await mountFuse(a.o); a.pid = daemonPid(a.o.mnt) }))

    let planned = 0
    let failure: Error | null = null

    const cycle = async (a: Arena, r: () => number): Promise<void> => {
      const cycleNo = a.cycles++
      // Plan: about 40% of the cycles start with an append to a big lower file and aim the kill into its copy-up.
      const bigsHere = [...a.model.entries()].filter(([p, e]) => e.t === 'big' && parentOf(p) === 'big' && e.tail === '').map(([p]) => p)
      const targeted = bigsHere.length > 0 && r() < 0.4
      const ops: CrashOp[] = []
      const states: Model[] = [a.model]
      const add = (op: CrashOp): void => { ops.push(op); states.push(applyOp(states[states.length - 1]!, op)) }
      if (targeted) add(a.gen.appendTo(bigsHere[Math.floor(r() * bigsHere.length)]!))
      while (ops.length < OPS_PER_CYCLE) add(a.gen.next(states[states.length - 1]!))
      let delay: number
      if (targeted) {
        const first = ops[0] as Extract<CrashOp, { op: 'append' }>
        const e = a.model.get(first.path) as { i: number }
        delay = r() * 1.3 * a.msPerMiB * lowers.bigs[e.i]!.length / MiB
      } else {
        delay = r() * 300
      }

      // Run, kill, wait for the in-flight op to fail and the daemon to be gone.
      const tRun = performance.now()
      const done = await withTimeout(runOps(a.worker, a.o.mnt, ops, a.pid, delay), delay + 60_000, `arena ${a.id}: the ops, the kill and the op in flight to fail`)
      const killedAt = performance.now()
      const inFlight = done.error !== null ? done.completed : null
      const actualDelay = Math.round(done.killDelay)
      const where = (k: number): string => `arena ${a.id} cycle ${cycleNo} (seed ${SEED}): op ${k + 1} (${describeOp(ops[k]!)})`
      const history = (k: number): string => `ops before it:\n${ops.slice(Math.max(0, k - 15), k).map((o, j, arr) => `  ${k - arr.length + j + 1}. ${describeOp(o)}`).join('\n')}`
      if (!done.killed) {
        if (done.error !== null && !DEAD.includes(done.error.code ?? '')) {
          throw new Error(`${where(done.completed)} failed before the kill: ${done.error.code} ${done.error.message}\n${history(done.completed)}`)
        }
        throw new Error(`${where(done.completed)}: the daemon died before it was killed ` +
          `(${done.error?.code ?? 'all ops done'}; daemon ${alive(a.pid) ? 'alive' : 'gone'}; log: ${a.o.mnt}/../fuse-mnt.log)\n${history(done.completed)}`)
      }
      await waitGone(a.pid)
      if (done.error !== null && !DEAD.includes(done.error.code ?? '')) {
        throw new Error(`${where(done.completed)} failed with ${done.error.code} (${done.error.message}); ` +
          `expected ${DEAD.join('/')} from the killed daemon\n${history(done.completed)}`)
      }
      // Refine the copy-up speed from completed copy-ups.
      for (let k = 0; k < done.completed; k++) {
        const op = ops[k]!
        const before = states[k]!.get(op.op === 'append' ? op.path : '')
        if (op.op === 'append' && before?.t === 'big' && before.tail === '' && parentOf(op.path) === 'big') {
          a.msPerMiB = 0.7 * a.msPerMiB + 0.3 * done.durations[k]! / (lowers.bigs[before.i]!.length / MiB)
        }
      }

      // Offline: leftovers in the workdir (the kill caught an op in the middle), then upper's big files in full.
      const workDir = path.join(a.o.work, 'work')
      const leftovers = fs.existsSync(workDir) ? fs.readdirSync(workDir) : []
      // A big copy caught in the middle: a temporary larger than a small file but shorter than every complete copy could be.
      const partial = leftovers.filter((n) => {
        try {
          const st = fs.lstatSync(path.join(workDir, n))
          return st.isFile() && st.size > 4096 && !lowers.bigs.some(b => b.length === st.size)
        } catch { return false }
      })
      const ups = lowers.bigs.map((b, i) => classifyUpperBig(a.o.upper, i, b))
      // The stale mount goes, and the big copies go back to their lower originals (upper edited offline).
      const tRemount = performance.now()
      await lazyUnmount(a.o.mnt)
      for (let i = 0; i < BIGS; i++) fs.rmSync(path.join(a.o.upper, 'big', `b${i}`), { force: true })
      await mountFuse(a.o)
      a.pid = daemonPid(a.o.mnt)
      const tVerify = performance.now()

      const leftAfterMount = fs.readdirSync(workDir)
      const obs = observe(a.o.mnt)
      const candidates: Array<{ name: string, m: Model }> = [{ name: `after op ${done.completed} (completed ops only)`, m: states[done.completed]! }]
      if (inFlight !== null) {
        for (const m of intermediates(states[inFlight]!, ops[inFlight]!, big)) candidates.push({ name: `op ${inFlight + 1} half done`, m })
        candidates.push({ name: `after op ${inFlight + 1} (the op in flight)`, m: states[inFlight + 1]! })
      }
      const verdicts = candidates.map(c => {
        const lines: string[] = []
        for (let i = 0; i < BIGS; i++) {
          if (!upperBigAgrees(c.m, i, ups[i]!)) {
            const e = c.m.get(`big/b${i}`)
            lines.push(`big/b${i} in upper before the reset: ${showUpperBig(ups[i]!)}, expected ${e === undefined ? 'a whiteout' : showNode(e)}`)
          }
        }
        lines.push(...compare(resetBigs(c.m), obs, big))
        return { ...c, lines }
      })
      const ok = verdicts.find(v => v.lines.length === 0)
      const upperStray = walkNames(a.o.upper, n => n.startsWith('#ovlfs'))
      const problems: string[] = []
      if (ok === undefined) problems.push('the tree after the restart is none of the states a correct filesystem could show')
      if (leftAfterMount.length > 0) problems.push(`<workdir>/work not emptied at mount: ${leftAfterMount.join(' ')}`)
      if (upperStray.length > 0) problems.push(`ovlfs temporaries in the upper layer: ${upperStray.join(' ')}`)
      if (problems.length > 0) {
        const ctx = [
          `seed=${SEED} arena=${a.id} cycle=${cycleNo} kill delay=${actualDelay} ms (planned ${Math.round(delay)} ms${targeted ? ', aimed at a copy-up' : ''})`,
          `op in flight: ${inFlight === null ? 'none (all ops had completed)' : `${inFlight + 1}. ${describeOp(ops[inFlight]!)} -> ${done.error?.code}`}`,
          'last completed ops:',
          ...ops.slice(Math.max(0, done.completed - 12), done.completed).map((o, j, arr) =>
            `  ${done.completed - arr.length + j + 1}. ${describeOp(o)}${fsynced(o) ? ' [fsync returned]' : ''}`),
          `workdir leftovers before the remount: ${leftovers.join(' ') || 'none'}`,
          `upper big files before the reset: ${ups.map((u, i) => `b${i}=${showUpperBig(u)}`).join(', ')}`,
          ...verdicts.map(v => `against the state ${v.name}:\n${v.lines.map(l => '    ' + l).join('\n')}`),
          'completed ops on the differing paths:',
          ...lastOpsOn(verdicts[0]!.lines, ops, done.completed),
        ]
        throw new Error(`${problems.join('; ')}\n${ctx.join('\n')}`)
      }
      a.model = resetBigs(ok!.m)
      // Big files moved out of big/: check them in full, through the mount (with metacopy=on, the default,
      // a moved file is a metadata-only copy in upper with a redirect to its lower data until it is written).
      for (const [p, e] of a.model) {
        if (e.t !== 'big' || parentOf(p) === 'big') continue
        const data = fs.readFileSync(path.join(a.o.mnt, p))
        const want = big.slice(e.i, e.tail, 0, big.length(e.i, e.tail))
        if (!data.equals(want)) throw new Error(`seed=${SEED} arena ${a.id} cycle ${cycleNo}: ${p} in upper (${data.length} bytes) is not ${showNode(e)} (${want.length} bytes)`)
      }

      stats.kills++
      stats.ms.delay += killedAt - tRun
      stats.ms.afterKill += tRemount - killedAt
      stats.ms.killDelay += done.killDelay
      stats.ms.remount += tVerify - tRemount
      stats.ms.verify += performance.now() - tVerify
      if (inFlight === null) stats.idle++
      else {
        const label = opLabel(states[inFlight]!, ops[inFlight]!)
        stats.inFlight.set(label, (stats.inFlight.get(label) ?? 0) + 1)
        if (label.includes('copy-up')) stats.duringCopyUp++
      }
      if (leftovers.length > 0) stats.workLeftovers++
      if (partial.length > 0) stats.partialCopies++
    }

    const loop = async (a: Arena): Promise<void> => {
      const r = mulberry32(SEED * 31 + a.id)
      while (failure === null && planned < KILLS) {
        planned++
        try {
          await cycle(a, r)
        } catch (e) {
          failure ??= e as Error
        }
      }
    }
    await Promise.all(arenas.map(loop))
    for (const a of arenas) { a.worker.send({ type: 'exit' }) }
    const secs = ((performance.now() - t0) / 1000).toFixed(1)
    const ms = (total: number): string => `${Math.round(total / Math.max(1, stats.kills))} ms`
    console.log([
      `crash test: seed=${SEED}: ${stats.kills} kills survived in ${secs} s (${ARENAS} arenas; kills per arena: ` +
        `${arenas.map(a => `${a.cycles}${a.id === 0 ? ' (upper on disk)' : ' (upper on tmpfs)'}`).join(', ')})`,
      `  op in flight at the kill: ${[...stats.inFlight].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k}: ${n}`).join(', ')}, none: ${stats.idle}`,
      `  kills during a big copy-up: ${stats.duringCopyUp}; kills that left work in <workdir>/work: ${stats.workLeftovers} ` +
        `(a big copy-up caught half copied: ${stats.partialCopies}); all cleared at the next mount`,
      `  time per kill: ops ${ms(stats.ms.delay)} (kill delay ${ms(stats.ms.killDelay)}), until the daemon was gone ${ms(stats.ms.afterKill)}, unmount + remount ${ms(stats.ms.remount)}, verify ${ms(stats.ms.verify)}`,
    ].join('\n'))
    for (const a of arenas) if (isMounted(a.o.mnt)) await unmount(a.o.mnt)
    for (const a of arenas) fs.rmSync(path.join(a.o.mnt, '..'), { recursive: true, force: true })
    spawnSync('umount', [tmpfs], { stdio: 'ignore' })
    if (failure !== null) throw failure
    expect(stats.kills).toBe(KILLS)
  }, 1_200_000)

  it('a stale mount after a crash is reported with the command that clears it', async () => {
    const o = newOverlay(lowers, path.join(base, 'stale'))
    await mountFuse(o)
    fs.writeFileSync(path.join(o.mnt, 'kept'), 'written before the crash\n')
    const pid = daemonPid(o.mnt)
    process.kill(pid, 'SIGKILL')
    await waitGone(pid)
    // The first call may get ECONNABORTED (a request cut off by the abort), later ones ENOTCONN.
    let code: string | undefined
    for (let i = 0; i < 3; i++) { try { fs.statSync(o.mnt); code = 'ok' } catch (e) { code = (e as NodeJS.ErrnoException).code } }
    expect(code).toBe('ENOTCONN')
    const [cmd, ...args] = fuseCommand()
    const opts = `lowerdir=${o.lowers.join(':')},upperdir=${o.upper},workdir=${o.work}`
    const r = spawnSync(cmd!, [...args, '-o', opts, o.mnt], { encoding: 'utf8', timeout: 30_000 })
    console.log(`ovlfs over a stale mount: exit ${r.status}, stderr: ${r.stderr.trim()}`)
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`fusermount -uz ${o.mnt}`)
    expect(r.stderr).not.toMatch(/\n\s+at /) // one message, no stack trace
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    // The command it names clears the mount; a fresh mount then shows what was written.
    const clear = /(fusermount -uz \S+)/.exec(r.stderr)![1]!
    expect(spawnSync('sh', ['-c', clear]).status).toBe(0)
    expect(isMounted(o.mnt)).toBe(false)
    await mountFuse(o)
    expect(fs.readFileSync(path.join(o.mnt, 'kept'), 'utf8')).toBe('written before the crash\n')
    await unmount(o.mnt)
  })

  // strace of the daemon: fsync(2)/fdatasync(2) through the mount must reach the upper fs, and not with
  // volatile or fuse-overlayfs's spelling of it, fsync=0.
  for (const opt of ['', 'volatile', 'fsync=0']) {
    const volatile = opt !== ''
    it(`fsync and fdatasync ${volatile ? `are skipped with -o ${opt}` : 'reach the upper filesystem'}`, async () => {
      if (spawnSync('sh', ['-c', 'command -v strace']).status !== 0) {
        throw new Error('strace is not installed: apt-get install strace (scripts/setup.sh should list it in PACKAGES)')
      }
      const name = opt === '' ? 'sync' : opt.replace('=', '')
      const o = newOverlay(lowers, path.join(base, name))
      await mountFuse(o, opt)
      const pid = daemonPid(o.mnt)
      const out = path.join(base, `strace-${name}.txt`)
      const strace = spawn('strace', ['-f', '-e', 'trace=fsync,fdatasync', '-o', out, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
      let err = ''
      strace.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
      const exited = new Promise<number | null>(resolve => strace.on('exit', c => resolve(c)))
      for (let i = 0; i < 200 && !/attached/.test(err); i++) await sleep(25)
      expect(err).toMatch(/attached/)
      await sleep(200)
      // A new file: write + fsync, write + fdatasync; a lower file: copy-up + write + fsync.
      const fd = fs.openSync(path.join(o.mnt, 'synced'), 'w')
      fs.writeSync(fd, 'data\n')
      fs.fsyncSync(fd)
      fs.writeSync(fd, 'more\n')
      fs.fdatasyncSync(fd)
      fs.closeSync(fd)
      const fd2 = fs.openSync(path.join(o.mnt, 'd', 'l0'), 'r+')
      fs.writeSync(fd2, 'X', 0)
      fs.fsyncSync(fd2)
      fs.closeSync(fd2)
      await sleep(300)
      strace.kill('SIGINT')
      await withTimeout(exited, 10_000, 'strace to detach')
      const lines = fs.readFileSync(out, 'utf8').split('\n').filter(l => /\b(fsync|fdatasync)\(/.test(l))
      const fsyncs = lines.filter(l => /\bfsync\(/.test(l)).length
      const fdatasyncs = lines.filter(l => /\bfdatasync\(/.test(l)).length
      console.log(`${opt || 'default'}: the daemon made ${fsyncs} fsync and ${fdatasyncs} fdatasync calls`)
      if (volatile) {
        expect(lines, `no fsync/fdatasync in the daemon with -o ${opt}`).toEqual([])
      } else {
        expect(fsyncs).toBeGreaterThanOrEqual(2) // the two fsync() calls (and the copy-up's own)
        expect(fdatasyncs).toBeGreaterThanOrEqual(1)
      }
      expect(alive(pid)).toBe(true)
      await unmount(o.mnt)
    })
  }

  it('lower layers were never written', () => {
    expect(guard.roots.length).toBe(2)
    expect(guard.check()).toEqual([])
  }, 120_000)
})
