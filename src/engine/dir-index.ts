import { promises as fsp, type Dirent } from 'node:fs'
import { LRUCache } from 'lru-cache'

/** File type of a directory entry, as readdir reports it (d_type). */
export type EntryType = 'file' | 'dir' | 'symlink' | 'chr' | 'blk' | 'fifo' | 'sock' | 'unknown'

export function direntType (d: Dirent): EntryType {
  if (d.isFile()) return 'file'
  if (d.isDirectory()) return 'dir'
  if (d.isSymbolicLink()) return 'symlink'
  if (d.isCharacterDevice()) return 'chr'
  if (d.isBlockDevice()) return 'blk'
  if (d.isFIFO()) return 'fifo'
  if (d.isSocket()) return 'sock'
  return 'unknown'
}

export type Listing = ReadonlyMap<string, EntryType>

/**
 * Listings of lower-layer directories. Lower layers never change while
 * mounted, so one readdir answers every later lookup in that directory,
 * positive or negative, and every `.wh.NAME` probe, without a syscall.
 * Bounded by the total number of entries held; a directory larger than the
 * bound alone is not cached (lookups there fall back to lstat).
 */
export class DirIndex {
  private readonly cache: LRUCache<string, Map<string, EntryType>>
  private readonly inflight = new Map<string, Promise<Map<string, EntryType> | null>>()
  readonly maxEntries: number

  constructor (maxEntries = 200_000) {
    this.maxEntries = maxEntries
    this.cache = new LRUCache<string, Map<string, EntryType>>({
      maxSize: maxEntries,
      sizeCalculation: (m) => Math.max(1, m.size),
    })
  }

  /** The listing of a lower directory, or null when it is too large to cache or unreadable. */
  async get (dir: string): Promise<Listing | null> {
    const hit = this.cache.get(dir)
    if (hit !== undefined) return hit
    let p = this.inflight.get(dir)
    if (p === undefined) {
      p = this.load(dir)
      this.inflight.set(dir, p)
      void p.finally(() => this.inflight.delete(dir))
    }
    return await p
  }

  private async load (dir: string): Promise<Map<string, EntryType> | null> {
    let entries: Dirent[]
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true })
    } catch {
      return null
    }
    if (entries.length > this.maxEntries) return null
    const m = new Map<string, EntryType>()
    for (const d of entries) m.set(d.name, direntType(d))
    this.cache.set(dir, m)
    return m
  }

  get size (): number {
    return this.cache.calculatedSize ?? 0
  }
}
