import { closeSync } from 'node:fs'
import type { Logger } from 'pino'
import type { Engine } from '../engine/engine'
import { type Layer, normPath, splitPath } from '../engine/layers'
import type { OpenFile } from '../engine/handles'
import type { Node } from '../engine/lookup'
import type { MergedListing } from '../engine/readdir'
import type { FuseOps } from './binding'

/**
 * Fast names: lookups answered by the addon on the libfuse thread, without
 * crossing to JS (patch item 17). Each request that crosses to the JS thread
 * costs ~100 µs of the binding's own time, several times a whole lookup in
 * fuse-overlayfs; a walk is mostly lookups of names in lower layers.
 *
 * After JS has listed a merged directory (a readdir, or a few lookups in one
 * directory), it hands the addon what a lookup of each name would find: for
 * a non-directory whose top is in a lower layer, the layer's directory fd,
 * the path inside it and how its st_ino maps (InodeMap.linear); for every
 * other name only that it exists (JS answers it); and that the listing is
 * complete, so a name not in it does not exist (-ENOENT there). The addon
 * answers such a lower name with an fstatat and the same reply and cache
 * hints the adapter's getattr gives a lower object with one name; anything
 * it cannot answer the same way (several links, another filesystem, an
 * error) goes to JS. A lower object JS has looked up is handed over too
 * (learned): a directory, whose mergedness (shown with nlink 1) is known
 * only then, and whose attributes the kernel asks again after each listing
 * of it; a file, so that the open that follows its lookup is the addon's.
 *
 * Lower layers do not change while mounted; what changes the merged view is
 * an operation through the mount. Every operation that writes (guard())
 * tells the addon, before it starts and after it ends, which names it
 * changes (patch item 21, changes()): a name created or removed is "ask JS"
 * while the operation runs and after it, or forgotten once removed; its
 * directory's packed listing is dropped, while its completeness is kept
 * (the new name is in the table as "ask JS"); the objects a copy-up moves
 * to the upper layer (the name and its ancestors) are dropped if held as
 * lower objects; a directory renamed, or a change the guard cannot place,
 * empties the whole table. Each change bumps the generation, and a listing
 * made before it is refused, so the addon never answers from a view that an
 * operation has changed.
 *
 * Upper objects JS looked up are handed over too (kinds 6 to 8): their
 * place in the upper layer and their exact inode, which no later change
 * moves without telling the addon (a copy-up, a rename and a removal do);
 * their attributes are read afresh by each fstatat. The addon also answers
 * getxattr of security.capability (the kernel asks it before each write and
 * chown) with ENODATA for objects it holds that have none.
 *
 * The same rule keeps readdir's answers (packed, patch item 18) between
 * changes: a directory listed again is answered by the addon from the copy
 * it was handed (kind 5), or else from JS memory, without merging the
 * layers again (a second walk lists every directory again: the kernel
 * reads a listing anew at each opendir on a writable mount).
 *
 * Files root creates in an upper directory the table holds with a complete
 * listing are made by the addon itself (patch item 25), as engine.create()
 * makes them; it holds the new name, lends the new handle's fd for root's
 * writes (item 23) and closes it at release if JS never saw it. Root's
 * unlinks of lower files (kind 1) in upper directories it holds are links
 * of the work dir's shared whiteout there (item 26). JS takes such handles
 * over, and forgets what it knew of those names, before it runs any
 * operation (adopt()); a directory a change copied up is handed over as
 * upper right after it (upperDir()).
 *
 * Only where the adapter's answer for a lower object is its lstat: no
 * xattr_permissions override, no id mapping, lower timeouts on.
 */
export interface FastTable {
  fastClear: () => number
  fastChange: (records: Buffer) => number
  fastPut: (gen: number, entryMs: number, attrMs: number, records: Buffer, epoch?: number) => number
  fastStats: () => number[]
  fastMove: (path: string, ino: number, upperPath: string) => number
  fastLend: (fh: number, fd: number) => boolean
  fastCreates: (head: Buffer | null) => void
  fastAdopted: () => Buffer | null
  fastWhiteout: (path: string | null) => void
}

