// Differential tests: the same operations applied to the kernel's overlayfs and to the FUSE
// command under test (ovlfs; OVLFS_CMD may name a stand-in such as fuse-overlayfs), each over
// its own identical copy of the same layers. Compared: per-op results, the merged view and the
// resulting upper dir (see harness/snapshot.ts for what is deliberately ignored).
//
//   (1) a catalogue of hand-written cases, one per point of issue 2's "Semantics";
//   (2) the OCI/AUFS '.wh.' forms the kernel ignores, checked against an expected view;
//   (3) seeded random sequences: OVLFS_DIFF_SEQUENCES (300) x OVLFS_DIFF_OPS (40) from
//       OVLFS_DIFF_SEED; OVLFS_DIFF_ONLY=i[,j] replays sequences alone; on divergence, up to
//       OVLFS_DIFF_SHRINK (3) kinds of divergence get a minimal reproducer each.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  blk, buildLayers, chr, dir, fifo, file, hardlink, ociWhiteout, sparse, symlink, whiteout,
  OPAQUE_XATTR, type LayerSet,
} from './harness/layers'
import { removeTree, tempDir, unmountAll, withBoth, withFuse, type Overlay, type Sides } from './harness/mounts'
import { applyAll, apply, o, type Op } from './harness/ops'
import { resultLines } from './harness/pair'
import { generate, reproducer, RANDOM_LAYERS, sequenceSeed, shrink } from './harness/random'
import { diff, snapshotMerged, snapshotUpper, view, type Snapshot } from './harness/snapshot'

afterAll(unmountAll)

// ---------------------------------------------------------------- running one case

interface Base { dir: string, lowers: number }

function buildBase (set: LayerSet): Base {
  const d = tempDir('ovlfs-base-')
  buildLayers(d, set)
  return { dir: d, lowers: set.lowers.length }
}

interface Run<P> {
  results: { kernel: string[], fuse: string[] }
  kernel: { merged: Snapshot, upper: Snapshot }
  probes: { kernel: P, fuse: P }
  lines: string[] // the divergences; empty when both agree
  prefix: number // ops applied when `lines` was computed
}

function compareSides (s: Sides, results: Run<unknown>['results'], ops: Op[]): Omit<Run<unknown>, 'probes' | 'prefix'> {
  const lines = resultLines(results, ops)
  const kernel = { merged: snapshotMerged(s.kernel.mnt), upper: snapshotUpper(s.kernel.upper) }
  lines.push(...diff(kernel.merged, snapshotMerged(s.fuse.mnt)).map(l => 'merged ' + l))
  lines.push(...diff(kernel.upper, snapshotUpper(s.fuse.upper)).map(l => 'upper  ' + l))
  return { results, kernel, lines }
}

/** Run ops on both mounts; with `stopWhen`, compare after every op and stop once it holds for the divergences. */
async function runPair<P = undefined> (base: Base, ops: Op[], opts: { stopWhen?: (lines: string[]) => boolean, probe?: (o: Overlay) => P } = {}): Promise<Run<P>> {
  return await withBoth(base.dir, base.lowers, (s) => {
    const results = { kernel: [] as string[], fuse: [] as string[] }
    for (const op of ops) {
      results.kernel.push(apply(s.kernel.mnt, op))
      results.fuse.push(apply(s.fuse.mnt, op))
      if (opts.stopWhen !== undefined) {
        const c = compareSides(s, results, ops)
        if (opts.stopWhen(c.lines)) return { ...c, probes: { kernel: undefined as P, fuse: undefined as P }, prefix: results.kernel.length }
      }
    }
    const probes = { kernel: opts.probe?.(s.kernel) as P, fuse: opts.probe?.(s.fuse) as P }
    return { ...compareSides(s, results, ops), probes, prefix: ops.length }
  })
}

/** A catalogue case: build the layers, run, fail with a readable report on any divergence. */
async function check<P = undefined> (set: LayerSet, ops: Op[], probe?: (o: Overlay) => P): Promise<Run<P>> {
  const base = buildBase(set)
  try {
    const run = await runPair(base, ops, { probe })
    if (run.lines.length > 0) throw new Error(reproducer('kernel and ovlfs diverge:', ops, run.results, run.lines))
    return run
  } finally { removeTree(base.dir) }
}

