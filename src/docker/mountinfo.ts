import { realpath } from 'node:fs/promises'
import { fsError, isNotFound } from './errors'
import { readText } from './metafile'

/** Where the kernel lists the mounts of our mount namespace. */
export const SELF_MOUNTINFO = '/proc/self/mountinfo'

/** Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash). */
function unescapeMountPath (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** The mount points (field 5) listed in a mountinfo text. */
export function parseMountpoints (text: string): string[] {
  const points: string[] = []
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4]
    if (field !== undefined && field !== '') points.push(unescapeMountPath(field))
  }
  return points
}

/** True when `dir` exists and (by its real path) is a mount point listed in `mountinfo`. */
export async function isMountpoint (dir: string, mountinfo = SELF_MOUNTINFO): Promise<boolean> {
  let real: string
  try {
    real = await realpath(dir)
  } catch (err) {
    if (isNotFound(err)) return false
    throw fsError(dir, err)
  }
  return parseMountpoints(await readText(mountinfo)).includes(real)
}