/** Lookups JS answers in a directory before it hands the directory's listing over. */
const LISTED_AFTER = 4
/** Names one listing may hand over (the addon holds at most 2^18). */
const MAX_NAMES = (1 << 18) - 1
/** Directories remembered as handed over / counted (then forgotten wholesale). */
const MAX_DIRS = 1 << 16
/** The largest readdir answer handed to the addon (it holds 64 MiB of them at most). */
const MAX_PACKED_BYTES = 8 << 20
/** Bytes of readdir answers kept (the oldest go first). */
const MAX_LISTING_BYTES = 32 << 20
/** The bytes of records handed to the addon at once when a listing is handed over (putListing). */
const LISTING_CHUNK = 1 << 20
const HEADER = 40
/** The largest record of a name: its head, a key and a rel of PATH_MAX bytes each. */
const RECORD_MAX = HEADER + 2 * 4096
const NO_REL = 0xffffffff

/**
 * The operations that change the merged view (open only when it writes or
 * truncates, which copies up first). write and fsync go to upper files
 * opened that way, which the table never holds.
 */
const WRITERS: ReadonlyArray<keyof FuseOps> = [
  'create', 'truncate', 'ftruncate', 'utimens', 'chmod', 'chown', 'mknod', 'mkdir', 'symlink', 'link',
  'unlink', 'rmdir', 'rename', 'setxattr', 'removexattr',
]
const O_ACCMODE = 3
const O_TRUNC = 0o1000

export class FastNames {
  private gen = 0
  private epoch = 0
  /** Directories handed over in this generation (engine paths). */
  private readonly given = new Set<string>()
  /** Lookups JS answered per directory in this generation. */
  private readonly asked = new Map<string, number>()
  /** Directories being listed to be handed over. */
  private readonly pending = new Set<string>()
  private readonly templates = new Map<Layer, Buffer | null>()
  /** readdir's answers since the last change (oldest first), and their bytes. */
  private readonly listings = new Map<string, Buffer>()
  private listingBytes = 0
  /** Whether the addon was told it may create files (patch item 25; at the first operation, once it has a table). */
  private createsAsked = false

  constructor (
    private readonly table: () => FastTable | undefined,
    private readonly engine: Engine,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** static_nlink: directories show nlink 1. */
    private readonly staticNlink = false,
  ) {
    engine.handles.onMove = (path, ino, upperPath) => {
      this.table()?.fastMove(path ?? '', ino, upperPath)
    }
    engine.onSharedWhiteout = (path) => {
      this.table()?.fastWhiteout(path ?? null)
    }
  }

  /** The generation to pass to listed() for a listing that starts now. */
  get generation (): number {
    return this.gen
  }

  /** The merged view changes anywhere: forget everything (a directory rename, a change with no path). */
  changed (): void {
    const t = this.table()
    if (t === undefined) return
    this.gen = t.fastClear()
    this.given.clear()
    this.asked.clear()
    this.pending.clear()
    this.listings.clear()
    this.listingBytes = 0
  }

  /** The merged view changes at these names (engine paths; see changes()): tell the addon, forget what JS kept of them. */
  private apply (list: readonly Change[]): void {
    const t = this.table()
    if (t === undefined) return
    const keys = list.map(([, path]) => dirKey(path))
    const lens = keys.map(k => Buffer.byteLength(k))
    const b = Buffer.alloc(lens.reduce((sum, n) => sum + pad(8 + n), 0))
    let at = 0
    list.forEach(([action, path], i) => {
      b.writeUInt32LE(action, at)
      b.writeUInt32LE(lens[i] as number, at + 4)
      b.write(keys[i] as string, at + 8)
      at += pad(8 + (lens[i] as number))
      if (action === DROP_LISTING) this.dropListing(path)
      else if (action === FORGET_TREE) this.forgetTree(path)
    })
    this.gen = t.fastChange(b)
  }

  private dropListing (dir: string): void {
    const had = this.listings.get(dir)
    if (had === undefined) return
    this.listings.delete(dir)
    this.listingBytes -= had.length
  }

  private forgetTree (path: string): void {
    const under = path + '/'
    for (const dir of [...this.listings.keys()]) if (dir === path || dir.startsWith(under)) this.dropListing(dir)
    for (const dir of [...this.given]) if (dir === path || dir.startsWith(under)) this.given.delete(dir)
  }