const sh = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return (r.stdout + r.stderr).trim()
}
/** The kind of a divergence line: 'op result', or where and which field, e.g. 'merged mtime'. */
function kindOf (l: string): string {
  if (l.startsWith('result')) return 'op result'
  const problem = /^(\w+)\s+\w+ only: (\w+)/.exec(l) // e.g. 'merged ovlfs only: readdir d: duplicate name x'
  if (problem !== null) return `${problem[1]} ${problem[2]} problem`
  return l.replace(/^(\w+)\s+\S+: (only in \w+|\w+).*/, '$1 $2')
}
const lines = (s: string): string[] => s.split('\n').filter(Boolean).sort()

// Rich metadata that copy-up must keep (setcap cap_net_raw+ep; an ACL matching mode 0751).
const CAP = '0x0100000200200000000000000000000000000000'
const ACL = '0x0200000001000700ffffffff02000500e803000004000500ffffffff10000500ffffffff20000100ffffffff'
const RICH = { mode: 0o751, uid: 1000, gid: 1001, mtime: '@1100000000.123456789', xattrs: { 'user.a': 'alpha', 'trusted.t': 'tee', 'security.capability': CAP, 'system.posix_acl_access': ACL } }
const RICH_DIR = { mode: 0o750, uid: 1002, gid: 1003, mtime: '@1100000001.5', xattrs: { 'user.d': 'dee', 'trusted.d': 'tdee' } }

// ---------------------------------------------------------------- (1) the catalogue

