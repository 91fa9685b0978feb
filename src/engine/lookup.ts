import { promises as fsp, type BigIntStats } from 'node:fs'
import { LRUCache } from 'lru-cache'
import { DirIndex } from './dir-index'
import { OvlError, codeOf } from './errors'
import { type Layer, type LayerStack, realPath, splitPath, joinPath } from './layers'
import { WH_OPAQUE, aufsWhiteoutName, isWhiteoutName, isWhiteoutStat } from './whiteout'
import { InodeMap, decodeOrigin } from './inode'
import type { HardLinkIndex } from './hardlinks'
import { isMetacopy } from './metacopy'
import { LayerIo } from './layer-io'
import { OPAQUE_NAMES, REDIRECT_NAMES } from './xattrs'
import { type MaybePromise, andThen, attempt } from './maybe'
import { type LayerProbe, type LookupState, type Probe, lookupInLayer, parseRedirect, readRedirect } from './redirect'

/** Where a merged name exists in one layer: the layer and the path inside it. */
export interface Hit {
  readonly layer: Layer
  /** Path inside the layer ('' for its root): the merged path, unless a renamed directory's redirect led elsewhere. */
  readonly rel: string
}

export function hitPath (h: Hit): string {
  return realPath(h.layer, h.rel)
}

/** A resolved merged name. Immutable; a mutation replaces it in the cache. */
export interface Node {
  readonly path: string
  readonly parent: Node | undefined
  /** The top-most layer holding the name: its attributes are the merged ones. */
  readonly top: Hit
  /** lstat of `top` when resolved; fresh for lower tops (immutable), refreshed on getattr for upper tops. */
  readonly stat: BigIntStats
  readonly isDir: boolean
  /** The merged st_ino (see inode.ts). */
  readonly ino: number
  /** For directories, every layer merged into it, top first (stopping at an opaque one). For others, [top]. */
  readonly dirs: readonly Hit[]
  /** A metadata-only upper copy (metacopy.ts): the lower file holding its data. */
  readonly data?: Hit
  /** A lower file with several names already copied up through another name (hardlinks.ts): the index entry now holding it. */
  readonly index?: string
  /** For lower files with several names: the index generation they were resolved at. */
  readonly indexGen?: number
  /** For lower files with several names: their overlay file handle, which names their index entry. */
  readonly fh?: Buffer
  stale: boolean
}

/** The real file holding a node's data: its index entry, the lower data of a metadata-only copy, or its top. */
export function dataPath (n: Node): string {
  return n.index ?? hitPath(n.data ?? n.top)
}

/** Whether that file is in the upper filesystem (changes to it are the object's), not a lower layer. */
export function dataInUpper (n: Node): boolean {
  return n.index !== undefined || (n.top.layer.isUpper && n.data === undefined)
}

/** One name's lookup through the layers, as resolveChild goes (scan, take, childNode). */
interface Scan {
  readonly parent: Node
  readonly path: string
  readonly name: string
  readonly st: LookupState
  /** The parent's part in each layer, top first (the layer roots below an absolute redirect). */
  layers: readonly Hit[]
  i: number
  rooted: boolean
  top?: Hit
  stat?: BigIntStats
  readonly dirs: Hit[]
}

/**
 * Top-down lookup through the layers, as the kernel's ovl_lookup: the first
 * layer with the name wins; a whiteout (char 0/0 or `.wh.NAME`) ends the
 * search; a directory merges with directories of the same name below it
 * until one is opaque or a lower entry is not a directory; a renamed
 * directory's redirect tells the layers below which name to look for.
 */