  /** JS answered a lookup of `path` (engine form): after a few in one directory, hand its listing over. */
  looked (path: string): void {
    if (path === '') return
    const [dir] = splitPath(path)
    if (this.given.has(dir) || this.pending.has(dir)) return
    const n = (this.asked.get(dir) ?? 0) + 1
    if (n < LISTED_AFTER) {
      if (this.asked.size >= MAX_DIRS) this.asked.clear()
      this.asked.set(dir, n)
      return
    }
    this.asked.delete(dir)
    const gen = this.gen
    this.pending.add(dir)
    this.engine.listing(dir).then(
      (entries) => {
        this.pending.delete(dir)
        this.listed(dir, entries, gen)
      },
      (err: unknown) => {
        this.pending.delete(dir)
        this.log.debug({ dir, err: String(err) }, 'fast names: listing failed')
      },
    )
  }

  /** readdir's answer for `dir` (packDirents), kept since the last change, or undefined. */
  listing (dir: string): Buffer | undefined {
    return this.listings.get(dir)
  }

  /**
   * A listing of `dir` (engine form) made from generation `gen`: hand it to
   * the addon; `packed`, readdir's answer, goes with it (kind 5), or else JS
   * keeps it; either way until the next change.
   */
  listed (dir: string, entries: MergedListing, gen: number, packed?: Buffer): void {
    const t = this.table()
    if (t === undefined || gen !== this.gen) return
    // readdir's answer too, for the addon to give again (kind 5) until the next change.
    const handOver = packed !== undefined && packed.length <= MAX_PACKED_BYTES ? packed : undefined
    // A directory handed over before is handed over again (its readdir answer was dropped by a change in it).
    const handed = entries.length <= MAX_NAMES && this.putListing(t, gen, dir, entries, handOver)
    if (handed) this.mark(dir)
    this.dropListing(dir)
    // JS keeps readdir's answer where the addon does not: the addon answers the directory's readdir itself.
    if (packed === undefined || (handed && handOver !== undefined) || packed.length > MAX_LISTING_BYTES) return
    while (this.listingBytes + packed.length > MAX_LISTING_BYTES) {
      const [oldest, buf] = this.listings.entries().next().value as [string, Buffer]
      this.listings.delete(oldest)
      this.listingBytes -= buf.length
    }
    this.listings.set(dir, packed)
    this.listingBytes += packed.length
  }

  /**
   * JS answered a lookup of an object whose top is in a lower layer (from
   * generation `gen`): the addon may answer it next time, and open it. For a
   * directory (the kernel asks its attributes again after each listing, for
   * its atime) with nlink 1 when it is merged from several layers or with
   * static_nlink; a file with several names stays with JS.
   */
  learned (path: string, node: Node, gen: number): void {
    const t = this.table()
    if (t === undefined || gen !== this.gen || path === '' || node.index !== undefined || node.data !== undefined) return
    const merged = node.dirs.length > 1 || this.staticNlink
    if (node.top.layer.isUpper) {
      // An upper object: its exact inode, shown as node.ino (item 21).
      const kind = node.isDir ? (merged ? 8 : 7) : node.stat.nlink === 1n ? 6 : 0
      const head = kind === 0 ? null : this.template(node.top.layer)
      if (head === null) return
      const exact = Buffer.from(head)
      const real = node.stat.ino
      exact.writeBigUInt64LE(BigInt.asUintN(64, BigInt(node.ino) - real), 8)
      exact.writeBigUInt64LE(real + 1n, 16)
      const rel = node.top.rel.slice(1)
      this.put(t, gen, record(kind, path, exact, rel === path.slice(1) ? null : rel))
      return
    }
    const kind = node.isDir ? (merged ? 4 : 3) : node.stat.nlink === 1n ? 1 : 0
    if (kind === 0) return
    const rec = new Records()
    if (this.lowerRecord(rec, kind, path, node.top.layer, node.top.rel.slice(1))) this.put(t, gen, rec.done())
  }

  /** fuse_native_fast_put; false if refused. Notices when the addon emptied its table to make room. */
  private put (t: FastTable, gen: number, records: Buffer): boolean {
    const epoch = t.fastPut(gen, this.timeoutMs, this.timeoutMs, records)
    if (epoch < 0) return false
    this.noticeEpoch(epoch)
    return true
  }

  /** The addon's table is at `epoch`: if it emptied itself to make room, what it was given before is gone. */
  private noticeEpoch (epoch: number): void {
    if (epoch !== this.epoch) {
      this.epoch = epoch
      this.given.clear()
    }
  }

