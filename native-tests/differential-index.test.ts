// Differential tests of hard links kept through copy-up and metadata-only copy-up: the
// kernel's overlayfs mounted with redirect_dir=on,index=on,metacopy=on against ovlfs with its
// defaults (which are those), over identical copies of the same layers. Compared: per-op
// results; the merged views, with st_nlink and which names share an inode (harness/snapshot.ts);
// and then the kernel, mounted with the same options over ovlfs's upper AND work directory
// (the index lives there), shows the same tree as ovlfs did. Both sides write the index the
// same way (<workdir>/index/<hex of the lower file's handle>); the number of entries is compared.
//
// The upper directories are compared too, except where the two write different but
// equivalent layouts on purpose (upperDiffers): the kernel hard-links a metadata-only copy by
// giving the new name a redirect to its lower data; ovlfs copies the data first. (Renames are
// the same: a metadata-only copy with a redirect on both sides.) The kernel also makes
// metadata-only index entries for a chmod of a hard-linked file where ovlfs copies the data
// into the index; the catalogue avoids that case in its upper comparison.
//
//   (1) a catalogue of hard-link and metacopy scenarios;
//   (2) seeded random sequences from harness/random.ts (whose layers hold a lower hard link, a
//       sparse file, files with xattrs), with extra chmod/chown/utimens/link ops on lower files:
//       OVLFS_INDEX_SEQUENCES (30) x OVLFS_DIFF_OPS (40) from OVLFS_INDEX_SEED; OVLFS_INDEX_ONLY=i
//       replays one sequence; the first divergence is shrunk.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, hardlink, sparse, type LayerSet } from './harness/layers'
import { KERNEL_FULL_OPTS, mountKernel, removeTree, tempDir, unmount, unmountAll, withBoth, mountFuse, type Modes, type Overlay } from './harness/mounts'
import { apply, o, type Op } from './harness/ops'
import { pairLines } from './harness/pair'
import { NAME_POOL, RANDOM_LAYERS, checkSequences, generate, mulberry32, reproducer, sequenceSeed } from './harness/random'
import { diff, snapshotMerged } from './harness/snapshot'

afterAll(unmountAll)

const KERNEL_INDEX_OPTS = KERNEL_FULL_OPTS
const MODES: Modes = { kernel: KERNEL_INDEX_OPTS, fuse: '' }

interface Base { dir: string, lowers: number }
interface Run { results: { kernel: string[], fuse: string[] }, lines: string[], prefix: number }

function buildBase (set: LayerSet): Base {
  const d = tempDir('ovlfs-index-base-')
  buildLayers(d, set)
  return { dir: d, lowers: set.lowers.length }
}

function indexNames (work: string): string[] {
  const d = path.join(work, 'index')
  return fs.existsSync(d) ? fs.readdirSync(d).filter(n => !n.startsWith('#')).sort() : []
}

/** Links of a metadata-only copy: the kernel gives the new name a redirect to the data, ovlfs copies the data first. */
function upperDiffers (ops: Op[]): boolean {
  return ops.some(op => op.op === 'link')
}

async function runPair (base: Base, ops: Op[], opts: { stopWhen?: (lines: string[]) => boolean } = {}): Promise<Run> {
  return await withBoth(base.dir, base.lowers, async (s) => {
    const results = { kernel: [] as string[], fuse: [] as string[] }
    const compare = (): string[] => {
      const lines = pairLines(s, results, ops, !upperDiffers(ops))
      // The entries' names are the lower files' handles: each side has its own copy of the layers, so only counts compare.
      const ki = indexNames(s.kernel.work).length
      const fi = indexNames(s.fuse.work).length
      if (ki !== fi) lines.push(`index  kernel=${ki} entries, ovlfs=${fi}`)
      return lines
    }
    for (const op of ops) {
      results.kernel.push(apply(s.kernel.mnt, op))
      results.fuse.push(apply(s.fuse.mnt, op))
      if (opts.stopWhen !== undefined) {
        const lines = compare()
        if (opts.stopWhen(lines)) return { results, lines, prefix: results.kernel.length }
      }
    }
    const lines = compare()
    // The kernel reading what ovlfs wrote: same upper, same work dir (the index is in it).
    const fuseView = snapshotMerged(s.fuse.mnt)
    await unmount(s.fuse.mnt)
    const side = path.dirname(s.fuse.mnt)
    const again: Overlay = { lowers: s.fuse.lowers, upper: s.fuse.upper, work: s.fuse.work, mnt: path.join(side, 'mnt-kernel') }
    fs.mkdirSync(again.mnt)
    mountKernel(again, KERNEL_INDEX_OPTS)
    try {
      lines.push(...diff(snapshotMerged(again.mnt), fuseView, ['kernel over ovlfs upper', 'ovlfs']).map(l => 'reread ' + l))
    } finally {
      await unmount(again.mnt)
    }
    return { results, lines, prefix: ops.length }
  }, MODES)
}

