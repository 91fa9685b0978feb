import { LRUCache } from 'lru-cache'
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

/** Read a real directory: every entry with its type and inode number, in one pass. */
export async function listDir (dir: string): Promise<Map<string, EntryInfo>> {
  const m = new Map<string, EntryInfo>()
  for (const d of await readdirIno(dir)) m.set(d.name, info(d))
  return m
}

function info (d: DirentIno): EntryInfo {
  return { type: dtType(d.type), ino: Number(d.ino) }
}

export type Listing = ReadonlyMap<string, EntryInfo>

/**
 * Listings of lower-layer directories. Lower layers never change while
 * mounted, so one readdir answers every later lookup in that directory,
 * positive or negative, and every `.wh.NAME` probe, without a syscall.
 * Bounded by the total number of entries held; a directory larger than the
 * bound alone is not cached (lookups there fall back to lstat).
 */
export class DirIndex {
  private readonly cache: LRUCache<string, Map<string, EntryInfo>>
  private readonly inflight = new Map<string, Promise<Map<string, EntryInfo> | null>>()
  readonly maxEntries: number

  constructor (maxEntries = 200_000) {
    this.maxEntries = maxEntries
    this.cache = new LRUCache<string, Map<string, EntryInfo>>({
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

  private async load (dir: string): Promise<Map<string, EntryInfo> | null> {
    let m: Map<string, EntryInfo>
    try {
      m = await listDir(dir)
    } catch {
      return null
    }
    if (m.size > this.maxEntries) return null
    this.cache.set(dir, m)
    return m
  }

  get size (): number {
    return this.cache.calculatedSize ?? 0
  }
}
