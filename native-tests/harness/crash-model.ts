// The model behind native-tests/crash.test.ts: what the merged tree holds, a seeded
// generator of operations that are valid in the model's state, what each operation
// does, the states a correct filesystem may show when it was cut short, and a
// comparison of a mounted tree with a model state.
//
// Small files always hold exactly SMALL bytes, written at offset 0 in one write(2) (one
// FUSE request): old and new content never mix. Big files are lower-layer files of
// 8–64 MiB (slices of one random pool) plus the text appended through the mount.
import * as fs from 'node:fs'
import * as path from 'node:path'

export const SMALL = 64

export type MNode =
  | { t: 'dir', pure: boolean } // pure: made through the mount (no lower dir merged in), so it may be renamed
  | { t: 'file', data: string }
  | { t: 'big', i: number, tail: string }

/** Merged path ('a/b', no leading slash; the root is not in the map) -> node. */
export type Model = Map<string, MNode>

export type CrashOp =
  | { op: 'append', path: string, data: string, fsync: boolean } // open O_APPEND, write, [fsync], close
  | { op: 'write', path: string, data: string } // open, pwrite SMALL bytes at 0, fsync, close
  | { op: 'create', path: string, data: string } // open O_CREAT|O_EXCL, write, fsync, close
  | { op: 'unlink', path: string }
  | { op: 'rename', from: string, to: string }
  | { op: 'mkdir', path: string }
  | { op: 'rmdir', path: string }

export function describeOp (op: CrashOp): string {
  switch (op.op) {
    case 'append': return `append ${JSON.stringify(op.data)} to ${op.path}${op.fsync ? ' + fsync' : ''}`
    case 'write': return `write ${SMALL} bytes at 0 of ${op.path} + fsync`
    case 'create': return `create ${op.path} with ${SMALL} bytes + fsync`
    case 'rename': return `rename ${op.from} -> ${op.to}`
    default: return `${op.op} ${op.path}`
  }
}

/** Whether the op's effect was made durable with fsync before it returned. */
export function fsynced (op: CrashOp): boolean {
  return op.op === 'write' || op.op === 'create' || (op.op === 'append' && op.fsync)
}

export const parentOf = (p: string): string => p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : ''
const baseName = (p: string): string => p.slice(p.lastIndexOf('/') + 1)
const join = (d: string, n: string): string => d === '' ? n : `${d}/${n}`
const depth = (p: string): number => p === '' ? 0 : p.split('/').length

export function children (m: Model, dir: string): string[] {
  const out: string[] = []
  for (const p of m.keys()) if (parentOf(p) === dir) out.push(baseName(p))
  return out.sort()
}

/** The state after `op` (the op must be valid in `m`). */
export function applyOp (m: Model, op: CrashOp): Model {
  const n = new Map(m)
  switch (op.op) {
    case 'append': {
      const e = n.get(op.path)
      if (e?.t === 'big') n.set(op.path, { ...e, tail: e.tail + op.data })
      else if (e?.t === 'file') n.set(op.path, { t: 'file', data: e.data + op.data })
      else throw new Error(`model: append to ${op.path} (${e?.t})`)
      break
    }
    case 'write':
    case 'create':
      n.set(op.path, { t: 'file', data: op.data })
      break
    case 'unlink':
    case 'rmdir':
      n.delete(op.path)
      break
    case 'mkdir':
      n.set(op.path, { t: 'dir', pure: true })
      break
    case 'rename': {
      const src = n.get(op.from)
      if (src === undefined) throw new Error(`model: rename of missing ${op.from}`)
      if (src.t === 'dir') {
        for (const [p, e] of m) {
          if (p.startsWith(op.from + '/')) { n.delete(p); n.set(op.to + p.slice(op.from.length), e) }
        }
      }
      n.delete(op.from)
      n.set(op.to, src)
      break
    }
  }
  return n
}

