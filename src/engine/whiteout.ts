import type { BigIntStats, Stats, Dirent } from 'node:fs'

/**
 * Whiteouts: the markers that delete a lower name in a higher layer.
 * - overlayfs form: a character device 0/0 at the name (what the kernel writes);
 * - OCI/AUFS form: an empty file `.wh.NAME` beside it (what layer tars carry,
 *   and Docker's aufs driver kept on disk); the kernel ignores these, ovlfs honours them.
 * `.wh..wh..opq` makes its directory opaque; other `.wh..wh.*` names are AUFS
 * metadata (e.g. the hard-link dir `.wh..wh.plnk`) and are never shown.
 */
export const WH_PREFIX = '.wh.'
export const WH_META_PREFIX = '.wh..wh.'
export const WH_OPAQUE = '.wh..wh..opq'

/** How this mount writes whiteouts into the upper layer. */
export type WhiteoutStyle = 'chardev' | 'aufs'

export function isWhiteoutStat (st: Stats | BigIntStats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0
}

/** A dirent that may be a char-dev whiteout (needs an lstat to be sure). */
export function mayBeWhiteoutDirent (d: Dirent): boolean {
  return d.isCharacterDevice()
}

/** Names that never appear in the merged view: every `.wh.*`. */
export function isWhiteoutName (name: string): boolean {
  return name.startsWith(WH_PREFIX)
}

/** `.wh.NAME` → 'NAME'; undefined for meta entries and other names. */
export function whiteoutTarget (name: string): string | undefined {
  if (!name.startsWith(WH_PREFIX) || name.startsWith(WH_META_PREFIX)) return undefined
  const target = name.slice(WH_PREFIX.length)
  return target === '' || target === '.' || target === '..' ? undefined : target
}

export function aufsWhiteoutName (name: string): string {
  return WH_PREFIX + name
}