  /**
   * Files root created through the mount that the addon made itself (patch
   * item 25: a new name in an upper directory it holds with a complete
   * listing): JS takes over their handles and forgets what it knew of their
   * names before it runs any operation (adopting()), so that read, write,
   * fsync and release find the handle and a lookup finds the file.
   */
  private adopt (): void {
    const t = this.table()
    if (t === undefined) return
    if (!this.createsAsked) {
      this.createsAsked = true
      const upper = this.engine.stack.upper
      const head = upper !== undefined && process.env.OVLFS_FAST_CREATE !== '0' ? this.template(upper) : null
      if (head !== null) t.fastCreates(head)
    }
    const b = t.fastAdopted()
    if (b === null) return
    for (let at = 8; at + 32 <= b.length;) {
      const fh = Number(b.readBigUInt64LE(at))
      const fd = b.readInt32LE(at + 8)
      const flags = b.readInt32LE(at + 12)
      const ino = Number(b.readBigUInt64LE(at + 16))
      const len = b.readUInt32LE(at + 24)
      const path = normPath(b.toString('utf8', at + 32, at + 32 + len))
      at += (32 + len + 1 + 7) & ~7
      try {
        this.engine.adoptCreated(path, fh, fd, flags, ino)
      } catch (err) {
        // Not reachable by construction (the addon's handles are unique and above JS's); never leak the fd.
        this.log.error({ path, fh, err: String(err) }, 'fast names: a file the addon created could not be adopted')
        if (fd >= 0) closeSync(fd)
      }
      const [dir] = splitPath(path)
      this.dropListing(dir)
      this.given.delete(dir)
    }
    this.gen = b.readUInt32LE(0)
  }

  /** Every operation adopts the files the addon created first (adopt()). */
  private adopting (ops: Record<string, unknown>): void {
    for (const [name, op] of Object.entries(ops)) {
      if (typeof op !== 'function') continue
      const fn = op as (...args: unknown[]) => unknown
      ops[name] = (...args: unknown[]) => {
        this.adopt()
        return fn(...args)
      }
    }
  }

  /**
   * Wrap the writing operations: the addon is told what each changes
   * (changes()) before it starts and after it ends. Every operation adopts
   * the files the addon created first (adopt()).
   */
  guard (ops: FuseOps): FuseOps {
    const out: Record<string, unknown> = { ...ops }
    for (const name of WRITERS) {
      const op = ops[name] as ((...args: unknown[]) => void) | undefined
      if (op === undefined) continue
      out[name] = (...args: unknown[]) => {
        const plan = this.changes(name, args)
        this.run(plan?.during)
        const cb = args[args.length - 1] as (...r: unknown[]) => void
        args[args.length - 1] = (...r: unknown[]) => {
          this.run(r[0] === 0 ? plan?.done : plan?.during)
          if (r[0] === 0 && plan?.made !== undefined) this.made(plan.made, name === 'mkdir')
          if (r[0] === 0 && plan?.inDir !== undefined) this.upperDir(plan.inDir)
          cb(...r)
        }
        op(...args)
      }
    }
    const open = ops.open
    if (open !== undefined) {
      out.open = (path: string, flags: number, cb: (...r: unknown[]) => void) => {
        if ((flags & O_ACCMODE) === 0 && (flags & O_TRUNC) === 0) return open(path, flags, cb as never)
        // It copies up first, as a change of attributes does.
        const plan = this.changes('open', [path])
        this.run(plan?.during)
        open(path, flags, ((...r: unknown[]) => {
          this.run(plan?.during)
          cb(...r)
        }) as never)
      }
    }
    this.adopting(out)
    return out as unknown as FuseOps
  }

  /**
   * An object was just created at `path` (its creation not yet answered, so
   * nothing else can have reached it): hand it over as JS looked it up, and
   * a new directory's listing too, empty and complete (a directory made
   * where a lower one was hidden is opaque), so that lookups of names in it
   * do not cross to JS until they exist.
   */
  private made (path: string, dir: boolean): void {
    const t = this.table()
    if (t === undefined) return
    const node = this.engine.lookup.peek(path)
    if (node !== undefined) this.learned(path, node, this.gen)
    if (dir && this.put(t, this.gen, record(2, dirKey(path), EMPTY_HEAD))) this.mark(path)
  }