/**
 * Extra states a correct filesystem may show when `op` was cut short, besides the
 * states before and after it: create is open(O_CREAT) then write, so the file may be
 * there and empty; an append to a big file (at the end of its content, `big.length`) may
 * stop at a page boundary it crosses. (A copy-up done before the write changes nothing visible.)
 */
export function intermediates (before: Model, op: CrashOp, big: Pick<BigContent, 'length'>): Model[] {
  if (op.op === 'create') return [new Map(before).set(op.path, { t: 'file', data: '' })]
  if (op.op === 'append') {
    // A write cut short by the kill: the kernel's buffered write checks for a fatal signal
    // before each page it copies (generic_perform_write), so a SIGKILL that lands while the
    // daemon is in pwrite() leaves the bytes up to a page boundary written and drops the
    // rest. Only a write that crosses a boundary can be cut, and only there.
    const e = before.get(op.path)
    if (e?.t !== 'big') return []
    const at = big.length(e.i, e.tail)
    const cuts: Model[] = []
    for (let k = 1; k < op.data.length; k++) {
      if ((at + k) % PAGE === 0) cuts.push(new Map(before).set(op.path, { ...e, tail: e.tail + op.data.slice(0, k) }))
    }
    return cuts
  }
  return []
}

/** The page size the kernel's buffered writes go by (x86_64, arm64 with 4 KiB pages). */
const PAGE = 4096

// ---- the generator ------------------------------------------------------------

export interface GenOptions {
  /** Directories where nothing may be created or renamed to (the big files' directory). */
  readonly closedDirs: readonly string[]
  /** At most this many big files renamed out of their directory (each a metadata-only copy in upper, a full one once written). */
  readonly maxMovedBigs: number
}

type Rand = () => number

/** Seeded operations valid in the model state they are drawn for. */
export class OpGenerator {
  private readonly seen = new Map<string, Set<string>>()
  private counter = 0

  constructor (private readonly rand: Rand, private readonly opts: GenOptions, initial: Model) {
    for (const p of initial.keys()) this.see(p)
  }

  private see (p: string): void {
    const d = parentOf(p)
    if (!this.seen.has(d)) this.seen.set(d, new Set())
    this.seen.get(d)!.add(baseName(p))
  }

