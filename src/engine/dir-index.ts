import { LRUCache } from 'lru-cache'
import type { MaybePromise } from './maybe'
import { direntCount, eachDirent, readdirRaw } from '../native/sys'

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

/** Read a real directory: every entry with its type and inode number, in one pass. */
export async function listDir (dir: string): Promise<CompactListing> {
  return new CompactListing(await readdirRaw(dir))
}

/**
 * One layer's directory listing in a compact form (the cache holds these,
 * and merges read them): one Map from name to position (small integers, no
 * object per entry) and the types and inode numbers in typed arrays; about
 * 40–60 bytes per entry with the name. Lookups are one Map probe; a merge
 * reads entry i by position (nameAt, dtAt, inoAt) without allocating.
 */
export class CompactListing {
  private readonly index = new Map<string, number>()
  private readonly names: string[]
  private readonly types: Uint8Array
  private readonly inos: Float64Array

  /** From readdirRaw's answer, of `n` entries. */
  constructor (raw: Buffer, n = direntCount(raw)) {
    this.names = new Array<string>(n)
    this.types = new Uint8Array(n)
    this.inos = new Float64Array(n)
    let i = 0
    eachDirent(raw, (name, type, ino) => {
      this.names[i] = name
      this.types[i] = type
      this.inos[i] = ino
      this.index.set(name, i)
      i++
    })
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

  /** Entry i's name (0 <= i < size). */
  nameAt (i: number): string {
    return this.names[i] as string
  }

  /** Entry i's d_type (DT_* number). */
  dtAt (i: number): number {
    return this.types[i] as number
  }

  /** Entry i's d_ino. */
  inoAt (i: number): number {
    return this.inos[i] as number
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
    let raw: Buffer
    try {
      raw = await readdirRaw(dir)
    } catch {
      return null
    }
    const n = direntCount(raw)
    if (n > this.maxEntries || times > 3) {
      this.uncacheable.set(dir, true)
      return null
    }
    const m = new CompactListing(raw, n)
    this.cache.set(dir, m)
    return m
  }

  get size (): number {
    return this.cache.calculatedSize ?? 0
  }
}
