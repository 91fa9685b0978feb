import { dtType, listDir, type EntryType, type Listing } from './dir-index'
import type { Lookup, Node, Hit } from './lookup'
import { hitPath } from './lookup'
import { UNREPRESENTABLE_PREFIX } from '../native/sys'
import { isWhiteoutName, isWhiteoutStat, whiteoutTarget } from './whiteout'

export interface DirEntry {
  readonly name: string
  readonly type: EntryType
  /** The layer the entry comes from. */
  readonly hit: Hit
  /** The merged st_ino of the layer's object, from its d_ino there as stat maps it (an upper object with an origin record maps otherwise: Engine.readdirWithIno). */
  readonly ino: number
}

/**
 * The merged listing of a directory: every layer merged into it, top first;
 * a name shows once, from the highest layer holding it; whiteouts (char 0/0
 * and `.wh.NAME`, the latter hiding NAME only in layers below its own) and
 * every `.wh.*` name are left out. `.` and `..` are added by the FUSE adapter.
 */
export async function mergedEntries (lookup: Lookup, dir: Node): Promise<DirEntry[]> {
  return (await merge(lookup, dir)).entries
}

/** The merged listing, and whether some layer also holds names that cannot be listed (not UTF-8). */
async function merge (lookup: Lookup, dir: Node): Promise<{ entries: DirEntry[], unrepresentable: boolean }> {
  const seen = new Set<string>()
  const out: DirEntry[] = []
  let unrepresentable = false
  for (const hit of dir.dirs) {
    const listing = await listLayerDir(lookup, hit)
    const hiddenBelow: string[] = []
    for (const [name, { type, ino }] of listing) {
      if (name.startsWith(UNREPRESENTABLE_PREFIX)) {
        unrepresentable = true
        continue
      }
      if (isWhiteoutName(name)) {
        const target = whiteoutTarget(name)
        if (target !== undefined) hiddenBelow.push(target)
        continue
      }
      if (seen.has(name)) continue
      seen.add(name)
      // Without d_type (DT_UNKNOWN) only lstat tells a whiteout; the entry is listed with its real type then.
      let t = type
      if (t === 'chr' || t === 'unknown') {
        const real = await lstatType(lookup, hit, name)
        if (real === 'whiteout') continue
        if (real !== undefined) t = real
      }
      out.push({ name, type: t, hit, ino: lookup.inodes.mapNumber(hit.layer.dev, ino) })
    }
    for (const name of hiddenBelow) seen.add(name)
  }
  return { entries: out, unrepresentable }
}

/**
 * Whether a merged directory holds no entries (rmdir's ENOTEMPTY test). Names
 * that are not UTF-8 are never listed (the binding cannot carry them) but
 * still count: a directory holding one is not empty, as on the kernel.
 */
export async function isEmptyDir (lookup: Lookup, dir: Node): Promise<boolean> {
  const { entries, unrepresentable } = await merge(lookup, dir)
  return entries.length === 0 && !unrepresentable
}

async function listLayerDir (lookup: Lookup, hit: Hit): Promise<Listing> {
  const real = hitPath(hit)
  if (!hit.layer.isUpper) {
    const cached = await lookup.dirIndex.get(real)
    if (cached !== null) return cached
  }
  return await listDir(real)
}

/** A layer entry's type from lstat ('whiteout' for char 0/0); undefined when it cannot be read. */
async function lstatType (lookup: Lookup, dir: Hit, name: string): Promise<EntryType | 'whiteout' | undefined> {
  try {
    // Through layer-io: an upper directory emptied by rm -rf holds a whiteout per name, each an lstat here.
    const st = await lookup.io.lstat(dir.layer, hitPath(dir) + '/' + name)
    if (st === undefined) return undefined
    if (isWhiteoutStat(st)) return 'whiteout'
    // d_type is the file type bits of st_mode, shifted (DT_DIR = S_IFDIR >> 12, ...).
    return dtType(Number(st.mode & 0o170000n) >> 12)
  } catch {
    return undefined
  }
}