export class Lookup {
  private readonly cache: LRUCache<string, Node>
  private readonly inflight = new Map<string, Promise<Node | null>>()
  /**
   * Names found in no layer, with the parent node they were looked up under:
   * absent while that parent is valid and nothing invalidated the name. A
   * create is a LOOKUP that fails and then a CREATE that looks again; this
   * spares the second look its syscalls. Bumped by every invalidation,
   * `changes` keeps a lookup that raced with a change from recording its
   * out-of-date answer. A plain Map, emptied when it reaches MAX_ABSENT: an
   * LRUCache's delete of its last entry clears it, which fills its arrays
   * (O(max)), and a create deletes the one absent name it just looked up.
   */
  private readonly absent = new Map<string, Node>()
  private changes = 0
  /**
   * The lstat probeReal just made of an upper name, for the statOf that
   * follows it in the same lookup (take()): one lstat instead of two. Used
   * once, and only while nothing was invalidated since.
   */
  private upperProbed: { real: string, st: BigIntStats, changes: number } | undefined
  private readonly lowerOpaque = new LRUCache<string, boolean>({ max: 50_000 })
  private readonly lowerRedirect = new LRUCache<string, string>({ max: 50_000 })
  readonly dirIndex: DirIndex
  /** Metadata syscalls on the layers, on the JS thread while they answer fast (layer-io.ts). */
  readonly io = new LayerIo()

  readonly inodes: InodeMap

  constructor (
    readonly stack: LayerStack,
    private readonly originXattr: string,
    opts: { maxNodes?: number, maxListingEntries?: number } = {},
    private readonly hardlinks?: HardLinkIndex,
  ) {
    this.inodes = new InodeMap(stack)
    this.cache = new LRUCache<string, Node>({ max: opts.maxNodes ?? 100_000 })
    this.dirIndex = new DirIndex(opts.maxListingEntries)
  }

  /** Resolve a merged path ('' is the root); null when it does not exist. */
  async resolve (path: string): Promise<Node | null> {
    return await this.resolveMaybe(path)
  }

  /**
   * resolve(), synchronous when the node is cached, or when every answer it
   * needs is known without waiting (cached lower listings, a lower object's
   * lstat: see maybe.ts and layer-io.ts). Only lookups that wait are shared
   * by concurrent callers (inflight).
   */
  resolveMaybe (path: string): MaybePromise<Node | null> {
    const cached = this.cache.get(path)
    if (cached !== undefined && this.valid(cached)) return cached
    const under = this.absent.size === 0 ? undefined : this.absent.get(path)
    if (under !== undefined) {
      if (this.cache.peek(under.path) === under && this.valid(under)) return null
      this.absent.delete(path)
    }
    let p = this.inflight.get(path)
    if (p === undefined) {
      const r = this.resolveUncached(path)
      if (!(r instanceof Promise)) return r
      p = r
      this.inflight.set(path, p)
      void p.finally(() => { if (this.inflight.get(path) === p) this.inflight.delete(path) }).catch(() => {})
    }
    return p
  }

  /** The cached node of `path` if there is a valid one, without looking anything up. */
  peek (path: string): Node | undefined {
    const n = this.cache.peek(path)
    return n !== undefined && this.valid(n) ? n : undefined
  }

  /**
   * Record the node of a regular file just created at `path` in the upper
   * directory `parent` (holding the create's lock): what a lookup would find,
   * built from the new file's fstat (no origin, no metacopy marker, one
   * name). Not recorded when `parent` is no longer valid; a lookup then
   * finds it.
   */
  recordCreated (path: string, parent: Node, top: Hit, stat: BigIntStats): Node {
    const node: Node = { path, parent, top, stat, isDir: false, ino: this.inodes.map(Number(stat.dev), stat.ino), dirs: [top], stale: false }
    if (this.cache.peek(parent.path) === parent && this.valid(parent)) {
      this.cache.set(path, node)
      this.absent.delete(path)
    }
    return node
  }

  /** Like resolve, but ENOENT when missing. */
  async get (path: string): Promise<Node> {
    return await this.getMaybe(path)
  }

  /** get(), synchronous when resolveMaybe is. */
  getMaybe (path: string): MaybePromise<Node> {
    return andThen(this.resolveMaybe(path), (n) => {
      if (n === null) throw new OvlError('ENOENT', `no such file or directory: ${path || '/'}`)
      return n
    })
  }