  int (n: number): number { return Math.floor(this.rand() * n) }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)]! }

  /** SMALL bytes, unique enough to tell every write apart. */
  data (tag: string): string {
    const s = `${tag} #${this.counter++} ${Math.floor(this.rand() * 1e9).toString(36)}`
    return (s + '.'.repeat(SMALL)).slice(0, SMALL - 1) + '\n'
  }

  /** A name in `dir` that does not exist there now (often one that existed before: over a whiteout). */
  freshName (m: Model, dir: string): string | null {
    const have = new Set(children(m, dir))
    const pool = new Set([...(this.seen.get(dir) ?? []), 'n0', 'n1', 'n2', 'n3', 'n4'])
    const free = [...pool].filter(n => !have.has(n)).sort()
    return free.length > 0 ? this.pick(free) : null
  }

  appendTo (p: string): CrashOp {
    return { op: 'append', path: p, data: `+${this.counter++}\n`, fsync: this.rand() < 0.5 }
  }

  next (m: Model): CrashOp {
    const entries = [...m.entries()]
    const dirs = ['', ...entries.filter(([, e]) => e.t === 'dir').map(([p]) => p)]
    const openDirs = dirs.filter(d => !this.opts.closedDirs.includes(d) && !this.opts.closedDirs.some(c => d.startsWith(c + '/')))
    const smalls = entries.filter(([, e]) => e.t === 'file').map(([p]) => p)
    const bigs = entries.filter(([, e]) => e.t === 'big').map(([p]) => p)
    const moved = bigs.filter(p => !this.opts.closedDirs.includes(parentOf(p))).length
    const emptyDirs = dirs.filter(d => d !== '' && !this.opts.closedDirs.includes(d) && children(m, d).length === 0)
    const pureDirs = entries.filter(([, e]) => e.t === 'dir' && e.pure).map(([p]) => p)
    const choices: Array<[number, () => CrashOp | null]> = [
      [1.5, () => bigs.length > 0 ? this.appendTo(this.pick(bigs)) : null],
      [3, () => smalls.length > 0 ? { op: 'write', path: this.pick(smalls), data: this.data('w') } : null],
      [3, () => {
        const d = this.pick(openDirs)
        const n = this.freshName(m, d)
        return n === null ? null : { op: 'create', path: join(d, n), data: this.data('c') }
      }],
      [2.5, () => smalls.length > 0 ? { op: 'unlink', path: this.pick(smalls) } : null],
      [0.2, () => bigs.length > 0 ? { op: 'unlink', path: this.pick(bigs) } : null],
      [3, () => {
        if (smalls.length === 0) return null
        const from = this.pick(smalls)
        const d = this.pick(openDirs)
        // Half the time over an existing small file (replacing it), else to a free name.
        const over = smalls.filter(s => s !== from && parentOf(s) === d)
        const to = over.length > 0 && this.rand() < 0.5 ? this.pick(over) : (() => { const n = this.freshName(m, d); return n === null ? null : join(d, n) })()
        return to === null || to === from ? null : { op: 'rename', from, to }
      }],
      [0.2, () => {
        if (bigs.length === 0 || moved >= this.opts.maxMovedBigs) return null
        const d = this.pick(openDirs)
        const n = this.freshName(m, d)
        return n === null ? null : { op: 'rename', from: this.pick(bigs), to: join(d, n) }
      }],
      [0.8, () => {
        if (pureDirs.length === 0) return null
        const from = this.pick(pureDirs)
        const d = this.pick(openDirs.filter(x => x !== from && !x.startsWith(from + '/')))
        const n = this.freshName(m, d)
        if (n === null || depth(join(d, n)) + maxDepthBelow(m, from) > 4) return null
        return { op: 'rename', from, to: join(d, n) }
      }],
      [2, () => {
        const d = this.pick(openDirs.filter(x => depth(x) < 3))
        const n = this.freshName(m, d)
        return n === null ? null : { op: 'mkdir', path: join(d, n) }
      }],
      [2, () => emptyDirs.length > 0 ? { op: 'rmdir', path: this.pick(emptyDirs) } : null],
    ]
    const total = choices.reduce((s, [w]) => s + w, 0)
    for (let attempt = 0; attempt < 100; attempt++) {
      let x = this.rand() * total
      for (const [w, make] of choices) {
        if ((x -= w) >= 0) continue
        const op = make()
        if (op !== null) {
          if (op.op === 'rename') this.see(op.to)
          else this.see(op.path)
          return op
        }
        break
      }
    }
    throw new Error('model: no valid op found')
  }
}

function maxDepthBelow (m: Model, dir: string): number {
  let d = 0
  for (const p of m.keys()) if (p.startsWith(dir + '/')) d = Math.max(d, depth(p) - depth(dir))
  return d
}

// ---- observing a mounted tree ----------------------------------------------------

export type Obs =
  | { t: 'dir' }
  | { t: 'file', size: number, data?: string, head?: Buffer, tail?: Buffer }
  | { t: 'other', what: string }

export interface Observation { entries: Map<string, Obs>, problems: string[] }

const EDGE = 1 << 16

