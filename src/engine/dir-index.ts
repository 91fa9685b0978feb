import { LRUCache } from 'lru-cache'
import type { MaybePromise } from './maybe'
import { readdirIno, type DirentIno } from '../native/sys'

/** File type of a directory entry, as readdir reports it (d_type). */
export type EntryType = 'file' | 'dir' | 'symlink' | 'chr' | 'blk' | 'fifo' | 'sock' | 'unknown'

const DT_TYPES: Record<number, EntryType> = { 1: 'fifo', 2: 'chr', 4: 'dir', 6: 'blk', 8: 'file', 10: 'symlink', 12: 'sock' }

export function dtType (d: number): EntryType {
  return DT_TYPES[d] ?? 'unknown'
}

/** A directory entry as getdents gives it: its type and inode number. */
export interface EntryInfo {
  readonly type: EntryType
  readonly ino: number
}

/** What lookups and merged listings need of one layer's directory (a Map fits it). */
export interface Listing {
  readonly size: number
  get: (name: string) => EntryInfo | undefined
  has: (name: string) => boolean
  [Symbol.iterator]: () => IterableIterator<[string, EntryInfo]>
}

/** Read a real directory: every entry with its type and inode number, in one pass. */
export async function listDir (dir: string): Promise<Map<string, EntryInfo>> {
  const m = new Map<string, EntryInfo>()
  for (const d of await readdirIno(dir)) m.set(d.name, info(d))
  return m
}

function info (d: DirentIno): EntryInfo {
  return { type: dtType(d.type), ino: Number(d.ino) }
}

/**
 * A lower directory's listing in a compact form for the cache: one Map from
 * name to position (small integers, no object per entry) and the types and
 * inode numbers in typed arrays; about 40–60 bytes per entry with the name.
 * Lookups are one Map probe.
 */
export class CompactListing implements Listing {
  private readonly index = new Map<string, number>()
  private readonly names: string[]
  private readonly types: Uint8Array
  private readonly inos: Float64Array

  constructor (entries: readonly DirentIno[]) {
    const n = entries.length
    this.names = new Array<string>(n)
    this.types = new Uint8Array(n)
    this.inos = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      const d = entries[i] as DirentIno
      this.names[i] = d.name
      this.types[i] = d.type
      this.inos[i] = Number(d.ino)
      this.index.set(d.name, i)
    }
  }

  get size (): number {
    return this.names.length
  }

  has (name: string): boolean {
    return this.index.has(name)
  }

  /** The entry's type without allocating (undefined when absent). */
  typeOf (name: string): EntryType | undefined {
    const i = this.index.get(name)
    return i === undefined ? undefined : dtType(this.types[i] as number)
  }

  get (name: string): EntryInfo | undefined {
    const i = this.index.get(name)
    return i === undefined ? undefined : { type: dtType(this.types[i] as number), ino: this.inos[i] as number }
  }

  * [Symbol.iterator] (): IterableIterator<[string, EntryInfo]> {
    for (let i = 0; i < this.names.length; i++) {
      yield [this.names[i] as string, { type: dtType(this.types[i] as number), ino: this.inos[i] as number }]
    }
  }
}

/** Default bound of the listing cache: entries over all cached directories (~20–25 MiB). */
export const DEFAULT_MAX_LISTING_ENTRIES = 400_000

/**
 * Listings of lower-layer directories. Lower layers never change while
 * mounted, so one readdir answers every later lookup in that directory,
 * positive or negative, and every `.wh.NAME` probe, without a syscall.
 *
 * Bounded by the total number of entries held (LRU over directories). A
 * directory is read at most a few times: one larger than the bound alone, or
 * one that keeps being evicted and read again (a working set larger than the
 * bound), is remembered as not cacheable, and lookups there fall back to
 * lstat probes instead of re-reading the directory per lookup.
 */
export class DirIndex {
  private readonly cache: LRUCache<string, CompactListing>
  private readonly inflight = new Map<string, Promise<CompactListing | null>>()
  /** How often a directory was read (only for ones read before); bounded. */
  private readonly loads = new LRUCache<string, number>({ max: 10_000 })
  /** Directories not to cache (too large, or evicted and read again too often); bounded. */
  private readonly uncacheable = new LRUCache<string, true>({ max: 10_000 })
  readonly maxEntries: number

  constructor (maxEntries = DEFAULT_MAX_LISTING_ENTRIES) {
    this.maxEntries = maxEntries
    this.cache = new LRUCache<string, CompactListing>({
      maxSize: maxEntries,
      sizeCalculation: (m) => Math.max(1, m.size),
    })
  }

  /**
   * The listing of a lower directory, or null when it is not cached (see
   * above) or unreadable; synchronous when it is in the cache (maybe.ts).
   */
  get (dir: string): MaybePromise<CompactListing | null> {
    const hit = this.cache.get(dir)
    if (hit !== undefined) return hit
    if (this.uncacheable.has(dir)) return null
    let p = this.inflight.get(dir)
    if (p === undefined) {
      p = this.load(dir)
      this.inflight.set(dir, p)
      void p.finally(() => this.inflight.delete(dir))
    }
    return p
  }

  private async load (dir: string): Promise<CompactListing | null> {
    const times = (this.loads.get(dir) ?? 0) + 1
    this.loads.set(dir, times)
    let entries: DirentIno[]
    try {
      entries = await readdirIno(dir)
    } catch {
      return null
    }
    if (entries.length > this.maxEntries || times > 3) {
      this.uncacheable.set(dir, true)
      return null
    }
    const m = new CompactListing(entries)
    this.cache.set(dir, m)
    return m
  }

  get size (): number {
    return this.cache.calculatedSize ?? 0
  }
}