  /** Forget a name (after any change to it); a directory's descendants become invalid too. */
  invalidate (path: string): void {
    const n = this.cache.peek(path)
    if (n !== undefined) n.stale = true
    this.cache.delete(path)
    this.inflight.delete(path)
    this.absent.delete(path)
    this.changes++
  }

  /** Drop everything (after operations that move whole subtrees). */
  clear (): void {
    for (const n of this.cache.values()) n.stale = true
    this.cache.clear()
    this.inflight.clear()
    this.absent.clear()
    this.changes++
  }

  private valid (n: Node): boolean {
    for (let a: Node | undefined = n; a !== undefined; a = a.parent) {
      if (a.stale) return false
      if (a.indexGen !== undefined && a.indexGen !== this.hardlinks?.generation) return false
      if (a !== n && this.cache.peek(a.path) !== a) return false
    }
    return true
  }

  private resolveUncached (path: string): MaybePromise<Node | null> {
    return andThen(path === '' ? this.resolveRoot() : this.resolveChild(path), (node) => {
      if (node !== null) this.cache.set(path, node)
      return node
    })
  }

  private async resolveRoot (): Promise<Node> {
    const top = { layer: this.stack.layers[0] as Layer, rel: '' }
    const stat = await fsp.lstat(hitPath(top), { bigint: true })
    const dirs = this.stack.layers.map(layer => ({ layer, rel: '' }))
    // The kernel reports the top layer's root (the upper one when there is one), which has no origin record.
    return { path: '', parent: undefined, top, stat, isDir: true, ino: this.inodes.map(Number(stat.dev), stat.ino), dirs, stale: false }
  }

  private resolveChild (path: string): MaybePromise<Node | null> {
    const [parentPath, name] = splitPath(path)
    return andThen(this.resolveMaybe(parentPath), (parent) => {
      if (parent === null) return null
      // `.wh.*` names are markers, never objects of the merged view (they are not listed either).
      if (isWhiteoutName(name)) return null
      if (!parent.isDir) throw new OvlError('ENOTDIR', `not a directory: ${parentPath}`)
      const s: Scan = { parent, path, name, st: { name, isDir: false, stop: false }, layers: parent.dirs, i: 0, rooted: false, dirs: [] }
      const changes = this.changes
      return andThen(this.scan(s), () => andThen(this.childNode(s), (node) => {
        if (node === null && this.changes === changes) {
          if (this.absent.size >= MAX_ABSENT) this.absent.clear()
          this.absent.set(path, parent)
        }
        return node
      }))
    })
  }

  /**
   * Ask each layer for the name in the parent's part of it, until a
   * whiteout, an opaque directory or a non-directory ends the merge, or a
   * redirect (redirect.ts) changes the name; synchronous as long as every
   * answer is known without waiting.
   */
  private scan (s: Scan): MaybePromise<void> {
    while (s.i < s.layers.length && !s.st.stop) {
      const pd = s.layers[s.i] as Hit
      const found = lookupInLayer(this.layerProbe, pd, s.st)
      const took = found instanceof Promise ? found.then(hit => this.take(s, pd, hit)) : this.take(s, pd, found)
      if (took instanceof Promise) return took.then(() => this.scan(s))
    }
  }

  /** One layer's answer: the first hit is the top, whose lstat is the node's; an absolute redirect restarts from the roots of the layers below. */
  private take (s: Scan, pd: Hit, hit: Hit | undefined): MaybePromise<void> {
    s.i++
    if (!s.rooted && s.st.name.startsWith('/')) {
      s.rooted = true
      s.layers = this.stack.layers.filter(l => l.index > pd.layer.index).map(l => ({ layer: l, rel: '' }))
      s.i = 0
    }
    if (hit === undefined) return
    s.dirs.push(hit)
    if (s.top !== undefined) return
    s.top = hit
    return andThen(this.statOf(hit), (stat) => { s.stat = stat })
  }