  /**
   * A name was created or removed in `dir`, which the change copied up if it
   * was not: hand the upper directory over (kinds 7, 8), so that the addon
   * makes root's next creates and unlinks of lower files there (items 25, 26).
   */
  private upperDir (dir: string): void {
    if (dir === '') return
    const node = this.engine.lookup.peek(dir)
    if (node !== undefined && node.isDir && node.top.layer.isUpper) this.learned(dir, node, this.gen)
  }

  /** Whether `path` is (or may be: not known without waiting) a non-directory with several names. */
  private hardLinked (path: string): boolean {
    if (path === '') return false
    let node: Node | null
    try {
      const r = this.engine.lookup.resolveMaybe(path)
      if (r instanceof Promise) {
        r.catch(() => {})
        return true
      }
      node = r
    } catch {
      return false
    }
    return node !== null && !node.isDir && (node.stat.nlink > 1n || node.index !== undefined)
  }

  /** Apply a change list; undefined: the change cannot be placed, forget everything. */
  private run (list: readonly Change[] | undefined): void {
    if (list === undefined) {
      if (this.log.isLevelEnabled('debug')) this.log.debug({ stack: new Error().stack }, 'fast names: emptied')
      this.changed()
    } else {
      this.apply(list)
    }
  }

  /**
   * What a writing operation changes, name by name: `during` while it runs
   * (and after it, if it fails), `done` once it succeeded; undefined when
   * only emptying the table will do.
   */
  private changes (op: keyof FuseOps, args: unknown[]): { during: Change[], done: Change[], made?: string, inDir?: string } | undefined {
    const p = (i: number): string | undefined => typeof args[i] === 'string' ? normPath(args[i] as string) : undefined
    // Only a directory JS holds as upper counts: one it does not know may still be a lower one.
    const up = (path: string): boolean => this.engine.lookup.peek(path)?.top.layer.isUpper === true
    // A copy-up or removal of one name of a hard-linked file changes how its other names (anywhere) are served.
    // (A name being created is no such file; rmdir's is a directory.)
    const existing = op === 'rename' ? [0, 1] : op === 'create' || op === 'mknod' || op === 'mkdir' || op === 'symlink' || op === 'rmdir' ? [] : [0]
    for (const i of existing) {
      const path = p(i)
      if (path !== undefined && this.hardLinked(path)) return undefined
    }
    switch (op) {
      case 'create': case 'mknod': case 'mkdir': case 'symlink': {
        const path = p(op === 'symlink' ? 1 : 0)
        if (path === undefined || path === '') return undefined
        const list = created(path, up)
        return { during: list, done: list, made: path, inDir: splitPath(path)[0] }
      }
      case 'link': {
        const src = p(0)
        const dst = p(1)
        if (src === undefined || dst === undefined || src === '' || dst === '') return undefined
        const list = [...created(dst, up), ...changedIn(src, up)]
        return { during: list, done: list }
      }
      case 'unlink': case 'rmdir': {
        const path = p(0)
        if (path === undefined || path === '') return undefined
        const during = created(path, up)
        return { during, done: [[op === 'rmdir' ? FORGET_TREE : FORGET, path], ...during.slice(1)], inDir: splitPath(path)[0] }
      }
      case 'rename': {
        const src = p(0)
        const dst = p(1)
        if (src === undefined || dst === undefined || src === '' || dst === '') return undefined
        // A directory moves its whole subtree (and its redirect): empty the table.
        const node = this.engine.lookup.peek(src)
        if (node === undefined || node.isDir) return undefined
        const during = [...created(src, up), ...created(dst, up)]
        return { during, done: [[FORGET, src], ...during.slice(1)] }
      }
      case 'open': case 'truncate': case 'ftruncate': case 'utimens': case 'chmod': case 'chown': case 'setxattr': case 'removexattr': {
        const path = p(0)
        if (path === undefined) return undefined
        const list = path === '' ? [] : changedIn(path, up)
        return { during: list, done: list }
      }
      default:
        return undefined
    }
  }

  /** [names held, lookups answered by the addon, of them absent names, files opened by the addon, chmod/chown/utimens it made, writes through lent fds, files it created, unlinks it made, reads it answered with the file (spliced)]. */
  stats (): number[] {
    return this.table()?.fastStats() ?? [0, 0, 0, 0, 0, 0, 0, 0, 0]
  }