describe('differential catalogue (kernel overlayfs vs ovlfs)', () => {
  describe('lookup', () => {
    it('upper wins over the lowers, the top lower over the bottom one', async () => {
      const r = await check({
        lowers: [{ a: file('L0'), b: file('L0b') }, { a: file('L1'), b: file('L1b'), c: file('L1c') }],
        upper: { a: file('U') },
      }, [o.read('a'), o.read('b'), o.read('c'), o.read('missing')])
      expect(r.results.kernel.at(-1)).toBe('ENOENT')
    })

    it('directories merge: each entry comes from the highest layer that has it', async () => {
      await check({
        lowers: [{ 'd/x': file('L0 x'), 'd/y': file('L0 y') }, { 'd/x': file('L1 x'), 'd/z': file('L1 z'), 'd/s/deep': file('deep') }],
        upper: { 'd/y': file('U y'), 'd/u': file('U u') },
      }, [o.read('d/x'), o.read('d/y'), o.read('d/z'), o.read('d/s/deep')])
    })

    it('a char 0/0 whiteout in upper hides a lower file and a lower dir', async () => {
      const r = await check({
        lowers: [{ a: file('lower a'), 'd/x': file('x'), keep: file('k') }],
        upper: { a: whiteout(), d: whiteout() },
      }, [o.read('a'), o.read('d/x'), o.read('keep')])
      expect(r.results.kernel).toEqual(['ENOENT', 'ENOENT', expect.stringMatching(/^ok/)])
    })

    it('a whiteout in a lower layer hides the layers below it', async () => {
      await check({ lowers: [{ a: whiteout(), 'd/x': whiteout() }, { a: file('bottom'), 'd/x': file('x'), 'd/y': file('y') }] }, [o.read('a')])
    })

    it('an opaque upper dir (trusted.overlay.opaque=y) hides lower entries', async () => {
      await check({
        lowers: [{ 'd/hidden': file('hidden'), 'd/both': file('lower both') }],
        upper: { d: dir({ opaque: true }), 'd/both': file('upper both'), 'd/new': file('new') },
      }, [o.read('d/hidden'), o.read('d/both')])
    })

    it('an opaque dir in a middle lower hides the lowers below, not the ones above', async () => {
      await check({
        lowers: [{ 'd/top': file('top') }, { d: dir({ opaque: true }), 'd/mid': file('mid') }, { 'd/bottom': file('bottom') }],
      }, [o.read('d/bottom'), o.read('d/mid')])
    })

    it('a non-directory in a higher layer hides a lower directory', async () => {
      await check({
        lowers: [{ d: file('file over dir'), s: symlink('target') }, { 'd/x': file('x'), 's/y': file('y') }],
        upper: {},
      }, [o.read('d/x'), o.read('s/y'), o.read('d')])
    })

    it('a directory in a higher layer hides a lower non-directory (no merge)', async () => {
      await check({ lowers: [{ 'd/x': file('x') }, { d: file('file under dir') }] }, [o.read('d/x')])
    })
  })

  describe('readdir', () => {
    const set: LayerSet = {
      lowers: [
        { 'd/f0': file('0'), 'd/s0': symlink('f0'), 'd/dir0/x': file('x'), 'd/both': file('L0'), 'd/gone0': file('g') },
        { 'd/f1': file('1'), 'd/fifo1': fifo(), 'd/null1': chr(1, 3), 'd/blk1': blk(7, 0), 'd/both': file('L1'), 'd/dir0/y': file('y'), 'd/gone1': file('g') },
      ],
      upper: { 'd/fu': file('u'), 'd/both': file('U'), 'd/gone0': whiteout(), 'd/gone1': whiteout(), 'd/op': dir({ opaque: true }) },
    }

    it('merges all layers: no duplicates, no whiteouts, correct d_type (find %y), . and ..', async () => {
      const r = await check(set, [o.unlink('d/f1'), o.create('d/new', 'n')], (ov) => ({
        types: lines(sh('find', [ov.mnt, '-mindepth', '1', '-printf', '%P %y\n'])),
        names: lines(sh('ls', ['-a1f', path.join(ov.mnt, 'd')])),
      }))
      expect(r.probes.fuse).toEqual(r.probes.kernel)
      expect(r.probes.kernel.names).toContain('..')
      expect(r.probes.kernel.names).not.toContain('gone0')
    })

    it('a large merged directory (3000 entries over three layers) lists completely', async () => {
      const many = (from: number, to: number, tag: string) =>
        Object.fromEntries(Array.from({ length: to - from }, (_v, i) => [`big/e${from + i}`, file(tag)]))
      const r = await check({ lowers: [many(0, 1200, 'L0'), many(800, 2000, 'L1')], upper: many(1600, 3000, 'U') }, [],
        (ov) => fs.readdirSync(path.join(ov.mnt, 'big')).length)
      expect(r.probes).toEqual({ kernel: 3000, fuse: 3000 })
    })
  })

  describe('copy-up keeps data and metadata (mode, owner, ns times, user/trusted/security xattrs, ACL; parent too)', () => {
    const set: LayerSet = { lowers: [{ p: dir(RICH_DIR), 'p/f': file('0123456789', RICH), 'p/other': file('o') }] }
    const triggers: Array<[string, Op[]]> = [
      ['open for write', [o.write('p/f', 2, 'XY')]],
      ['append', [o.append('p/f', 'tail')]],
      ['truncate', [o.truncate('p/f', 3)]],
      ['chmod', [o.chmod('p/f', 0o640)]],
      ['chown', [o.chown('p/f', 1234, 4321)]],
      ['utimens', [o.utimens('p/f', '@1100000500.250')]],
      ['setxattr', [o.setxattr('p/f', 'user.new', 'v')]],
      ['removexattr', [o.removexattr('p/f', 'user.a')]],
      ['link', [o.link('p/f', 'p/g'), o.link('p/f', 'top')]],
      ['rename in the same dir', [o.rename('p/f', 'p/h')]],
      ['rename to another dir', [o.rename('p/f', 'h')]],
      ['open before copy-up (read only)', [o.openReadAfterWrite('p/f', 'new!')]],
    ]
    for (const [name, ops] of triggers) {
      it(`on ${name}`, async () => {
        const r = await check(set, ops)
        expect(r.results.kernel.every(x => x === 'ok')).toBe(true)
        expect(Object.keys(r.kernel.upper.entries)).toContain('p')
      })
    }
    it('a trigger on a lower dir copies the dir up with its metadata (chmod, setxattr)', async () => {
      await check(set, [o.chmod('p', 0o700), o.setxattr('p', 'user.x', '1')])
    })
  })

  describe('copy-up of special files', () => {
    it('a sparse file keeps its size, content and holes', async () => {
      const size = 16 << 20
      const r = await check({ lowers: [{ sp: sparse(size, [[0, 'head'], [size / 2, 'middle'], [size - 4, 'tail']]) }] },
        [o.chmod('sp', 0o600), o.write('sp', 100, 'more')],
        (ov) => fs.statSync(path.join(ov.upper, 'sp')).blocks * 512 < size / 4)
      expect(r.probes).toEqual({ kernel: true, fuse: true })
    })

    it('a fifo, a char device and a block device stay what they are', async () => {
      const r = await check({ lowers: [{ ff: fifo(), null: chr(1, 3), loop: blk(7, 0) }] },
        [o.chmod('ff', 0o600), o.chown('null', 1000, 1000), o.utimens('loop', '@1100000000.5')])
      expect(r.kernel.upper.entries.ff?.type).toBe('fifo')
      expect(r.kernel.upper.entries.null?.rdev).toBe('1:3')
    })

    it('a symlink keeps its target, owner and times', async () => {
      await check({ lowers: [{ s: symlink('some/target', { mtime: '@1100000000.25' }), t: symlink('x') }] },
        [o.chown('s', 1000, 1000), o.utimens('t', '@1100000300.75')])
    })
  })

  describe('whiteouts and opaque dirs', () => {
    const set: LayerSet = {
      lowers: [{ lo: file('lower'), both: file('lower both'), 'ld/x': file('x'), ed: dir(), 'md/l': file('l') }],
      upper: { uo: file('upper'), both: file('upper both'), 'ud/y': file('y'), 'md/u': file('u') },
    }

    it('unlink of a lower file leaves a whiteout', async () => {
      const r = await check(set, [o.unlink('lo')])
      expect(r.kernel.upper.entries.lo?.type).toBe('whiteout')
    })
    it('unlink of an upper-only file leaves nothing', async () => {
      const r = await check(set, [o.unlink('uo')])
      expect(r.kernel.upper.entries.uo).toBeUndefined()
    })
    it('unlink of a name in upper and lower leaves a whiteout', async () => {
      await check(set, [o.unlink('both')])
    })
    it('rmdir of an empty lower dir leaves a whiteout; of an upper-only dir, nothing', async () => {
      await check(set, [o.rmdir('ed'), o.unlink('ud/y'), o.rmdir('ud')])
    })
    it('mkdir over a whiteout gives an opaque dir, a fresh mkdir does not', async () => {
      const r = await check(set, [o.unlink('ld/x'), o.rmdir('ld'), o.mkdir('ld'), o.mkdir('fresh')])
      expect(r.kernel.upper.entries.ld?.xattrs?.[OPAQUE_XATTR]).toBe('0x79')
      expect(r.kernel.upper.entries.fresh?.xattrs).toBeUndefined()
    })
    it('a file created over a whiteout replaces it', async () => {
      await check(set, [o.unlink('lo'), o.create('lo', 'again'), o.unlink('both'), o.mkfifo('both')])
    })
    it('rmdir of a merged dir with live lower entries: ENOTEMPTY, then works once they are gone', async () => {
      const r = await check(set, [o.unlink('md/u'), o.rmdir('md'), o.unlink('md/l'), o.rmdir('md'), o.read('md/l')])
      expect(r.results.kernel).toEqual(['ok', 'ENOTEMPTY', 'ok', 'ok', 'ENOENT'])
    })
  })

  describe('rename', () => {
    const set: LayerSet = {
      lowers: [{ lo: file('lower', { mode: 0o600, uid: 7 }), lo2: file('lower 2'), 'ld/x': file('x'), 'md/l': file('l'), both: file('lower both') }],
      upper: { uo: file('upper'), 'ud/y': file('y'), 'md/u': file('u'), both: file('upper both') },
    }
    it('a lower file to a new name: copy-up, rename, whiteout at the source', async () => {
      const r = await check(set, [o.rename('lo', 'new')])
      expect(r.kernel.upper.entries.lo?.type).toBe('whiteout')
    })
    it('a lower file over another lower file', async () => { await check(set, [o.rename('lo', 'lo2')]) })
    it('an upper file over a lower file, and over a merged name', async () => {
      await check(set, [o.rename('uo', 'lo'), o.rename('lo', 'both')])
    })
    it('a lower file into a lower dir (parent copied up)', async () => { await check(set, [o.rename('lo', 'ld/lo')]) })
    it('a merged-name file into an upper dir', async () => { await check(set, [o.rename('both', 'ud/both')]) })
    it('an upper-only dir works', async () => {
      const r = await check(set, [o.rename('ud', 'ud2'), o.read('ud2/y')])
      expect(r.results.kernel[0]).toBe('ok')
    })
    it('a lower dir and a merged dir give EXDEV (redirect_dir=off)', async () => {
      const r = await check(set, [o.rename('ld', 'ld2'), o.rename('md', 'md2')])
      expect(r.results.kernel).toEqual(['EXDEV', 'EXDEV'])
    })
  })

  describe('links, special files, xattrs, statfs, open files', () => {
    it('a hard link to a lower file: copy-up, then link', async () => {
      const r = await check({ lowers: [{ lo: file('lower'), 'd/x': file('x') }] }, [o.link('lo', 'ln'), o.link('d/x', 'd/y'), o.append('ln', '+')])
      expect(r.kernel.merged.entries.lo?.nlink).toBe(2)
    })
    it('files hard-linked in a lower layer (index=off: copy-up breaks the link)', async () => {
      await check({ lowers: [{ h1: file('linked'), h2: hardlink('h1'), h3: hardlink('h1') }] }, [o.append('h1', ' changed'), o.chmod('h2', 0o600)])
    })
    it('symlink, mkfifo and mknod create in the merged view', async () => {
      await check({ lowers: [{ 'd/x': file('x') }] },
        [o.symlink('x', 'd/s'), o.mkfifo('d/f'), o.mknod('d/c', 'c', 1, 3), o.symlink('dangling', 's2')])
    })
    it('xattrs: set, replace, remove and list in the merged view', async () => {
      await check({ lowers: [{ f: file('f', { xattrs: { 'user.a': 'lower', 'user.b': 'b' } }), d: dir({ xattrs: { 'user.d': 'd' } }) }] },
        [o.setxattr('f', 'user.a', 'upper'), o.removexattr('f', 'user.b'), o.removexattr('f', 'user.nope'), o.setxattr('d', 'user.e', 'e'),
          o.setxattr('f', 'trusted.x', 'tx')])
    })
    it('listxattr in the merged view hides the overlay-private xattrs', async () => {
      const r = await check({ lowers: [{ 'l/x': file('x'), 'w/x': file('y') }], upper: { l: dir({ opaque: true }) } },
        [o.rmdir('w/x'), o.unlink('w/x'), o.rmdir('w'), o.mkdir('w'), o.setxattr('w', 'user.keep', 'k')],
        (ov) => ['l', 'w'].map(n => sh('getfattr', ['--absolute-names', '-d', '-m', '-', path.join(ov.mnt, n)]).replace(ov.mnt, 'MNT')))
      expect(r.probes.fuse).toEqual(r.probes.kernel)
      expect(r.probes.kernel.join('\n')).not.toContain('overlay')
    })
    it('statfs reports the upper filesystem (same f_bsize, blocks within 5%)', async () => {
      const r = await check({ lowers: [{ f: file('x') }] }, [], (ov) => sh('stat', ['-f', '-c', '%S %b', ov.mnt]).split(' ').map(Number))
      const [[kb, kn], [fb, fn]] = [r.probes.kernel, r.probes.fuse] as number[][]
      expect(fb).toBe(kb)
      expect(Math.abs(fn! - kn!) / kn!).toBeLessThan(0.05)
    })
    it('a file opened before its copy-up reads the copied-up data', async () => {
      const r = await check({ lowers: [{ f: file('old data'), g: file('old') }] }, [o.openReadAfterWrite('f', 'NEW'), o.openReadAfterWrite('g', 'longer new data')])
      expect(r.results.kernel).toEqual(['ok', 'ok'])
    })
    it('fstat of an open file answers after its name is unlinked, renamed over, moved or chmodded (nlink 0 once gone)', async () => {
      await check({ lowers: [{ lo: file('lower data'), mv: file('moved'), ch: file('chmod me'), d: dir() }] }, [
        o.fstatAfter('lo', o.unlink('lo')),
        o.create('up', 'upper data'), o.create('tmp', 'new'),
        o.fstatAfter('up', o.rename('tmp', 'up')),
        o.fstatAfter('tf', o.unlink('tf'), 'tmpfile data'),
        o.fstatAfter('mv', o.rename('mv', 'd/mv2')),
        o.fstatAfter('ch', o.chmod('ch', 0o600)),
        o.fstatAfter('d/mv2', o.unlink('d/mv2')),
      ])
    })
    it('st_ino is kept across copy-up, st_dev is one for the whole mount', async () => {
      const r = await check({ lowers: [{ f: file('x'), 'd/g': file('y') }] }, [], (ov) => {
        const ino = (p: string) => fs.lstatSync(path.join(ov.mnt, p)).ino
        const before = [ino('f'), ino('d/g')]
        apply(ov.mnt, o.chmod('f', 0o600))
        apply(ov.mnt, o.append('d/g', 'z'))
        const devs = new Set(['.', 'f', 'd', 'd/g'].map(p => fs.lstatSync(path.join(ov.mnt, p)).dev))
        return { sameIno: before[0] === ino('f') && before[1] === ino('d/g'), devs: devs.size }
      })
      expect(r.probes.fuse).toEqual(r.probes.kernel)
    })

    it("the mount root's st_ino is the upper root's (the top layer's), not a lower root's", async () => {
      const r = await check({ lowers: [{ f: file('x') }, { g: file('y') }] }, [], (ov) => ({
        upperRoot: fs.lstatSync(ov.mnt).ino === fs.lstatSync(ov.upper).ino,
        lowerRoot: ov.lowers.some(l => fs.lstatSync(l).ino === fs.lstatSync(ov.mnt).ino),
      }))
      expect(r.probes.kernel).toEqual({ upperRoot: true, lowerRoot: false })
      expect(r.probes.fuse).toEqual(r.probes.kernel)
    })
  })
})

