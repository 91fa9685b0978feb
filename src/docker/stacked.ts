import { realPathOnce, requireDirInside } from './confine'
import { fileError } from './errors'
import type { DriverLayout } from './layout'
import { mapSeries } from './series'

/**
 * The common shape of drivers that keep one diff directory per layer and
 * stack them (overlay2, fuse-overlayfs, aufs). Each driver says where a
 * layer's diff lives and how to read its own record of the layers below one,
 * which is cross-checked against the layer database's walk.
 */
export interface StackedDriver {
  home: string
  diffDir: (id: string) => string
  /** The driver's own record of the diff dirs below layer `id`, top-most first (`file` names the record). */
  recordedBelow: (id: string) => Promise<{ file: string, dirs: string[] } | undefined>
  /** The overlay work dir of a container layer, for drivers that have one. */
  workDir?: (id: string) => string
  mountTarget: (id: string) => string
}

/** Fails, naming `file`, unless the driver's record lists exactly the `expected` dirs. */
export function compareStack (file: string, below: string, recorded: readonly string[], expected: readonly string[]): void {
  if (recorded.length !== expected.length) {
    throw fileError(file, `lists ${recorded.length} layer(s), but the layer database puts ${expected.length} below ${below}`)
  }
  recorded.forEach((dir, i) => {
    if (dir !== expected[i]) throw fileError(file, `entry ${i + 1} is ${dir}, but the layer database gives ${expected[i] ?? ''}`)
  })
}

export function stackedLayout (driver: StackedDriver): DriverLayout {
  const realHome = realPathOnce(driver.home)

  async function checkedDiff (id: string, what: string): Promise<string> {
    const dir = driver.diffDir(id)
    await requireDirInside(dir, driver.home, what, realHome)
    return dir
  }

  async function crossCheck (id: string, expected: readonly string[]): Promise<void> {
    const record = await driver.recordedBelow(id)
    if (record === undefined) {
      if (expected.length > 0) throw fileError(driver.diffDir(id), `has no record of the ${expected.length} layer(s) the layer database puts below ${id}`)
      return
    }
    compareStack(record.file, id, record.dirs, expected)
  }

  return {
    async imageStack (cacheIds) {
      const dirs = await mapSeries(cacheIds, async (id) => await checkedDiff(id, `diff dir of layer ${id}`))
      const top = cacheIds[0]
      if (top !== undefined) await crossCheck(top, dirs.slice(1))
      return dirs
    },
    async containerStack (mount, imageDirs) {
      const init = mount.initId === undefined ? [] : [await checkedDiff(mount.initId, 'init layer diff dir')]
      const lowerdirs = [...init, ...imageDirs]
      const upperdir = await checkedDiff(mount.mountId, 'container diff dir')
      await crossCheck(mount.mountId, lowerdirs)
      if (driver.workDir === undefined) return { lowerdirs, upperdir }
      const workdir = driver.workDir(mount.mountId)
      await requireDirInside(workdir, driver.home, 'container work dir', realHome)
      return { lowerdirs, upperdir, workdir }
    },
    mountTarget: (mount) => driver.mountTarget(mount.mountId)
  }
}
