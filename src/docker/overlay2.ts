import { readlink } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { isStrictlyInside, realPathOf, realPathOnce } from './confine'
import { codeOf, fileError, fsError, quote } from './errors'
import type { DriverLayout } from './layout'
import { readOptionalText } from './metafile'
import { mapSeries } from './series'
import { stackedLayout } from './stacked'

/**
 * The overlay2 driver's home (daemon/graphdriver/overlay2/overlay.go), also
 * used unchanged by Docker's fuse-overlayfs driver:
 * `<id>/diff`, `<id>/work`, `<id>/link`, `<id>/lower` (colon-separated
 * `l/<LINKID>` entries, top-most first, no trailing newline) and
 * `l/<LINKID> -> ../<id>/diff`.
 */

/** overlay2's maxDepth: a lower file never lists more entries. */
const MAX_LOWER_ENTRIES = 128

/** A `lower` entry must be `l/<name>` with a plain name (no '/', whitespace or control characters). */
const LOWER_ENTRY = /^l\/([^/\s\u0000-\u001f]+)$/

/**
 * getLowerDirs for one entry: readlink `l/<LINKID>`, join with `l/` and clean.
 * The link must point inside the home, lexically and by real path.
 */
export async function resolveLowerEntry (home: string, lowerFile: string, entry: string, realHome = realPathOnce(home)): Promise<string> {
  const name = LOWER_ENTRY.exec(entry)?.[1]
  if (name === undefined || name === '.' || name.includes('..')) {
    throw fileError(lowerFile, `entry ${quote(entry)} is not of the form l/<link id> (contains '/', '..' or whitespace)`)
  }
  const link = join(home, 'l', name)
  const target = await readlink(link).catch((err: unknown) => {
    throw codeOf(err) === 'EINVAL' ? fileError(link, 'is not a symbolic link') : fsError(link, err)
  })
  const resolved = resolve(home, 'l', target)
  if (isAbsolute(target) || !isStrictlyInside(home, resolved)) {
    throw fileError(link, `symlink points to ${quote(target)}, outside ${home}`)
  }
  const real = await realPathOf(link)
  if (!isStrictlyInside(await realHome(), real)) throw fileError(link, `symlink resolves to ${real}, outside ${home}`)
  return resolved
}

export function overlay2Layout (home: string): DriverLayout {
  const realHome = realPathOnce(home)
  return stackedLayout({
    home,
    diffDir: (id) => join(home, id, 'diff'),
    async recordedBelow (id) {
      const file = join(home, id, 'lower')
      const text = await readOptionalText(file)
      if (text === undefined) return undefined
      const entries = text.split(':')
      if (entries.length > MAX_LOWER_ENTRIES) throw fileError(file, `lists ${entries.length} entries, more than overlay2's maximum of ${MAX_LOWER_ENTRIES}`)
      const dirs = await mapSeries(entries, async (entry) => await resolveLowerEntry(home, file, entry, realHome))
      return { file, dirs }
    },
    workDir: (id) => join(home, id, 'work'),
    mountTarget: (id) => join(home, id, 'merged')
  })
}