  /** The node the scan found, if any: at once for a lower object with one name, else after reading what the upper copy or the index records. */
  private childNode (s: Scan): MaybePromise<Node | null> {
    const { top, stat } = s
    if (top === undefined || stat === undefined) return null
    if (top.layer.isUpper || (this.hardlinks !== undefined && stat.isFile() && stat.nlink > 1n)) return this.recordedChildNode(s, top, stat)
    const isDir = stat.isDirectory()
    return { path: s.path, parent: s.parent, top, stat, isDir, ino: this.inodes.map(Number(stat.dev), stat.ino), dirs: isDir ? s.dirs : [top], stale: false }
  }

  /** Synchronous for an upper object without a metacopy marker while the upper layer answers fast (layer-io.ts). */
  private recordedChildNode (s: Scan, top: Hit, stat: BigIntStats): MaybePromise<Node> {
    const { path, parent, dirs } = s
    // One listxattr tells an upper object's origin record and metacopy marker apart from nothing at all.
    const names = top.layer.isUpper ? this.xattrNames(top) : undefined
    return andThen(names, (names) => andThen(this.inoOf(top, stat, dirs, names), (ino) => {
      const node: Node = { path, parent, top, stat, isDir: stat.isDirectory(), ino, dirs: stat.isDirectory() ? dirs : [top], stale: false }
      if (names !== undefined) return isMetacopy(stat, names) ? this.metacopyNode(s, node, names) : node
      if (this.hardlinks !== undefined && stat.isFile() && stat.nlink > 1n) return this.indexedNode(node, this.hardlinks)
      return node
    }))
  }

  private async metacopyNode (s: Scan, node: Node, names: readonly string[]): Promise<Node> {
    const redirect = names.some(n => REDIRECT_NAMES.includes(n)) ? await readRedirect(hitPath(node.top)) : undefined
    return { ...node, data: await this.lowerData(s.parent, redirect ?? s.name, s.path) }
  }

  private async indexedNode (node: Node, hardlinks: HardLinkIndex): Promise<Node> {
    const indexGen = hardlinks.generation
    const fh = await hardlinks.handleOf(hitPath(node.top))
    return fh !== undefined ? { ...node, indexGen, fh, index: await hardlinks.find(fh) } : node
  }

  /**
   * The lower file holding a metadata-only copy's data: the same name looked
   * up in the layers below the upper one, or where its redirect (a renamed
   * copy) points: a name in the parent's lower directories, or an absolute
   * path from the roots of the lower layers. EIO when there is none, as in
   * the kernel.
   */
  private async lowerData (parent: Node, name: string, path: string): Promise<Hit> {
    const st: LookupState = { name, isDir: false, stop: false }
    const dirs = name.startsWith('/')
      ? this.stack.layers.filter(l => !l.isUpper).map(l => ({ layer: l, rel: '' }))
      : parent.dirs.filter(d => !d.layer.isUpper)
    for (const pd of dirs) {
      const hit = await lookupInLayer(this.layerProbe, pd, st)
      if (hit !== undefined) {
        if ((await fsp.lstat(hitPath(hit))).isFile()) return hit
        break
      }
      if (st.stop) break
    }
    throw new OvlError('EIO', `the data of the metadata-only copy ${path} is in no lower layer`)
  }

  private readonly layerProbe: LayerProbe = {
    probe: (dir, name) => this.probe(dir, name, { layer: dir.layer, rel: joinPath(dir.rel, name) }),
    isOpaque: (hit) => this.isOpaque(hit),
    redirectOf: (hit) => this.redirectOf(hit),
    isBottom: (hit) => hit.layer.index === this.stack.layers.length - 1,
  }

  /** The redirect on a directory of a layer: lower layers never change, so theirs are remembered. */
  redirectOf (hit: Hit): MaybePromise<string | undefined> {
    const real = hitPath(hit)
    if (hit.layer.isUpper) return this.upperRedirect(hit.layer, real)
    const known = this.lowerRedirect.get(real)
    if (known !== undefined) return known === '' ? undefined : known
    return readRedirect(real).then((r) => {
      this.lowerRedirect.set(real, r ?? '')
      return r
    })
  }