// ---------------------------------------------------------------- (2) what the kernel ignores

describe('OCI/AUFS whiteouts (kernel ignores them; ovlfs vs expected view)', () => {
  async function expectView (set: LayerSet, ops: Op[], expected: Record<string, string>, results?: string[]): Promise<void> {
    const base = buildBase(set)
    try {
      await withFuse(base.dir, base.lowers, (ov) => {
        const got = applyAll(ov.mnt, ops)
        expect(view(ov.mnt)).toEqual(expected)
        if (results !== undefined) expect(got).toEqual(results)
      })
    } finally { removeTree(base.dir) }
  }

  it('.wh.NAME in a lower hides NAME in the layers below and is not listed', async () => {
    await expectView({ lowers: [{ a: ociWhiteout(), 'd/x': ociWhiteout(), keep: file('k') }, { a: file('a'), 'd/x': file('x'), 'd/y': file('y') }] },
      [o.read('a')], { keep: 'file:k', d: 'dir', 'd/y': 'file:y' }, ['ENOENT'])
  })
  it('.wh.NAME in upper hides a lower file and a lower dir', async () => {
    await expectView({ lowers: [{ a: file('a'), 'd/x': file('x'), b: file('b') }], upper: { a: ociWhiteout(), d: ociWhiteout() } },
      [], { b: 'file:b' })
  })
  it('.wh..wh..opq makes a dir opaque (in a lower and in upper) and is not listed', async () => {
    await expectView({
      lowers: [{ l: dir({ ociOpaque: true }), 'l/top': file('t') }, { 'l/below': file('b'), 'u/below': file('b') }],
      upper: { u: dir({ ociOpaque: true }), 'u/mine': file('m') },
    }, [], { l: 'dir', 'l/top': 'file:t', u: 'dir', 'u/mine': 'file:m' })
  })
  it('user.overlay.opaque=y makes a dir opaque', async () => {
    await expectView({ lowers: [{ 'd/below': file('b') }], upper: { d: dir({ xattrs: { 'user.overlay.opaque': 'y' } }), 'd/mine': file('m') } },
      [], { d: 'dir', 'd/mine': 'file:m' })
  })
  it('names hidden by .wh. can be created again, as a file and as an (empty) dir', async () => {
    await expectView({ lowers: [{ a: ociWhiteout(), d: ociWhiteout() }, { a: file('old'), 'd/x': file('x') }] },
      [o.create('a', 'new'), o.mkdir('d'), o.unlink('d/x')], { a: 'file:new', d: 'dir' }, ['ok', 'ok', 'ENOENT'])
  })
  it('deleting a name hidden by .wh. gives ENOENT; deleting a visible lower name hides it', async () => {
    await expectView({ lowers: [{ a: ociWhiteout() }, { a: file('old'), b: file('b'), c: file('c') }] },
      [o.unlink('a'), o.unlink('b')], { c: 'file:c' }, ['ENOENT', 'ok'])
  })
})