  /**
   * A file JS just created (a new upper file, which no copy-up moves): the
   * addon may write through its fd for root callers (patch item 23) until
   * {@link unlend}, which must come before the fd is closed.
   */
  lend (h: OpenFile): void {
    if (h.upper) this.table()?.fastLend(h.id, h.fd)
  }

  /** Take a handle's fd back from the addon, before it is closed. */
  unlend (fh: number): void {
    this.table()?.fastLend(fh, -1)
  }

  private mark (dir: string): void {
    if (this.given.size >= MAX_DIRS) this.given.clear()
    this.given.add(dir)
  }

  /**
   * Hand a listing over (fuse_native_fast_put): one record per name, in
   * puts of about LISTING_CHUNK bytes (the addon copies each; the records of
   * 200,000 names in one Buffer, held beside that copy, made a large
   * directory's listing the daemon's peak of memory); then, once every name
   * is in, the directory's completeness (a name not in it does not exist)
   * and readdir's answer. The first put may empty the table to make room;
   * the others name its epoch, and are refused rather than empty it: a
   * completeness never stands without the names put before it. A listing
   * refused mid-way is begun again once (the names put stay valid: they
   * are of this generation). false if refused.
   *
   * A directory whose top is the last layer of its parent's merge cannot be
   * merged itself (no layer below it holds the name), so its attributes are
   * its lstat too.
   */
  private putListing (t: FastTable, gen: number, dir: string, entries: MergedListing, packed: Buffer | undefined): boolean {
    const key = dirKey(dir)
    const parent = this.engine.lookup.getMaybe(dir)
    const last = parent instanceof Promise ? undefined : parent.dirs[parent.dirs.length - 1]
    const bottomKind = this.staticNlink ? 4 : 3
    // Room for a chunk, the record that passes its end, and the last put's two.
    const recs = new Records(Math.min(LISTING_CHUNK, entries.length * 128) + 2 * RECORD_MAX + (packed === undefined ? 0 : pad(HEADER + Buffer.byteLength(key) + packed.length)))
    for (let attempt = 0; attempt < 2; attempt++) {
      let epoch = -1
      const flush = (): boolean => {
        const e = t.fastPut(gen, this.timeoutMs, this.timeoutMs, recs.done(), epoch)
        recs.clear()
        if (e < 0) return false
        this.noticeEpoch(e)
        epoch = e
        return true
      }
      let i = 0
      for (; i < entries.length; i++) {
        const name = entries.name(i)
        const hit = entries.hit(i)
        const type = entries.type(i)
        const path = dir + '/' + name
        const layer = hit.layer
        let kind = 0
        if (!layer.isUpper && type !== 'unknown') kind = type !== 'dir' ? 1 : hit === last ? bottomKind : 0
        // In the layer, the name is where its parent's part is: the merged path unless a redirect led elsewhere.
        if (kind === 0 || !this.lowerRecord(recs, kind, path, layer, (hit.rel + '/' + name).slice(1))) recs.add(0, path, EMPTY_HEAD)
        if (recs.length >= LISTING_CHUNK && !flush()) break
      }
      if (i < entries.length) continue
      recs.add(2, key, EMPTY_HEAD)
      if (packed !== undefined) recs.add(5, key, EMPTY_HEAD, packed)
      if (flush()) return true
    }
    return false
  }

  /** Add the record of an object the addon stats itself (at `rel` in `layer`); false when the layer does not allow it. */
  private lowerRecord (recs: Records, kind: number, key: string, layer: Layer, rel: string): boolean {
    const head = this.template(layer)
    if (head === null) return false
    recs.add(kind, key, head, rel === key.slice(1) ? null : rel)
    return true
  }

  /** A layer's 40-byte record head (fd, st_ino rule, st_dev), or null when the addon cannot stat in it. */
  private template (layer: Layer): Buffer | null {
    let t: Buffer | null | undefined = this.templates.get(layer)
    if (t === undefined) {
      const fd = layerFd(layer.root)
      const rule = this.engine.lookup.inodes.linear(layer.dev)
      if (fd === null || rule === undefined) {
        t = null
      } else {
        t = Buffer.alloc(HEADER)
        t.writeUInt32LE(fd, 4)
        t.writeBigUInt64LE(rule.add, 8)
        t.writeBigUInt64LE(rule.limit, 16)
        t.writeBigUInt64LE(BigInt(layer.dev), 24)
      }
      this.templates.set(layer, t)
    }
    return t
  }
}