async function check (set: LayerSet, ops: Op[]): Promise<Run> {
  const base = buildBase(set)
  try {
    const run = await runPair(base, ops)
    if (run.lines.length > 0) throw new Error(reproducer('kernel (index=on,metacopy=on) and ovlfs diverge:', ops, run.results, run.lines))
    return run
  } finally { removeTree(base.dir) }
}

// ---------------------------------------------------------------- (1) the catalogue

const SET: LayerSet = {
  lowers: [
    {
      'h/a': file('shared data\n', { mode: 0o644, xattrs: { 'user.h': 'hh' } }),
      'h/b': hardlink('h/a'),
      other: dir(),
      'other/c': hardlink('h/a'),
      big: sparse(8 << 20, [[0, 'head'], [(8 << 20) - 4, 'tail']]),
      'm/f': file('meta data here\n', { mode: 0o640, uid: 1000, gid: 1000, xattrs: { 'user.m': 'mm' } }),
      'm/g': file('second\n'),
    },
    { 'low/x': file('bottom\n'), 'low/y': hardlink('low/x') },
  ],
  upper: { 'u/new': file('upper file\n') },
}

describe('differential catalogue: hard links and metadata-only copy-up (kernel index=on,metacopy=on vs ovlfs)', () => {
  it('a write through one name of a lower hard link: every name sees it, one inode, the same link count', async () => {
    const r = await check(SET, [o.append('h/b', 'more\n'), o.read('h/a'), o.read('other/c')])
    expect(r.results.kernel).toEqual(['ok', expect.stringMatching(/^ok /), expect.stringMatching(/^ok /)])
  })
  it('chmod through one name, writes through another, a hard link in the bottom layer', async () => {
    await check(SET, [o.chmod('h/a', 0o600), o.write('other/c', 0, 'SHARED'), o.append('low/y', '+'), o.read('low/x')])
  })
  it('unlink, link and rename of names of an indexed file keep st_nlink right everywhere', async () => {
    await check(SET, [o.append('h/a', '1'), o.unlink('h/b'), o.link('other/c', 'u/l2'), o.rename('h/a', 'u/moved'), o.unlink('other/c')])
  })
  it('unlinking names before any copy-up', async () => {
    await check(SET, [o.unlink('h/b'), o.unlink('low/y'), o.append('h/a', 'x')])
  })
  it('the last name gone', async () => {
    await check(SET, [o.append('h/a', 'x'), o.unlink('h/a'), o.unlink('h/b'), o.unlink('other/c')])
  })
  it('metadata-only copy-up: chmod, chown, utimens, setxattr, removexattr; reads still find the lower data', async () => {
    await check(SET, [
      o.chmod('m/f', 0o600), o.chown('m/f', 7, 8), o.utimens('m/f', '@1000000000'), o.setxattr('m/f', 'user.n', 'v'),
      o.removexattr('m/f', 'user.m'), o.read('m/f'), o.chmod('big', 0o600), o.read('big'),
    ])
  })
  it('fstat of an open file of a metadata-only copy once its name is gone: the copy\'s attributes, nlink 0', async () => {
    await check(SET, [
      o.chmod('m/f', 0o600), o.fstatAfter('m/f', o.unlink('m/f')),
      o.fstatAfter('big', o.chown('big', 3, 4)), o.fstatAfter('big', o.rename('m/g', 'big')),
    ])
  })
  it('then the data: a write, a truncate, a truncate to 0, an open with O_TRUNC', async () => {
    await check(SET, [
      o.chmod('m/f', 0o600), o.append('m/f', 'appended\n'), o.chmod('m/g', 0o644), o.truncate('m/g', 3),
      o.chown('big', 1, 1), o.truncate('big', 0), o.create('m/g', 'recreated'),
    ])
  })
  it('rename and link of a metadata-only copy (the upper layouts differ on purpose; the views do not)', async () => {
    await check(SET, [o.chmod('m/f', 0o600), o.rename('m/f', 'u/f2'), o.chmod('m/g', 0o600), o.link('m/g', 'm/g2'), o.read('m/g2'), o.append('m/g2', 'x')])
  })
})