// ---------------------------------------------------------------- (3) random sequences

const env = (name: string, dflt: number): number => {
  const v = process.env[name]
  return v === undefined || v === '' ? dflt : Number(v)
}
const SEQUENCES = env('OVLFS_DIFF_SEQUENCES', 300)
const OPS = env('OVLFS_DIFF_OPS', 40)
const SEED = env('OVLFS_DIFF_SEED', 20240611)
const ONLY = process.env.OVLFS_DIFF_ONLY
const SHRINK = env('OVLFS_DIFF_SHRINK', 3)

describe('random sequences (kernel overlayfs vs ovlfs)', () => {
  it(`${SEQUENCES} sequences of ${OPS} ops from seed ${SEED} agree`, async () => {
    const base = buildBase(RANDOM_LAYERS)
    try {
      const all = generate(SEED, SEQUENCES, OPS)
      const indices = ONLY !== undefined ? ONLY.split(',').map(Number) : all.map((_s, i) => i)
      const diverging: Array<{ i: number, run: Run<undefined> }> = []
      for (const i of indices) {
        const run = await runPair(base, all[i]!)
        if (run.lines.length > 0) diverging.push({ i, run })
      }
      if (diverging.length === 0) return

      // What kind of divergence (where + field), over all diverging sequences.
      const kinds = new Map<string, number>()
      for (const { run } of diverging) for (const k of new Set(run.lines.map(kindOf))) kinds.set(k, (kinds.get(k) ?? 0) + 1)
      const report = [
        `${diverging.length} of ${indices.length} random sequences diverge (OVLFS_DIFF_SEED=${SEED}, ${OPS} ops each; layers: RANDOM_LAYERS in harness/random.ts).`,
        `diverging sequences: ${diverging.map(d => d.i).join(' ')}`,
        'kinds of divergence (sequences): ' + [...kinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} (${n})`).join(', '),
      ]
      // Minimal reproducers for up to SHRINK kinds not shown yet: shortest prefix showing the
      // kind, then single ops dropped as long as the kind still shows.
      const shown = new Set<string>()
      let shrunk = 0
      for (const { i, run } of diverging) {
        const target = run.lines.map(kindOf).find(k => !shown.has(k))
        if (shrunk >= SHRINK || target === undefined) continue
        shrunk++
        const hits = (ls: string[]) => ls.some(l => kindOf(l) === target)
        const ops = all[i]!
        const first = await runPair(base, ops, { stopWhen: hits })
        const min = hits(first.lines) ? await shrink(ops, first.prefix, async c => hits((await runPair(base, c)).lines)) : ops
        const last = await runPair(base, min)
        for (const l of last.lines) shown.add(kindOf(l))
        report.push('', reproducer(
          `sequence ${i} (seed ${sequenceSeed(SEED, i)}; replay: OVLFS_DIFF_SEED=${SEED} OVLFS_DIFF_ONLY=${i} OVLFS_DIFF_OPS=${OPS}): ` +
          `"${target}" first after op ${first.prefix}, shrunk to ${min.length} ops:`, min, last.results, last.lines))
      }
      throw new Error(report.join('\n'))
    } finally { removeTree(base.dir) }
  }, 30 * 60_000)
})
