import * as fs from 'node:fs'

/**
 * The empty stand-in lowerdir of a zero-layer image. `mount-image` makes it
 * (mkdtemp under $TMPDIR) because a mount needs at least one lowerdir, and
 * names it to the mount command in this variable; the process that serves the
 * mount removes it after the unmount, so a normal unmount leaves nothing in
 * $TMPDIR. If the mount fails, `mount-image` removes it itself.
 */
export const STAND_IN_ENV = 'OVLFS_EMPTY_STAND_IN'

/**
 * The stand-in this mount was given, or undefined: the variable must name the
 * mount's only lowerdir (after both are resolved), so a stray variable can
 * never make the daemon remove anything else.
 */
export function standInOf (lowerdirs: readonly string[], env: NodeJS.ProcessEnv = process.env): string | undefined {
  const named = env[STAND_IN_ENV]
  if (named === undefined || named === '' || lowerdirs.length !== 1) return undefined
  try {
    return fs.realpathSync(named) === fs.realpathSync(lowerdirs[0] as string) ? lowerdirs[0] : undefined
  } catch {
    return undefined
  }
}

/** Removes the stand-in if it is still an empty directory (rmdir, never recursive); true when it is gone. */
export function removeStandIn (dir: string): boolean {
  try {
    fs.rmdirSync(dir)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
  }
}
