// Differential tests of directory rename: the kernel's overlayfs mounted with
// redirect_dir=on (index=off, metacopy=off) against ovlfs with the same (index=off,metacopy=off), over identical
// copies of the same layers. Compared: per-op results, the merged views, the upper dirs
// (redirect and opaque xattrs included, see harness/snapshot.ts), and then what the kernel
// shows when it mounts the upper dir ovlfs wrote (with its lowers, redirect_dir=on): the same
// tree as ovlfs showed.
//
//   (1) a catalogue of directory-rename scenarios;
//   (2) seeded random sequences from harness/random.ts with extra directory renames:
//       OVLFS_REDIR_SEQUENCES (30) x OVLFS_DIFF_OPS (40) from OVLFS_REDIR_SEED;
//       OVLFS_REDIR_ONLY=i[,j] replays sequences alone; the first divergence is shrunk.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, type LayerSet } from './harness/layers'
import { FUSE_REDIRECT_OPTS, KERNEL_REDIRECT_OPTS, mountKernel, removeTree, tempDir, unmount, unmountAll, withBoth, type Modes, type Overlay } from './harness/mounts'
import { apply, o, type Op } from './harness/ops'
import { pairLines } from './harness/pair'
import { NAME_POOL, RANDOM_LAYERS, checkSequences, generate, mulberry32, reproducer, sequenceSeed } from './harness/random'
import { diff, snapshotMerged } from './harness/snapshot'

afterAll(unmountAll)

const MODES: Modes = { kernel: KERNEL_REDIRECT_OPTS, fuse: FUSE_REDIRECT_OPTS }

interface Base { dir: string, lowers: number }
interface Run<P> { results: { kernel: string[], fuse: string[] }, lines: string[], probes: { kernel: P, fuse: P }, prefix: number }

function buildBase (set: LayerSet): Base {
  const d = tempDir('ovlfs-redir-base-')
  buildLayers(d, set)
  return { dir: d, lowers: set.lowers.length }
}

/**
 * Run ops on both mounts and compare; then unmount ovlfs and let the kernel mount its upper
 * dir (fresh workdir) and compare that view with ovlfs's. With `stopWhen`, compare after
 * every op and stop once it holds.
 */
async function runPair<P = undefined> (base: Base, ops: Op[], opts: { stopWhen?: (lines: string[]) => boolean, probe?: (o: Overlay) => P } = {}): Promise<Run<P>> {
  return await withBoth(base.dir, base.lowers, async (s) => {
    const results = { kernel: [] as string[], fuse: [] as string[] }
    const compare = (): string[] => pairLines(s, results, ops)
    const none = { kernel: undefined as P, fuse: undefined as P }
    for (const op of ops) {
      results.kernel.push(apply(s.kernel.mnt, op))
      results.fuse.push(apply(s.fuse.mnt, op))
      if (opts.stopWhen !== undefined) {
        const lines = compare()
        if (opts.stopWhen(lines)) return { results, lines, probes: none, prefix: results.kernel.length }
      }
    }
    const probes = { kernel: opts.probe?.(s.kernel) as P, fuse: opts.probe?.(s.fuse) as P }
    const lines = compare()
    // The kernel reading what ovlfs wrote.
    const fuseView = snapshotMerged(s.fuse.mnt)
    await unmount(s.fuse.mnt)
    const side = path.dirname(s.fuse.mnt)
    const again: Overlay = { lowers: s.fuse.lowers, upper: s.fuse.upper, work: path.join(side, 'work-kernel'), mnt: path.join(side, 'mnt-kernel') }
    fs.mkdirSync(again.work)
    fs.mkdirSync(again.mnt)
    mountKernel(again, KERNEL_REDIRECT_OPTS)
    try {
      lines.push(...diff(snapshotMerged(again.mnt), fuseView, ['kernel over ovlfs upper', 'ovlfs']).map(l => 'reread ' + l))
    } finally {
      await unmount(again.mnt)
    }
    return { results, lines, probes, prefix: ops.length }
  }, MODES)
}