describe('metadata-only copy-up of a large file', () => {
  it('a chmod of a 1 GiB lower file through the mount writes no data to the upper layer; reads still see the lower data', async () => {
    const root = tempDir('ovlfs-index-big-')
    const ov: Overlay = { lowers: [path.join(root, 'lower0')], upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt') }
    for (const d of [...ov.lowers, ov.upper, ov.work, ov.mnt]) fs.mkdirSync(d)
    try {
      // 1 GiB of real data (no holes), so that any copy of it would show on the upper filesystem.
      const big = path.join(ov.lowers[0]!, 'big')
      const chunk = Buffer.alloc(1 << 20, 0x61)
      const fd = fs.openSync(big, 'w')
      for (let i = 0; i < 1024; i++) fs.writeSync(fd, chunk, 0, chunk.length, i << 20)
      fs.writeSync(fd, Buffer.from('tail'), 0, 4, (1 << 30) - 4)
      fs.closeSync(fd)
      await mountFuse(ov)
      const before = fs.statfsSync(ov.upper)
      const t0 = performance.now()
      fs.chmodSync(path.join(ov.mnt, 'big'), 0o600)
      const ms = performance.now() - t0
      const after = fs.statfsSync(ov.upper)
      const used = (before.bfree - after.bfree) * before.bsize
      const up = fs.statSync(path.join(ov.upper, 'big'))
      console.log(`chmod of a 1 GiB lower file: ${ms.toFixed(1)} ms, ${used} bytes more used on the upper filesystem, upper copy ${up.size} bytes in ${up.blocks} blocks`)
      expect(up.size).toBe(1 << 30)
      expect(up.blocks * 512).toBeLessThan(64 << 10)
      expect(used).toBeLessThan(16 << 20)
      expect(fs.statSync(path.join(ov.mnt, 'big')).mode & 0o777).toBe(0o600)
      const rfd = fs.openSync(path.join(ov.mnt, 'big'), 'r')
      const b = Buffer.alloc(8)
      fs.readSync(rfd, b, 0, 8, (1 << 30) - 8)
      fs.closeSync(rfd)
      expect(b.toString()).toBe('aaaatail')
    } finally {
      await unmount(ov.mnt).catch(() => {})
      removeTree(root)
    }
  }, 300_000)
})

// ---------------------------------------------------------------- (2) random sequences

const env = (name: string, dflt: number): number => {
  const v = process.env[name]
  return v === undefined || v === '' ? dflt : Number(v)
}
const SEQUENCES = env('OVLFS_INDEX_SEQUENCES', 30)
const OPS = env('OVLFS_DIFF_OPS', 40)
const SEED = env('OVLFS_INDEX_SEED', 20261201)
const ONLY = process.env.OVLFS_INDEX_ONLY

/** Lower files of RANDOM_LAYERS, the hard-linked pair among them. */
const LOWER_FILES = ['lo', 'both', 'dl/a', 'dl/b', 'dm/x', 'dm/y', 'hl1', 'hl2', 'sp', 'lo2', 'dt/t', 'dd/e/f']

/** The random sequences of random.ts, with a third of the ops made metadata changes or links of lower files. */
function sequences (): Op[][] {
  return generate(SEED, SEQUENCES, OPS).map((ops, i) => {
    const r = mulberry32(sequenceSeed(SEED ^ 0x1b873593, i))
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
    return ops.map(op => {
      if (r() >= 0.33) return op
      const f = pick(LOWER_FILES)
      switch (Math.floor(r() * 5)) {
        case 0: return o.chmod(f, 0o600)
        case 1: return o.chown(f, 3, 4)
        case 2: return o.utimens(f, '@1200000000')
        case 3: return o.link(f, pick(NAME_POOL))
        default: return o.append(f, '+')
      }
    })
  })
}

describe('random sequences with hard links and metadata changes (kernel index=on,metacopy=on vs ovlfs)', () => {
  it(`${SEQUENCES} sequences of ${OPS} ops from seed ${SEED} agree, and the kernel reads ovlfs's upper and index as ovlfs shows them`, async () => {
    const base = buildBase(RANDOM_LAYERS)
    try {
      const all = sequences()
      const indices = ONLY !== undefined ? ONLY.split(',').map(Number) : all.map((_s, i) => i)
      await checkSequences(all, indices, SEED, 'OVLFS_INDEX', async (ops, opts) => await runPair(base, ops, opts))
    } finally { removeTree(base.dir) }
  }, 3_600_000)
})