  /**
   * The merged st_ino of the object at `top`: its origin's number when it was
   * copied up; for a merged directory whose upper part has no origin record,
   * its top-most lower directory's (as the kernel reports).
   */
  inoOf (top: Hit, stat: BigIntStats, dirs: readonly Hit[], names?: readonly string[]): MaybePromise<number> {
    const own = this.inodes.map(Number(stat.dev), stat.ino)
    if (!top.layer.isUpper) return own
    return andThen(names ?? this.xattrNames(top), (listed) => {
      const origin = listed.includes(this.originXattr)
        ? attempt(() => this.io.lgetxattr(top.layer, hitPath(top), this.originXattr), () => null)
        : null
      return andThen(origin, (value) => {
        const ino = decodeOrigin(value)
        if (ino !== undefined) return ino
        const lower = stat.isDirectory() ? dirs[1] : undefined
        if (lower === undefined) return own
        return andThen(this.statOf(lower), (lst) => this.inodes.map(Number(lst.dev), lst.ino))
      })
    })
  }

  /**
   * Whether `name` exists, is whited out, or is absent in the directory `dir`
   * of one layer: from the cached listing of a lower directory without I/O
   * (synchronously), else by lstat.
   */
  private probe (dir: Hit, name: string, hit: Hit): MaybePromise<Probe> {
    if (dir.layer.isUpper) return this.probeReal(dir, name, hit)
    return andThen(this.dirIndex.get(hitPath(dir)), (listing) => {
      if (listing !== null) {
        const t = listing.typeOf(name)
        if (t === undefined) return listing.has(aufsWhiteoutName(name)) ? WHITEOUT : NONE
        // A character device may be a whiteout (0/0): only its lstat tells; so does a
        // file system that gives no d_type (DT_UNKNOWN: some network and FUSE ones, xfs without ftype).
        if (t !== 'chr' && t !== 'unknown') return t === 'dir' ? (listing.has(aufsWhiteoutName(name)) ? DIR_BELOW_HIDDEN : DIR) : NON_DIR
      }
      return this.probeReal(dir, name, hit)
    })
  }

  private probeReal (dir: Hit, name: string, hit: Hit): MaybePromise<Probe> {
    const whPath = realPath(dir.layer, joinPath(dir.rel, aufsWhiteoutName(name)))
    const whiteoutOrNone = (): MaybePromise<Probe> => andThen(this.exists(dir.layer, whPath), (wh) => wh ? WHITEOUT : NONE)
    const real = hitPath(hit)
    return attempt(() => andThen(this.io.lstat(dir.layer, real), (st): MaybePromise<Probe> => {
      if (st === undefined) return whiteoutOrNone()
      if (isWhiteoutStat(st)) return WHITEOUT
      if (dir.layer.isUpper) this.upperProbed = { real, st, changes: this.changes }
      if (!st.isDirectory()) return NON_DIR
      return andThen(this.exists(dir.layer, whPath), (belowHidden): Probe => ({ kind: 'entry', isDir: true, belowHidden }))
    }), (err) => {
      if (codeOf(err) !== 'ENOTDIR') throw err
      return whiteoutOrNone()
    })
  }

  /** lstat of a name found in a layer (see layer-io.ts). */
  private statOf (hit: Hit): MaybePromise<BigIntStats> {
    const real = hitPath(hit)
    const probed = this.upperProbed
    if (probed !== undefined) {
      this.upperProbed = undefined
      if (probed.real === real && probed.changes === this.changes) return probed.st
    }
    return andThen(this.io.lstat(hit.layer, real), (st) => {
      if (st === undefined) throw new OvlError('ENOENT', `${real} vanished from its layer during lookup`)
      return st
    })
  }

  /** An opaque directory hides the layers below it (xattr in either namespace, or `.wh..wh..opq` inside). */
  isOpaque (hit: Hit): MaybePromise<boolean> {
    const real = hitPath(hit)
    if (hit.layer.isUpper) return this.upperOpaque(hit.layer, real)
    const known = this.lowerOpaque.get(real)
    if (known !== undefined) return known
    return (async () => {
      const listing = await this.dirIndex.get(real)
      const opaque = (listing !== null ? listing.has(WH_OPAQUE) : await this.exists(hit.layer, real + '/' + WH_OPAQUE)) || await this.hasOpaqueXattr(hit.layer, real)
      this.lowerOpaque.set(real, opaque)
      return opaque
    })()
  }