async function check<P = undefined> (set: LayerSet, ops: Op[], probe?: (o: Overlay) => P): Promise<Run<P>> {
  const base = buildBase(set)
  try {
    const run = await runPair(base, ops, { probe })
    if (run.lines.length > 0) throw new Error(reproducer('kernel (redirect_dir=on) and ovlfs diverge:', ops, run.results, run.lines))
    return run
  } finally { removeTree(base.dir) }
}

// ---------------------------------------------------------------- (1) the catalogue

const SET: LayerSet = {
  lowers: [
    {
      'a/x': file('x\n'), 'a/sub/y': file('y\n'), 'm/l': file('l\n'), 'b/c/f': file('f\n'), e: dir({ opaque: true }),
      'p/q/r/deep': file('deep\n'), 't/t1': file('t1\n'), 'rich/f': file('r\n'),
      rich: dir({ mode: 0o750, uid: 1000, gid: 1001, mtime: '@1100000001.5', xattrs: { 'user.d': 'dee' } }),
    },
    { 'a/z': file('z in lower1\n'), 'm/l1': file('l1\n'), 'w/old': file('old\n'), 't/t2': file('t2\n'), 'e/hidden': file('below e\n') },
  ],
  upper: { 'm/u': file('u\n'), 'up/f': file('f\n') },
}

describe('differential catalogue: directory rename (kernel redirect_dir=on vs ovlfs)', () => {
  it('a lower dir within its parent (relative redirect), its contents from both lowers', async () => {
    const r = await check(SET, [o.rename('a', 'a2'), o.read('a2/x'), o.read('a2/z'), o.read('a2/sub/y'), o.read('a/x')])
    expect(r.results.kernel).toEqual(['ok', expect.stringMatching(/^ok/), expect.stringMatching(/^ok/), expect.stringMatching(/^ok/), 'ENOENT'])
  })
  it('into another merged dir (absolute), renamed again, and back', async () => {
    await check(SET, [o.rename('a', 'm/a2'), o.read('m/a2/z'), o.rename('m/a2', 'm/a3'), o.rename('m/a3', 'up/a4'), o.rename('up/a4', 'a')])
  })
  it('a merged dir, then changes inside it', async () => {
    await check(SET, [o.rename('m', 'm2'), o.append('m2/l', '+'), o.unlink('m2/u'), o.unlink('m2/l1'), o.mkdir('m2/new'), o.create('m2/new/f', 'n'), o.rename('m2', 'up/m3')])
  })
  it('nested renames: a relative redirect made absolute, ancestors\' redirects in the path', async () => {
    await check(SET, [o.rename('b', 'b2'), o.rename('b2/c', 'b2/c2'), o.rename('b2/c2', 'c3'), o.read('c3/f'), o.rename('p', 'p2'), o.rename('p2/q', 'p2/q2'), o.rename('p2/q2/r', 'r'), o.append('r/deep', '!')])
  })
  it('deleting afterwards: ENOTEMPTY, then empty and rmdir', async () => {
    const r = await check(SET, [o.rename('a', 'gone'), o.rmdir('gone'), o.unlink('gone/x'), o.unlink('gone/z'), o.unlink('gone/sub/y'), o.rmdir('gone/sub'), o.rmdir('gone')])
    expect(r.results.kernel).toEqual(['ok', 'ENOTEMPTY', 'ok', 'ok', 'ok', 'ok', 'ok'])
  })
  it('over an empty opaque lower dir (hiding a lower below it), then removed', async () => {
    await check(SET, [o.rename('w', 'e'), o.read('e/old'), o.read('e/hidden'), o.unlink('e/old'), o.rmdir('e'), o.read('e/hidden')])
  })
  it('over a whiteout of a removed dir, and back', async () => {
    await check(SET, [o.unlink('w/old'), o.rmdir('w'), o.rename('a', 'w'), o.read('w/x'), o.rename('w', 'a'), o.read('a/x')])
  })
  it('onto a non-empty dir is ENOTEMPTY, onto a file ENOTDIR, into itself EINVAL', async () => {
    const r = await check(SET, [o.rename('a', 'm'), o.rename('a', 'up/f'), o.rename('a', 'a/sub/in')])
    expect(r.results.kernel).toEqual(['ENOTEMPTY', 'ENOTDIR', 'EINVAL'])
  })
  it('the dpkg dance: new dir beside, old renamed away, new into place, old deleted', async () => {
    await check(SET, [
      o.mkdir('t.new'), o.create('t.new/t1', 'new t1\n'), o.rename('t', 't.old'), o.rename('t.new', 't'),
      o.unlink('t.old/t1'), o.unlink('t.old/t2'), o.rmdir('t.old'), o.read('t/t1'),
    ])
  })
  it('metadata of the renamed dir is kept (mode, owner, old mtime, user xattr); chmod after the move', async () => {
    await check(SET, [o.rename('rich', 'up/rich2'), o.chmod('up/rich2', 0o700), o.rename('up/rich2', 'rich3')])
  })
  it('st_ino of a renamed lower dir and of its lower entries is kept', async () => {
    const r = await check(SET, [], (ov) => {
      const ino = (p: string) => fs.lstatSync(path.join(ov.mnt, p)).ino
      const before = [ino('a'), ino('a/x'), ino('m')]
      apply(ov.mnt, o.rename('a', 'm/a9'))
      apply(ov.mnt, o.rename('m', 'm9'))
      return [ino('m9/a9'), ino('m9/a9/x'), ino('m9')].map((n, i) => n === before[i])
    })
    expect(r.probes.fuse).toEqual(r.probes.kernel)
  })
})

