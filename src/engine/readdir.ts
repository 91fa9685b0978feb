import { CompactListing, dtType, listDir, type EntryType } from './dir-index'
import type { Lookup, Node, Hit } from './lookup'
import { hitPath } from './lookup'
import { DT_CHR, DT_UNKNOWN, UNREPRESENTABLE_PREFIX } from '../native/sys'
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
 * A merged directory listing, held by column: entry i's name (the layer
 * listing's own string), d_type, merged st_ino and the layer it comes from.
 * A listing of 200,000 names is these arrays, not 200,000 objects: readdir
 * packs it for the kernel and fast names hands it to the addon by position.
 */
export class MergedListing {
  constructor (
    /** The directory in each layer merged, top first (Node.dirs). */
    readonly dirs: readonly Hit[],
    private readonly names: readonly string[],
    private readonly dts: Uint8Array,
    private readonly inos: Float64Array,
    /** Entry i comes from dirs[from[i]]. */
    private readonly from: Uint16Array,
  ) {}

  get length (): number {
    return this.names.length
  }

  name (i: number): string {
    return this.names[i] as string
  }

  type (i: number): EntryType {
    return dtType(this.dts[i] as number)
  }

  ino (i: number): number {
    return this.inos[i] as number
  }

  setIno (i: number, ino: number): void {
    this.inos[i] = ino
  }

  /** The directory entry i comes from (one of dirs). */
  hit (i: number): Hit {
    return this.dirs[this.from[i] as number] as Hit
  }

  entry (i: number): DirEntry {
    return { name: this.name(i), type: this.type(i), hit: this.hit(i), ino: this.ino(i) }
  }

  toArray (): DirEntry[] {
    const out: DirEntry[] = []
    for (let i = 0; i < this.length; i++) out.push(this.entry(i))
    return out
  }

  * [Symbol.iterator] (): IterableIterator<DirEntry> {
    for (let i = 0; i < this.length; i++) yield this.entry(i)
  }
}

/**
 * The merged listing of a directory: every layer merged into it, top first;
 * a name shows once, from the highest layer holding it; whiteouts (char 0/0
 * and `.wh.NAME`, the latter hiding NAME only in layers below its own) and
 * every `.wh.*` name are left out. `.` and `..` are added by the FUSE adapter.
 */
export async function mergedListing (lookup: Lookup, dir: Node): Promise<MergedListing> {
  return (await merge(lookup, dir)).listing
}

/** Up to how many layers a merge probes the listings above a name instead of keeping a set of the names seen. */
const PROBE_LAYERS = 4

/**
 * The merged listing, and whether some layer also holds names that cannot be
 * listed (not UTF-8). A name of layer i is hidden when a layer above holds
 * it (in any form: entry or whiteout) or a `.wh.` of it. Over a few layers
 * the listings above are probed, so that no set of every name is built (for
 * 200,000 names, megabytes); over more, a set of the names seen is kept, so
 * that a merge of many layers costs a probe per name, not one per layer above it.
 */
async function merge (lookup: Lookup, dir: Node): Promise<{ listing: MergedListing, unrepresentable: boolean }> {
  const layers: CompactListing[] = []
  let bound = 0
  for (const hit of dir.dirs) {
    const l = await listLayerDir(lookup, hit)
    layers.push(l)
    bound += l.size
  }
  const names: string[] = []
  const dts = new Uint8Array(bound)
  const inos = new Float64Array(bound)
  const from = new Uint16Array(bound)
  /** Names a `.wh.NAME` in a layer above hides. */
  const hiddenBelow = new Set<string>()
  /** Every name of the layers above (when not probed). */
  const seen = layers.length > PROBE_LAYERS ? new Set<string>() : undefined
  let unrepresentable = false
  for (let li = 0; li < layers.length; li++) {
    const listing = layers[li] as CompactListing
    const hit = dir.dirs[li] as Hit
    const targets: string[] = []
    for (let i = 0; i < listing.size; i++) {
      const name = listing.nameAt(i)
      if (name.startsWith(UNREPRESENTABLE_PREFIX)) {
        unrepresentable = true
        continue
      }
      if (isWhiteoutName(name)) {
        const target = whiteoutTarget(name)
        if (target !== undefined) targets.push(target)
        continue
      }
      if (hiddenBelow.has(name) || (seen !== undefined ? seen.has(name) : heldAbove(layers, li, name))) continue
      seen?.add(name)
      // Without d_type (DT_UNKNOWN) only lstat tells a whiteout; the entry is listed with its real type then.
      let dt = listing.dtAt(i)
      if (dt === DT_CHR || dt === DT_UNKNOWN) {
        const real = await lstatDt(lookup, hit, name)
        if (real === 'whiteout') continue
        if (real !== undefined) dt = real
      }
      const at = names.length
      names.push(name)
      dts[at] = dt
      inos[at] = lookup.inodes.mapNumber(hit.layer.dev, listing.inoAt(i))
      from[at] = li
    }
    for (const name of targets) hiddenBelow.add(name)
  }
  return { listing: new MergedListing(dir.dirs, names, dts, inos, from), unrepresentable }
}

function heldAbove (layers: readonly CompactListing[], li: number, name: string): boolean {
  for (let j = 0; j < li; j++) if ((layers[j] as CompactListing).has(name)) return true
  return false
}

/**
 * Whether a merged directory holds no entries (rmdir's ENOTEMPTY test). Names
 * that are not UTF-8 are never listed (the binding cannot carry them) but
 * still count: a directory holding one is not empty, as on the kernel.
 */
export async function isEmptyDir (lookup: Lookup, dir: Node): Promise<boolean> {
  const { listing, unrepresentable } = await merge(lookup, dir)
  return listing.length === 0 && !unrepresentable
}

async function listLayerDir (lookup: Lookup, hit: Hit): Promise<CompactListing> {
  const real = hitPath(hit)
  if (!hit.layer.isUpper) {
    const cached = await lookup.dirIndex.get(real)
    if (cached !== null) return cached
  }
  return await listDir(real)
}

/** A layer entry's d_type from lstat ('whiteout' for char 0/0); undefined when it cannot be read. */
async function lstatDt (lookup: Lookup, dir: Hit, name: string): Promise<number | 'whiteout' | undefined> {
  try {
    // Through layer-io: an upper directory emptied by rm -rf holds a whiteout per name, each an lstat here.
    const st = await lookup.io.lstat(dir.layer, hitPath(dir) + '/' + name)
    if (st === undefined) return undefined
    if (isWhiteoutStat(st)) return 'whiteout'
    // d_type is the file type bits of st_mode, shifted (DT_DIR = S_IFDIR >> 12, ...).
    return Number(st.mode & 0o170000n) >> 12
  } catch {
    return undefined
  }
}
