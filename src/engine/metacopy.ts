import * as fs from 'node:fs'
import { promises as fsp, type BigIntStats } from 'node:fs'
import { lsetxattr, lremovexattr } from '../native/sys'
import { codeOf } from './errors'
import { closeFd, openFd } from './handles'
import { METACOPY_NAMES } from './xattrs'

/**
 * Metadata-only copy-up: the kernel's `metacopy=on`, in its layout.
 *
 * chmod, chown, utimens, setxattr and removexattr on a lower regular file
 * (with one name) copy up its metadata only: the upper copy is an empty
 * sparse file of the lower file's size with owner, mode, times, xattrs, the
 * origin record, and an empty `overlay.metacopy` xattr. Its data stays in
 * the lower file (found by looking the same name up in the layers below, as
 * the kernel does, or where its redirect points once it was renamed), which
 * reads and st_blocks come from. A rename moves it with a redirect to its
 * data, as the kernel does. The first change of the data (open for writing,
 * truncate, link) copies the data: a full copy is built in the work
 * directory with the metadata of the upper copy and renamed over it, so a
 * crash leaves either the metadata-only copy or the full one. A truncate to
 * 0 just drops the marker.
 *
 * The kernel mounted with `metacopy=on` reads such an upper layer the same
 * way; with `metacopy=off` (its default) it refuses those files (EPERM), so
 * ovlfs's `metacopy=off` turns this off, e.g. for Docker's container layers.
 */

/** Whether an upper file whose xattr names are `names` is a metadata-only copy (its marker, in either namespace). */
export function isMetacopy (st: BigIntStats, names: readonly string[]): boolean {
  return st.isFile() && names.some(n => METACOPY_NAMES.includes(n))
}

/** Make `tmp` (not existing yet) the metadata-only copy of a file of `size` bytes: empty, sparse, marked. */
export async function createMetacopy (tmp: string, size: bigint, metacopyXattr: string): Promise<void> {
  await closeFd(await openFd(tmp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600))
  await fsp.truncate(tmp, Number(size))
  await lsetxattr(tmp, metacopyXattr, Buffer.alloc(0))
}

/** Remove the marker (every namespace) from a real upper file whose data is now its own. */
export async function dropMetacopy (real: string): Promise<void> {
  for (const name of METACOPY_NAMES) {
    await lremovexattr(real, name).catch((err: unknown) => {
      const c = codeOf(err)
      if (c !== 'ENODATA' && c !== 'EOPNOTSUPP' && c !== 'ENOTSUP' && c !== 'EPERM') throw err
    })
  }
}