// ---------------------------------------------------------------- (2) random sequences

const env = (name: string, dflt: number): number => {
  const v = process.env[name]
  return v === undefined || v === '' ? dflt : Number(v)
}
const SEQUENCES = env('OVLFS_REDIR_SEQUENCES', 30)
const OPS = env('OVLFS_DIFF_OPS', 40)
const SEED = env('OVLFS_REDIR_SEED', 20261130)
const ONLY = process.env.OVLFS_REDIR_ONLY

/** Directory names of RANDOM_LAYERS (and new ones), in every kind: lower, merged, upper, opaque, nested. */
const DIRS = ['dl', 'dm', 'dd', 'dd/e', 'dt', 'op', 'ud', 'nd', 'n1', 'n2', 'n1/n', 'dm/n', 'dl/n', 'ud/n']

/** The random sequences of random.ts, with a quarter of the ops made directory renames. */
function sequences (): Op[][] {
  return generate(SEED, SEQUENCES, OPS).map((ops, i) => {
    const r = mulberry32(sequenceSeed(SEED ^ 0x5bd1e995, i))
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
    return ops.map(op => r() < 0.25 ? o.rename(pick(DIRS), pick(r() < 0.7 ? DIRS : NAME_POOL)) : op)
  })
}

describe('random sequences with directory renames (kernel redirect_dir=on vs ovlfs)', () => {
  it(`${SEQUENCES} sequences of ${OPS} ops from seed ${SEED} agree, and the kernel reads ovlfs's upper as ovlfs shows it`, async () => {
    const base = buildBase(RANDOM_LAYERS)
    try {
      const all = sequences()
      const indices = ONLY !== undefined ? ONLY.split(',').map(Number) : all.map((_s, i) => i)
      let renamedDirs = 0
      await checkSequences(all, indices, SEED, 'OVLFS_REDIR', async (ops, opts) => await runPair(base, ops, opts), (i, run) => {
        renamedDirs += all[i]!.filter((op, k) => op.op === 'rename' && DIRS.includes(op.from) && run.results.kernel[k] === 'ok').length
      })
      // The sequences must really move directories, not only fail to.
      expect(renamedDirs).toBeGreaterThan(indices.length)
    } finally { removeTree(base.dir) }
  }, 40 * 60_000)
})
