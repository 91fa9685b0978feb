import { join } from 'node:path'
import { realPathOnce, requireDirInside } from './confine'
import type { DriverLayout } from './layout'

/**
 * The vfs driver (daemon/graphdriver/vfs/driver.go): every layer dir
 * `dir/<id>` is a complete copy of the filesystem up to that layer, so an
 * image's stack is the single top directory and a container's filesystem is
 * its own writable `dir/<mount-id>`, with no upper/work split.
 */
export function vfsLayout (home: string): DriverLayout {
  const realHome = realPathOnce(home)
  async function checkedDir (id: string, what: string): Promise<string> {
    const dir = join(home, 'dir', id)
    await requireDirInside(dir, home, what, realHome)
    return dir
  }
  return {
    async imageStack (cacheIds) {
      const top = cacheIds[0]
      return top === undefined ? [] : [await checkedDir(top, `layer dir of ${top}`)]
    },
    async containerStack (mount) {
      return { lowerdirs: [await checkedDir(mount.mountId, 'container dir')] }
    },
    mountTarget: () => undefined
  }
}