/** One name's change for the addon (fuse_native_fast_change): the action and an engine path. */
type Change = readonly [number, string]
const ASK = 1
const FORGET = 2
const FORGET_TREE = 3
const DROP_LISTING = 4
const COPIED_UP = 5

/** The name and its ancestors, copied up by a change of it: held as lower objects no more. */
function copiedUp (path: string, isUpper: (path: string) => boolean): Change[] {
  const list: Change[] = []
  // A directory already in the upper layer has all its ancestors there too (a copy-up copies the parents first).
  for (let p = path; p !== '' && !isUpper(p); p = splitPath(p)[0]) list.push([COPIED_UP, p])
  return list
}

/** An object changed in place (copied up first): its directory's readdir answer is made again, to be sure. */
function changedIn (path: string, isUpper: (path: string) => boolean): Change[] {
  return [[DROP_LISTING, splitPath(path)[0]], ...copiedUp(path, isUpper)]
}

/** A name created or removed in its directory: ask JS for it, the directory's listing changes, the ancestors are copied up. */
function created (path: string, isUpper: (path: string) => boolean): Change[] {
  const dir = splitPath(path)[0]
  return [[ASK, path], [DROP_LISTING, dir], ...copiedUp(dir, isUpper)]
}

/** The head of a record the addon does not stat itself. */
const EMPTY_HEAD = Buffer.alloc(HEADER)

/**
 * One record as fuse_native_fast_put reads it (layout in fuse-native.c): the
 * 40-byte head (`head`: a layer's template, or EMPTY_HEAD) with the kind and
 * the lengths, the key, then the payload: the path in the layer (null: the
 * key without its '/') or a packed listing; padded to 4 bytes.
 */
function record (kind: number, key: string, head: Buffer, payload: string | Buffer | null = null): Buffer {
  return new Records().add(kind, key, head, payload).done()
}

/**
 * Records written one after another into one buffer, grown by doubling and
 * reused after clear(): a listing's puts are one allocation, not a Buffer
 * per name.
 */
class Records {
  private buf: Buffer
  private len = 0

  /** `capacity`: the bytes expected (it grows past them if need be). */
  constructor (capacity = 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, 64))
  }

  add (kind: number, key: string, head: Buffer, payload: string | Buffer | null = null): this {
    const keyLen = Buffer.byteLength(key)
    const payloadLen = payload === null ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length
    const size = pad(HEADER + keyLen + payloadLen)
    if (this.len + size > this.buf.length) {
      let cap = this.buf.length * 2
      while (cap < this.len + size) cap *= 2
      const grown = Buffer.allocUnsafe(cap)
      this.buf.copy(grown, 0, 0, this.len)
      this.buf = grown
    }
    const buf = this.buf
    const at = this.len
    head.copy(buf, at, 0, HEADER)
    buf.writeUInt32LE(kind, at)
    buf.writeUInt32LE(keyLen, at + 32)
    buf.writeUInt32LE(payload === null ? NO_REL : payloadLen, at + 36)
    buf.write(key, at + HEADER)
    if (typeof payload === 'string') buf.write(payload, at + HEADER + keyLen)
    else if (payload !== null) payload.copy(buf, at + HEADER + keyLen)
    buf.fill(0, at + HEADER + keyLen + payloadLen, at + size)
    this.len += size
    return this
  }

  get length (): number {
    return this.len
  }

  /** Start again (the buffer is kept). */
  clear (): void {
    this.len = 0
  }

  /** The records so far (a view of the buffer, valid until the next add after clear()). */
  done (): Buffer {
    return this.buf.subarray(0, this.len)
  }
}

/** A directory's key in the addon's table: its FUSE path ('/' for the root). */
function dirKey (dir: string): string {
  return dir === '' ? '/' : dir
}

/** The descriptor a pinned layer root ('/proc/self/fd/N/.') holds, or null. */
function layerFd (root: string): number | null {
  const m = /^\/proc\/self\/fd\/(\d+)\/\.$/.exec(root)
  return m === null ? null : Number(m[1])
}

function pad (n: number): number {
  return (n + 3) & ~3
}
