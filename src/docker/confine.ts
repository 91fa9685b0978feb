import { realpath, stat } from 'node:fs/promises'
import { relative, isAbsolute } from 'node:path'
import { describeFsError, fileError, fsError } from './errors'

/**
 * Keeping every path we hand out inside the data root: a directory is
 * accepted only if its real path (all symlinks resolved) lies strictly
 * inside the real path of the base it must belong to.
 */

/** True when `path` is strictly below `base` (both absolute, normalized). */
export function isStrictlyInside (base: string, path: string): boolean {
  const rel = relative(base, path)
  return rel !== '' && rel !== '..' && !rel.startsWith('../') && !isAbsolute(rel)
}

/** The real path of `path`; failures name `blame` (default: the path itself). */
export async function realPathOf (path: string, blame = path): Promise<string> {
  try {
    return await realpath(path)
  } catch (err) {
    throw fsError(blame, err)
  }
}

/** A memo of one real path, resolved on first use (a layout lives for one resolution). */
export function realPathOnce (path: string): () => Promise<string> {
  let real: Promise<string> | undefined
  return async () => await (real ??= realPathOf(path))
}

/**
 * Asserts `dir` is an existing directory whose real path is inside `base`
 * (whose real path `realBase` gives). `what` names the directory's role in
 * messages ("diff dir of layer …").
 */
export async function requireDirInside (dir: string, base: string, what: string, realBase = realPathOnce(base)): Promise<void> {
  let real: string
  try {
    real = await realpath(dir)
  } catch (err) {
    throw fileError(dir, `${what} ${describeFsError(err)}`)
  }
  if (!isStrictlyInside(await realBase(), real)) throw fileError(dir, `${what} resolves to ${real}, outside ${base}`)
  const info = await stat(real).catch((err: unknown) => { throw fsError(dir, err) })
  if (!info.isDirectory()) throw fileError(dir, `${what} is not a directory`)
}
