import { join } from 'node:path'
import type { DriverLayout } from './layout'
import { assertSafeId } from './layerdb'
import { readOptionalText } from './metafile'
import { stackedLayout } from './stacked'

/**
 * The legacy aufs driver (removed in 2022; aufs.go, dirs.go): layer content in
 * `diff/<id>` with literal `.wh.` whiteout files (which the engine reads
 * natively), and `layers/<id>` listing the IDs below `<id>`, one per line,
 * nearest parent first (getParentIDs trims lines and skips blank ones). The
 * container's own `diff/<mount-id>` is its writable branch; aufs has no work dir.
 */
export function aufsLayout (home: string): DriverLayout {
  const diffDir = (id: string): string => join(home, 'diff', id)
  return stackedLayout({
    home,
    diffDir,
    async recordedBelow (id) {
      const file = join(home, 'layers', id)
      const text = await readOptionalText(file)
      if (text === undefined) return undefined
      const ids = text.split('\n').map((line) => line.trim()).filter((line) => line !== '')
      return { file, dirs: ids.map((parent) => diffDir(assertSafeId(file, parent, 'layer id'))) }
    },
    mountTarget: (id) => join(home, 'mnt', id)
  })
}
