// Seeded random operation sequences over a small pool of names that exist in different
// layers, and the shrinking of a diverging sequence to a minimal reproducer.
import { dir, file, fifo, hardlink, sparse, symlink, whiteout, type LayerSet } from './layers'
import { describe, type Op } from './ops'

/** mulberry32: a tiny, good-enough 32-bit PRNG. Returns floats in [0, 1). */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The seed of sequence i of a run seeded with `seed` (so one sequence can be replayed alone). */
export function sequenceSeed (seed: number, i: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0
}

/**
 * The layer set every random sequence starts from (lowers top first). Each name is placed to
 * hit one situation: upper-only, lower-only, in both, whited out, under an opaque dir, a
 * directory with lower content, merged over three layers, hard-linked in a lower, a file over
 * a lower directory, a symlink, a fifo, a sparse file, owned by someone else, setuid.
 */
export const RANDOM_LAYERS: LayerSet = {
  lowers: [
    { // lower0, the top lower
      both: file('top version\n', { mode: 0o600, xattrs: { 'user.t': 'top' } }),
      'dm/y': file('dm-y in lower0\n'),
      nd: file('a file over a lower dir\n'),
      lo2: file('setuid in lower0\n', { mode: 0o4755 }),
      'dt/t': file('dir in the top lower\n'),
    },
    { // lower1, the bottom lower
      lo: file('lower-only\n', { mode: 0o640, uid: 1000, gid: 1000, xattrs: { 'user.a': 'la' } }),
      both: file('bottom version\n'),
      'dl/a': file('dl-a\n'),
      'dl/b': file('dl-b\n', { xattrs: { 'user.b': 'lb' } }),
      'dm/x': file('dm-x in lower1\n'),
      hl1: file('hard linked in lower1\n'),
      hl2: hardlink('hl1'),
      wo: file('whited out by upper\n'),
      'op/hidden': file('hidden by the opaque upper dir\n'),
      'nd/c': file('hidden by the lower0 file\n'),
      sl: symlink('lo'),
      ff: fifo(),
      sp: sparse(1 << 20, [[0, 'head'], [(1 << 20) - 5, 'tail']]),
      'dd/e/f': file('deep\n'),
    },
  ],
  upper: {
    uo: file('upper-only\n'),
    'ud/f': file('ud-f\n'),
    wo: whiteout(),
    op: dir({ opaque: true }),
    'op/shown': file('shown\n'),
    'dm/z': file('dm-z in upper\n'),
  },
}

export const NAME_POOL = [
  'lo', 'lo2', 'both', 'dl', 'dm', 'hl1', 'hl2', 'wo', 'op', 'nd', 'sl', 'ff', 'sp', 'uo', 'ud', 'dt', 'dd',
  'dl/a', 'dl/b', 'dl/n', 'dm/x', 'dm/y', 'dm/z', 'dm/n', 'op/hidden', 'op/shown', 'nd/c',
  'ud/f', 'ud/n', 'dd/e', 'dd/e/f', 'dt/t', 'n1', 'n2', 'n3', 'n1/n',
]

type Gen = (r: Rng) => Op
class Rng {
  constructor (readonly next: () => number) {}
  int (n: number): number { return Math.floor(this.next() * n) }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)]! }
  name (): string { return this.pick(NAME_POOL) }
  data (): string {
    const len = 1 + this.int(12)
    let s = ''
    for (let i = 0; i < len; i++) s += 'abcdefghijklmnopqrstuvwxyz0123456789'[this.int(36)]
    return s
  }
}

const GENERATORS: Array<[number, Gen]> = [
  [2, r => ({ op: 'create', path: r.name(), data: r.data() })],
  [2, r => ({ op: 'write', path: r.name(), offset: r.pick([0, 0, 1, 5, 16, 9000]), data: r.data() })],
  [1, r => ({ op: 'append', path: r.name(), data: r.data() })],
  [1, r => ({ op: 'truncate', path: r.name(), size: r.pick([0, 3, 10, 5000, (1 << 20) + 7]) })],
  [1, r => ({ op: 'chmod', path: r.name(), mode: r.pick([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o444, 0o000]) })],
  [1, r => { const [uid, gid] = r.pick([[0, 0], [1000, 1000], [1234, 5678], [0, 1000]] as const); return { op: 'chown', path: r.name(), uid, gid } }],
  [1, r => ({ op: 'utimens', path: r.name(), time: `@${1100000000 + r.int(1_000_000)}.${String(r.int(1000)).padStart(3, '0')}` })],
  [1, r => ({ op: 'setxattr', path: r.name(), name: r.pick(['user.a', 'user.b', 'user.t']), value: r.data() })],
  [1, r => ({ op: 'removexattr', path: r.name(), name: r.pick(['user.a', 'user.b', 'user.t']) })],
  [1, r => ({ op: 'link', from: r.name(), to: r.name() })],
  [1, r => ({ op: 'symlink', target: r.pick([...NAME_POOL, 'nowhere']), path: r.name() })],
  [1.5, r => ({ op: 'mkdir', path: r.name() })],
  [1, r => ({ op: 'rmdir', path: r.name() })],
  [2, r => ({ op: 'unlink', path: r.name() })],
  [3, r => ({ op: 'rename', from: r.name(), to: r.name() })],
  [0.5, r => ({ op: 'mkfifo', path: r.name() })],
  [0.5, r => ({ op: 'read', path: r.name() })],
  [0.5, r => ({ op: 'openReadAfterWrite', path: r.name(), data: r.data() })],
  [0.5, r => { const p = r.name(); return { op: 'fstatAfter', path: p, then: r.pick([{ op: 'unlink', path: p }, { op: 'rename', from: r.name(), to: p }, { op: 'rename', from: p, to: r.name() }] as Op[]) } }],
]
const TOTAL_WEIGHT = GENERATORS.reduce((s, [w]) => s + w, 0)

