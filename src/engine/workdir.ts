import { promises as fsp } from 'node:fs'
import { randomBytes } from 'node:crypto'
import * as path from 'node:path'
import { lsetxattr, lremovexattr, mknod } from '../native/sys'
import { codeOf } from './errors'
import type { XattrNamespace } from './xattrs'
import type { WhiteoutStyle } from './whiteout'

/**
 * The work directory: where copy-ups, whiteouts and new objects are built
 * before one rename puts them in place, so a half-done object is never
 * visible in the upper layer. Like the kernel, ovlfs uses `<workdir>/work`
 * and clears leftovers there at mount.
 */
export class WorkDir {
  readonly dir: string
  /** Temporary names: a per-mount random part and a counter (a random draw per name cost a syscall's worth of time). */
  private readonly prefix = '#ovlfs' + randomBytes(6).toString('hex') + '-'
  private next = 0
  /**
   * The shared whiteout, as the kernel keeps one (ovl_whiteout): a char
   * device 0/0 in the work dir that new whiteouts are hard links of; a link
   * costs a sixth of a mknod on ext4 (no inode to allocate). Undefined until
   * the first whiteout, and again once its link count is full (EMLINK).
   */
  sharedWhiteout: string | undefined
  /** False once linking the shared whiteout failed otherwise: each whiteout is then its own mknod. */
  sharesWhiteouts = true

  constructor (workdir: string) {
    this.dir = path.join(workdir, 'work')
  }

  /** A fresh temporary path inside the work directory (not created). */
  temp (): string {
    return this.dir + '/' + this.prefix + (this.next++).toString(16)
  }

  /** Create the work dir if missing and remove leftovers of an earlier run. Returns how many were removed. */
  async prepare (): Promise<number> {
    // Never follow what is there: a symlink (or any non-directory) at `work` is
    // replaced by a real directory, as the kernel does; its target is left alone.
    const st = await fsp.lstat(this.dir).catch((err: unknown) => {
      if (codeOf(err) === 'ENOENT') return null
      throw err
    })
    if (st !== null && !st.isDirectory()) await fsp.unlink(this.dir)
    if (st === null || !st.isDirectory()) await fsp.mkdir(this.dir, { mode: 0o700 })
    return await removeEntries(this.dir)
  }

  /** What the upper filesystem lets us write: char-dev whiteouts, trusted.* xattrs. */
  async probe (): Promise<{ whiteouts: WhiteoutStyle, xattrNamespace: XattrNamespace }> {
    const t = this.temp()
    let whiteouts: WhiteoutStyle = 'chardev'
    try {
      await mknod(t, 0o020000 | 0o000, 0)
    } catch {
      whiteouts = 'aufs'
    }
    await fsp.rm(t, { force: true })
    let xattrNamespace: XattrNamespace = 'trusted'
    const d = this.temp()
    await fsp.mkdir(d)
    try {
      await lsetxattr(d, 'trusted.overlay.ovlfs.probe', Buffer.from('y'))
      await lremovexattr(d, 'trusted.overlay.ovlfs.probe')
    } catch (err) {
      if (codeOf(err) !== 'EPERM' && codeOf(err) !== 'EOPNOTSUPP' && codeOf(err) !== 'ENOTSUP') throw err
      xattrNamespace = 'user'
    } finally {
      await fsp.rmdir(d)
    }
    return { whiteouts, xattrNamespace }
  }
}

/**
 * Remove everything inside `dir` (not `dir` itself), without following links.
 * Names are read as bytes, so entries whose names are not UTF-8 go too.
 * Returns how many entries were removed.
 */
export async function removeEntries (dir: string): Promise<number> {
  let removed = 0
  for (const name of await fsp.readdir(dir, { encoding: 'buffer' })) {
    await fsp.rm(Buffer.concat([Buffer.from(dir + '/'), name]), { recursive: true, force: true })
    removed++
  }
  return removed
}