  /**
   * Whether some lower layer shows `path` (ignoring the upper layer): the rule
   * for leaving a whiteout behind when the name is removed from the upper layer.
   */
  async lowerPositive (path: string): Promise<boolean> {
    if (path === '') return true
    const [parentPath, name] = splitPath(path)
    const parent = await this.resolve(parentPath)
    if (parent === null) return false
    for (const pd of parent.dirs) {
      if (pd.layer.isUpper) continue
      const probe = await this.probe(pd, name, { layer: pd.layer, rel: joinPath(pd.rel, name) })
      if (probe.kind === 'entry') return true
      if (probe.kind === 'whiteout') return false
    }
    return false
  }

  /** The xattr names of an object in a layer; none where the filesystem has no xattrs. */
  private xattrNames (hit: Hit): MaybePromise<string[]> {
    return attempt(() => this.io.llistxattr(hit.layer, hitPath(hit)), (err) => {
      if (isNoXattrs(err)) return []
      throw err
    })
  }

  /** One xattr of an object in a layer; null when it is not set or the filesystem keeps none. */
  private xattrOrNull (layer: Layer, real: string, name: string): MaybePromise<Buffer | null> {
    return attempt(() => this.io.lgetxattr(layer, real, name), (err) => {
      if (codeOf(err) === 'ENODATA' || isNoXattrs(err)) return null
      throw err
    })
  }

  private upperOpaque (layer: Layer, real: string): MaybePromise<boolean> {
    return andThen(this.hasOpaqueXattr(layer, real), (x) => x || this.exists(layer, real + '/' + WH_OPAQUE))
  }

  /** The opaque xattr, in either namespace, is "y". */
  private hasOpaqueXattr (layer: Layer, real: string, i = 0): MaybePromise<boolean> {
    if (i >= OPAQUE_NAMES.length) return false
    return andThen(this.xattrOrNull(layer, real, OPAQUE_NAMES[i] as string), (v) => (v !== null && v.toString() === 'y') || this.hasOpaqueXattr(layer, real, i + 1))
  }

  /** readRedirect (redirect.ts) through layer-io: an upper directory's redirect, in either namespace. */
  private upperRedirect (layer: Layer, real: string, i = 0): MaybePromise<string | undefined> {
    if (i >= REDIRECT_NAMES.length) return undefined
    return andThen(this.xattrOrNull(layer, real, REDIRECT_NAMES[i] as string), (v) => {
      const r = v === null ? undefined : parseRedirect(v, real)
      return r !== undefined ? r : this.upperRedirect(layer, real, i + 1)
    })
  }

  private exists (layer: Layer, p: string): MaybePromise<boolean> {
    return attempt(() => andThen(this.io.lstat(layer, p), (st) => st !== undefined), () => false)
  }

  get cachedNodes (): number {
    return this.cache.size
  }
}

/** An xattr call failed because the filesystem keeps no xattrs (or none we may read): as if none were set. */
function isNoXattrs (err: unknown): boolean {
  const c = codeOf(err)
  return c === 'EOPNOTSUPP' || c === 'ENOTSUP' || c === 'EPERM' || c === 'EACCES'
}

/** Absent names remembered at most (Lookup.absent). */
const MAX_ABSENT = 10_000

// Probe answers shared by every lookup (never mutated).
const NONE: Probe = { kind: 'none' }
const WHITEOUT: Probe = { kind: 'whiteout' }
const NON_DIR: Probe = { kind: 'entry', isDir: false, belowHidden: false }
const DIR: Probe = { kind: 'entry', isDir: true, belowHidden: false }
const DIR_BELOW_HIDDEN: Probe = { kind: 'entry', isDir: true, belowHidden: true }

