import { promises as fsp, type BigIntStats } from 'node:fs'
import * as path from 'node:path'
import { RENAME_NOREPLACE, lgetxattr, lsetxattr, overlayFh, renameat2 } from '../native/sys'
import { codeOf } from './errors'
import { KeyedLocks } from './locks'

/**
 * Hard links kept through copy-up: the kernel's `index=on`, in its layout.
 *
 * The first copy-up of a lower file with more than one name puts the copy in
 * `<workdir>/index/<hex of the lower file's overlay file handle>` (the
 * kernel's struct ovl_fb, also written as the copy's `overlay.origin`; see
 * overlayFh in src/native) and hard-links it to the name being changed
 * ("link-up"). Every name of the lower file finds the same entry, so any
 * other name still only in the lower layer is served from it from then on:
 * it reads and stats the copied-up file, and changing it links it up first,
 * without copying again. All names share one inode, one st_ino and the new
 * data, also after a remount, and the kernel mounted with `index=on` over the
 * same upper and work directories finds the same entries.
 *
 * The link count the merge reports is kept as the kernel keeps it, in the
 * entry's `overlay.nlink` xattr ("U" and a signed offset from the real link
 * count of the index inode): the entry itself and names not yet linked up are
 * accounted for there. A lower name is linked up before it is whited out or
 * renamed, as the kernel does, so the count stays right. When the last name
 * goes, the entry goes too.
 *
 * A lower filesystem that cannot give file handles (or its UUID) leaves that
 * file's names to be broken by copy-up, as with `index=off`.
 */
export const INDEX_DIR = 'index'

export class HardLinkIndex {
  readonly dir: string
  /**
   * Bumped whenever an entry appears or goes: lookups of lower files with
   * several names resolved before are then stale (lookup.ts).
   */
  generation = 0
  /** Link-ups and releases of one entry read and rewrite its count: one at a time. */
  private readonly locks = new KeyedLocks()

  constructor (workdir: string, private readonly nlinkXattr: string, private readonly originXattr: string) {
    this.dir = path.join(workdir, INDEX_DIR)
  }

  /**
   * Create the index directory if missing (anything else at its name, a
   * symlink say, is replaced, never followed), and drop entries no name
   * refers to any more (only the entry left and a merged count of 0, as the
   * kernel's index cleanup at mount does). Returns how many were dropped.
   */
  async prepare (): Promise<number> {
    const st = await fsp.lstat(this.dir).catch((err: unknown) => {
      if (codeOf(err) === 'ENOENT') return null
      throw err
    })
    if (st !== null && !st.isDirectory()) await fsp.unlink(this.dir)
    if (st === null || !st.isDirectory()) {
      await fsp.mkdir(this.dir, { mode: 0o700 })
      return 0
    }
    let dropped = 0
    for (const name of await fsp.readdir(this.dir)) {
      const p = `${this.dir}/${name}`
      const est = await fsp.lstat(p, { bigint: true }).catch(() => null)
      if (est === null || !est.isFile() || est.nlink !== 1n) continue
      if (await mergedNlink(p, est, this.nlinkXattr) > 0) continue
      await fsp.unlink(p)
      dropped++
    }
    return dropped
  }

  /** The overlay file handle of a lower file, or undefined when its filesystem cannot give one. */
  async handleOf (real: string): Promise<Buffer | undefined> {
    try {
      return await overlayFh(real)
    } catch {
      return undefined
    }
  }

  /** The entry's path for a lower file's handle. */
  entry (fh: Buffer): string {
    return `${this.dir}/${fh.toString('hex')}`
  }

  /** The entry of the lower file with handle `fh`, if there is one (a regular file). */
  async find (fh: Buffer): Promise<string | undefined> {
    const p = this.entry(fh)
    try {
      return (await fsp.lstat(p)).isFile() ? p : undefined
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return undefined
      throw err
    }
  }

  /**
   * Put a finished copy `tmp` of the lower file with handle `fh` and
   * `lowerNlink` names in place as its entry (atomically; when another
   * copy-up got there first, its entry is used and `tmp` removed). Returns
   * the entry's path.
   */
  async publish (tmp: string, fh: Buffer, lowerNlink: number): Promise<string> {
    const p = this.entry(fh)
    await lsetxattr(tmp, this.originXattr, fh)
    await setNlink(tmp, this.nlinkXattr, lowerNlink - 1)
    try {
      await renameat2(tmp, p, RENAME_NOREPLACE)
    } catch (err) {
      if (codeOf(err) !== 'EEXIST') throw err
      await fsp.rm(tmp, { force: true })
    }
    this.generation++
    return p
  }

  /** Link the entry to `target` (a name of the file not yet in the upper layer); the merged link count stays. */
  async linkUp (entry: string, target: string): Promise<void> {
    await this.locks.with([entry], async () => {
      await fsp.link(entry, target)
      const st = await fsp.lstat(entry, { bigint: true })
      const merged = await mergedNlink(entry, st, this.nlinkXattr)
      await setNlink(entry, this.nlinkXattr, merged - 1 - Number(st.nlink))
    })
  }

  /** The handle an upper file records as its origin (kernel format), if any. */
  async originOf (real: string): Promise<Buffer | undefined> {
    const v = await lgetxattr(real, this.originXattr).catch(() => null)
    return v !== null && v.length > 21 && v[1] === 0xfb ? v : undefined
  }

  /** After a name of an indexed file was removed: drop the entry once no name is left. */
  async release (fh: Buffer): Promise<void> {
    const p = this.entry(fh)
    await this.locks.with([p], async () => {
      const st = await fsp.lstat(p, { bigint: true }).catch(() => null)
      if (st === null || !st.isFile()) return
      if (await mergedNlink(p, st, this.nlinkXattr) > 0) return
      await fsp.unlink(p)
      this.generation++
    })
  }
}

/**
 * The link count the merge reports for a real file in the upper layer or
 * the index: its own, corrected by the `overlay.nlink` offset when it is a
 * kept hard link ("U+n"/"U-n"; "L…", relative to the lower file, is not
 * written by ovlfs and read as absent). Never below 0.
 */
export async function mergedNlink (real: string, st: BigIntStats, nlinkXattr: string): Promise<number> {
  const own = Number(st.nlink)
  let v: Buffer | null
  try {
    v = await lgetxattr(real, nlinkXattr)
  } catch {
    return own
  }
  if (v === null) return own
  const m = /^U([+-][0-9]{1,9})$/.exec(v.toString())
  if (m === null) return own
  return Math.max(0, own + Number(m[1]))
}

async function setNlink (real: string, nlinkXattr: string, offset: number): Promise<void> {
  await lsetxattr(real, nlinkXattr, Buffer.from(`U${offset < 0 ? '-' : '+'}${Math.abs(offset)}`))
}