/** One sequence of `length` ops from its own seed. */
export function sequence (seqSeed: number, length: number): Op[] {
  const r = new Rng(mulberry32(seqSeed))
  return Array.from({ length }, () => {
    let x = r.next() * TOTAL_WEIGHT
    for (const [w, gen] of GENERATORS) { if ((x -= w) < 0) return gen(r) }
    return GENERATORS[0]![1](r)
  })
}

/** `count` sequences of `length` ops: sequence i comes from sequenceSeed(seed, i). */
export function generate (seed: number, count: number, length: number): Op[][] {
  return Array.from({ length: count }, (_v, i) => sequence(sequenceSeed(seed, i), length))
}

/** The outcome of running a sequence on both mounts: null when they agree. */
export type Divergence = string[] | null

/**
 * Shrink a diverging sequence: start from its shortest diverging prefix (`prefixLength`,
 * found by the caller by comparing after every op), then try dropping single ops, latest
 * first, keeping every drop after which the sequence still diverges. At most `maxTrials` runs.
 */
export async function shrink (ops: Op[], prefixLength: number, diverges: (ops: Op[]) => Promise<boolean>, maxTrials = 60): Promise<Op[]> {
  let cur = ops.slice(0, prefixLength)
  let trials = 0
  for (let i = cur.length - 2; i >= 0 && trials < maxTrials; i--) {
    const candidate = [...cur.slice(0, i), ...cur.slice(i + 1)]
    trials++
    if (await diverges(candidate)) cur = candidate
  }
  return cur
}

/** A readable reproducer. */
export function reproducer (title: string, ops: Op[], results: { kernel: string[], fuse: string[] }, lines: string[]): string {
  const steps = ops.map((op, i) => {
    const k = results.kernel[i]
    const f = results.fuse[i]
    return `  ${String(i + 1).padStart(2)}. ${describe(op).padEnd(44)} kernel: ${k}${f === k ? '' : `   ovlfs: ${f}   <-- differs`}`
  })
  return [title, ...steps, '  divergence:', ...lines.map(l => '    ' + l)].join('\n')
}

/** One run of a differential pair over a sequence: per-op results, divergence lines, how many ops ran. */
export interface PairRun { results: { kernel: string[], fuse: string[] }, lines: string[], prefix: number }

/**
 * Run the sequences `indices` of `all` through `runPair`; when some diverge, shrink the first
 * one to its first kind of divergence and throw a reproducer naming the env variables to
 * replay it (`${envPrefix}_SEED`, `${envPrefix}_ONLY`). `onRun` sees every run (for checks of
 * what the sequences really did).
 */
export async function checkSequences (
  all: Op[][], indices: number[], seed: number, envPrefix: string,
  runPair: (ops: Op[], opts?: { stopWhen?: (lines: string[]) => boolean }) => Promise<PairRun>,
  onRun: (i: number, run: PairRun) => void = () => {},
): Promise<void> {
  const diverging: Array<{ i: number, lines: string[] }> = []
  for (const i of indices) {
    const run = await runPair(all[i]!)
    onRun(i, run)
    if (run.lines.length > 0) diverging.push({ i, lines: run.lines })
  }
  if (diverging.length === 0) return
  const { i, lines } = diverging[0]!
  const ops = all[i]!
  const kind = lines[0]!
  const hits = (ls: string[]): boolean => ls.some(l => l === kind)
  const first = await runPair(ops, { stopWhen: hits })
  const min = hits(first.lines) ? await shrink(ops, first.prefix, async c => hits((await runPair(c)).lines)) : ops
  const last = await runPair(min)
  throw new Error([
    `${diverging.length} of ${indices.length} sequences diverge (${envPrefix}_SEED=${seed}): ${diverging.map(d => d.i).join(' ')}`,
    reproducer(`sequence ${i} (replay: ${envPrefix}_ONLY=${i}), shrunk to ${min.length} ops:`, min, last.results, last.lines),
  ].join('\n'))
}
