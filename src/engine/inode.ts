import { createHash } from 'node:crypto'
import type { LayerStack } from './layers'

/**
 * st_ino for the merged view, following the kernel's rules (ovl_getattr):
 * - an object reports the inode number of the real object it came from: a
 *   lower-only object its own, a copied-up object the number it had before
 *   copy-up (recorded in the origin xattr at copy-up), so st_ino never changes
 *   through copy-up or remount;
 * - when all layers share one filesystem, real numbers are unique already and
 *   are used as they are;
 * - otherwise the filesystem's index goes into the high bits (the kernel's
 *   xino idea): index × 2^47 + ino, and a hash for numbers that do not fit.
 * Numbers stay below 2^53 so they are exact in a JS number.
 */
export class InodeMap {
  private readonly fsIndex = new Map<number, number>()
  private readonly single: boolean

  constructor (stack: LayerStack) {
    for (const l of stack.layers) {
      if (!this.fsIndex.has(l.dev)) this.fsIndex.set(l.dev, this.fsIndex.size)
    }
    this.single = this.fsIndex.size === 1
  }

  /** The merged st_ino of the real object (dev, ino). */
  map (dev: number, ino: bigint): number {
    return ino < 2n ** 53n ? this.mapNumber(dev, Number(ino)) : hashIno(dev, ino)
  }

  /** `map` for a number (d_ino from getdents; exact below 2^53), without a BigInt when the answer needs none. */
  mapNumber (dev: number, ino: number): number {
    if (this.single && ino < 2 ** 53) return ino
    const idx = this.fsIndex.get(dev)
    if (idx !== undefined && idx < 32 && ino < XINO_LIMIT_NUMBER) return idx * XINO_LIMIT_NUMBER + ino
    return hashIno(dev, BigInt(ino))
  }

  /**
   * How `map` treats the numbers of filesystem `dev` when it adds an offset:
   * merged = add + ino for every ino < limit (no hash below the limit), so
   * code outside JS can compute it (the addon's fast names, patch item 17);
   * undefined for a filesystem this map does not know.
   */
  linear (dev: number): { add: bigint, limit: bigint } | undefined {
    if (this.single) return { add: 0n, limit: 2n ** 53n }
    const idx = this.fsIndex.get(dev)
    if (idx === undefined || idx >= 32) return undefined
    return { add: BigInt(idx) * XINO_LIMIT, limit: XINO_LIMIT }
  }
}

const XINO_LIMIT = 2n ** 47n
const XINO_LIMIT_NUMBER = Number(XINO_LIMIT)

function hashIno (dev: number, ino: bigint): number {
  const h = createHash('sha256').update(`${dev}:${ino}`).digest()
  // 52 bits with the top one set: never collides with the xino range of fs index < 32.
  return (h.readUIntBE(0, 6) % 2 ** 52) + 2 ** 52
}

/** Encode/decode the origin xattr: the merged st_ino the object had before copy-up. */
export function encodeOrigin (ino: number): Buffer {
  return Buffer.from(String(ino))
}

export function decodeOrigin (value: Buffer | null): number | undefined {
  if (value === null) return undefined
  const s = value.toString()
  if (!/^[0-9]{1,16}$/.test(s)) return undefined
  const n = Number(s)
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}