/** The merged tree under `root`: small files' content, big files' size and first/last 64 KiB. */
export function observe (root: string): Observation {
  const entries = new Map<string, Obs>()
  const problems: string[] = []
  const visit = (rel: string): void => {
    let names: string[]
    try { names = fs.readdirSync(rel === '' ? root : path.join(root, rel)) } catch (e) { problems.push(`readdir ${rel || '.'}: ${codeOf(e)}`); return }
    if (new Set(names).size !== names.length) {
      const twice = [...new Set(names.filter((n, i) => names.indexOf(n) !== i))]
      problems.push(`readdir ${rel || '.'}: duplicate names ${JSON.stringify(twice)} in ${JSON.stringify(names)}`)
    }
    for (const name of names.sort()) {
      const r = join(rel, name)
      if (name.startsWith('#ovlfs')) problems.push(`stray temporary visible in the merged view: ${r}`)
      const abs = path.join(root, r)
      let st: fs.Stats
      try { st = fs.lstatSync(abs) } catch (e) { problems.push(`lstat ${r}: ${codeOf(e)}`); continue }
      if (st.isDirectory()) {
        entries.set(r, { t: 'dir' })
        visit(r)
      } else if (st.isFile()) {
        try {
          if (st.size <= 4096) {
            entries.set(r, { t: 'file', size: st.size, data: fs.readFileSync(abs, 'latin1') })
          } else {
            const fd = fs.openSync(abs, 'r')
            try {
              const head = Buffer.alloc(Math.min(EDGE, st.size))
              const tail = Buffer.alloc(Math.min(EDGE, st.size))
              fs.readSync(fd, head, 0, head.length, 0)
              fs.readSync(fd, tail, 0, tail.length, st.size - tail.length)
              entries.set(r, { t: 'file', size: st.size, head, tail })
            } finally { fs.closeSync(fd) }
          }
        } catch (e) { problems.push(`read ${r}: ${codeOf(e)}`) }
      } else {
        entries.set(r, { t: 'other', what: st.isCharacterDevice() ? `chr ${st.rdev}` : 'special' })
      }
    }
  }
  visit('')
  return { entries, problems }
}

/** The expected content of big file i with `tail` appended, without building it whole. */
export interface BigContent {
  length (i: number, tail: string): number
  /** Bytes [start, end) of the content. */
  slice (i: number, tail: string, start: number, end: number): Buffer
}

/** Differences between a model state and an observation (empty: they agree). */
export function compare (m: Model, o: Observation, big: BigContent): string[] {
  const lines = [...o.problems]
  const paths = [...new Set([...m.keys(), ...o.entries.keys()])].sort()
  for (const p of paths) {
    const e = m.get(p)
    const x = o.entries.get(p)
    if (e === undefined) { lines.push(`${p}: unexpected ${showObs(x!)}`); continue }
    if (x === undefined) { lines.push(`${p}: missing (expected ${showNode(e)})`); continue }
    if (e.t === 'dir') {
      if (x.t !== 'dir') lines.push(`${p}: expected a directory, found ${showObs(x)}`)
    } else if (e.t === 'file') {
      if (x.t !== 'file') lines.push(`${p}: expected ${showNode(e)}, found ${showObs(x)}`)
      else if (x.data !== e.data) lines.push(`${p}: expected ${showNode(e)}, found ${showObs(x)}`)
    } else {
      const len = big.length(e.i, e.tail)
      if (x.t !== 'file' || x.size !== len) { lines.push(`${p}: expected ${showNode(e)} (${len} bytes), found ${showObs(x)}`); continue }
      const head = x.head ?? Buffer.from(x.data ?? '', 'latin1')
      const tail = x.tail ?? head
      if (!head.equals(big.slice(e.i, e.tail, 0, head.length))) lines.push(`${p}: first ${head.length} bytes differ from ${showNode(e)}`)
      if (!tail.equals(big.slice(e.i, e.tail, len - tail.length, len))) lines.push(`${p}: last ${tail.length} bytes differ from ${showNode(e)}`)
    }
  }
  return lines
}

export function showNode (e: MNode): string {
  if (e.t === 'dir') return 'dir'
  if (e.t === 'file') return `file ${JSON.stringify(e.data)}`
  return `big b${e.i}${e.tail === '' ? ' (lower original)' : ` + ${JSON.stringify(e.tail)}`}`
}

export function showObs (x: Obs): string {
  if (x.t === 'dir') return 'a directory'
  if (x.t === 'other') return x.what
  if (x.data !== undefined) return `file ${JSON.stringify(x.data)}`
  return `file of ${x.size} bytes`
}

function codeOf (e: unknown): string { return (e as { code?: string }).code ?? String(e) }
