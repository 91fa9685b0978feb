import { promises as fsp } from 'node:fs'
import { constants } from 'node:os'
import { lgetxattr, lsetxattr } from '../native/sys'
import { OvlError, codeOf } from './errors'
import type { Layer } from './layers'
import { decodeOverrideStat, encodeOverrideStat, overrideStatXattr, type XattrPermissions } from './mapping'

/**
 * fuse-overlayfs's `xattr_permissions=1|2`: owner and mode kept in an xattr
 * ("UID:GID:MODE", see mapping.ts) where the daemon cannot chown/chmod for
 * real (rootless without a full user namespace). One place for all of it:
 * which layers are honoured, reading (stat), writing (chown, chmod,
 * creation, copy-up), the upper root at mount, and the names the mount hides.
 *
 * What ovlfs does, as fuse-overlayfs 1.14+ (main.c, direct.c, utils.c):
 * - The upper layer uses the level's name: 1 `security.fuseoverlayfs.override_stat`,
 *   2 `user.fuseoverlayfs.override_stat`.
 * - A lower layer is honoured when its root carries one of the override
 *   xattrs (the first of security.fuseoverlayfs., user.containers.,
 *   user.fuseoverlayfs.override_stat, as fuse-overlayfs 1.14 probes them);
 *   that name is then read on its objects. fuse-overlayfs 1.10 honours a
 *   lower layer so marked too (seen in native-tests/rootless.test.ts).
 * - stat: uid, gid and permission bits come from the xattr when the object
 *   has it (the type from the real object); ids are host ids, mapped to the
 *   merged view like any owner. An object without it (or a malformed value)
 *   shows its real owner and mode (fuse-overlayfs fails such a stat with
 *   ENODATA or EINVAL).
 * - chown/chmod of an upper object (copied up first) rewrite the xattr
 *   instead of changing the real owner and mode; -1 keeps that id (as 1.14).
 *   chmod keeps the owner the xattr records (1.14; 1.10 took the real one).
 * - creation writes it with the caller's ids and the mode asked for; the
 *   real object gets mode|0700 (never chowned), so the daemon can always use
 *   it (fuse-overlayfs gives it mode|0755, which would let every host user
 *   read a private file of the upper layer; its owner is the daemon anyway).
 * - copy-up writes it with the owner and mode the object showed before
 *   (the lower's override where honoured, else its real ones); the copy is
 *   not chowned for real. Other xattrs are copied as usual, the override
 *   names excepted (a security.* one could not be written rootless). (1.10 records
 *   the copy's real mode, i.e. mode|0755, instead of the mode shown.)
 * - level 2 ignores EPERM writing it (user.* xattrs cannot go on symlinks
 *   and device nodes): those are chowned and chmodded for real instead,
 *   a chown the daemon may not do being skipped, as fuse-overlayfs skips it.
 * - at mount, an upper root without the xattr gets a lower root's value
 *   (the level's name, or user.containers.override_stat at level 2), else
 *   owner 0:0 with the upper root's real mode, as fuse-overlayfs 1.10 writes
 *   (e.g. "0:0:40755"; 1.14 writes "0:0:555"), so that the root keeps the
 *   mode it had.
 * - through the mount the three names are hidden: getxattr answers ENODATA,
 *   listxattr leaves them out, setxattr and removexattr answer EPERM
 *   (fuse-overlayfs: ENODATA and EPERM for user.fuseoverlayfs.* and
 *   user.containers.*, at any level; it does not hide the security.* name
 *   and lets removexattr through).
 * With xattr_permissions=0 nothing here is active (no override xattr is read,
 * the names pass through as plain xattrs); newer fuse-overlayfs would still
 * honour a layer whose root carries one.
 */

/** The override xattr names, in the order fuse-overlayfs probes a layer root. */
export const OVERRIDE_STAT_NAMES: readonly string[] = [
  'security.fuseoverlayfs.override_stat',
  'user.containers.override_stat',
  'user.fuseoverlayfs.override_stat',
]

const CONTAINERS_NAME = 'user.containers.override_stat'

/** Owner (host ids) and mode (permission bits, maybe with the type) an object shows. */
export interface OwnerMode {
  readonly uid: number
  readonly gid: number
  readonly mode: number
}

const S_IFMT = 0o170000
const S_IFLNK = 0o120000

export class OverrideStat {
  private constructor (
    readonly level: 1 | 2,
    /** The name written on the upper layer. */
    readonly name: string,
    /** Layer index → the name read on its objects (absent: the layer's objects show their real owner and mode). */
    private readonly byLayer: ReadonlyMap<number, string>,
  ) {}

  /**
   * The override of a mount (undefined for level 0): probes the lower roots
   * and gives the upper root its xattr if it lacks it.
   */
  static async open (level: XattrPermissions, layers: readonly Layer[]): Promise<OverrideStat | undefined> {
    const name = overrideStatXattr(level)
    if (name === undefined || level === 0) return undefined
    const byLayer = new Map<number, string>()
    const lowers = layers.filter(l => !l.isUpper)
    for (const l of lowers) {
      for (const n of OVERRIDE_STAT_NAMES) {
        if (await readOptional(l.root, n) !== null) {
          byLayer.set(l.index, n)
          break
        }
      }
    }
    const upper = layers.find(l => l.isUpper)
    if (upper !== undefined) {
      byLayer.set(upper.index, name)
      await initUpperRoot(upper.root, name, level, lowers)
    }
    return new OverrideStat(level, name, byLayer)
  }

  /** Whether the mount hides this xattr name (see the module comment). */
  hides (name: string): boolean {
    return OVERRIDE_STAT_NAMES.includes(name)
  }

  /** The override recorded on `real` (an object of `layer`), or null: layer not honoured, no xattr, malformed value. */
  async read (real: string, layer: Layer): Promise<OwnerMode | null> {
    const name = this.byLayer.get(layer.index)
    if (name === undefined) return null
    const v = await readOptional(real, name)
    return v === null ? null : decodeOverrideStat(v)
  }

  /** Owner and mode `real` shows: its override, else its real `st`. */
  async effective (real: string, layer: Layer, st: { uid: number, gid: number, mode: number }): Promise<OwnerMode> {
    const o = await this.read(real, layer)
    if (o === null) return { uid: st.uid, gid: st.gid, mode: st.mode }
    return { uid: o.uid, gid: o.gid, mode: (st.mode & S_IFMT) | (o.mode & 0o7777) }
  }

  /** Stat attributes with owner and permission bits from the override, if `real` has one. */
  async present<T extends { uid: number, gid: number, mode: number }> (real: string, layer: Layer, attr: T): Promise<T> {
    const o = await this.read(real, layer)
    if (o === null) return attr
    return { ...attr, uid: o.uid, gid: o.gid, mode: (attr.mode & S_IFMT) | (o.mode & 0o7777) }
  }

  /**
   * Record owner and mode on an upper object. false: level 2 and the object
   * cannot carry user.* xattrs (EPERM: a symlink, a device node).
   */
  async write (real: string, o: OwnerMode): Promise<boolean> {
    try {
      await lsetxattr(real, this.name, encodeOverrideStat(o))
      return true
    } catch (err) {
      if (this.level === 2 && codeOf(err) === 'EPERM') return false
      throw err
    }
  }

  /** chown of an upper object: ids of -1 keep what it shows. */
  async chown (real: string, upper: Layer, st: { uid: number, gid: number, mode: number }, uid: number, gid: number): Promise<void> {
    const cur = await this.effective(real, upper, st)
    if (await this.write(real, { uid: uid === -1 ? cur.uid : uid, gid: gid === -1 ? cur.gid : gid, mode: cur.mode })) return
    await realChown(real, uid, gid)
  }

  /** chmod of an upper object: the owner it shows stays. */
  async chmod (real: string, upper: Layer, st: { uid: number, gid: number, mode: number }, mode: number): Promise<void> {
    const cur = await this.effective(real, upper, st)
    if (await this.write(real, { uid: cur.uid, gid: cur.gid, mode: (st.mode & S_IFMT) | (mode & 0o7777) })) return
    if ((st.mode & S_IFMT) !== S_IFLNK) await fsp.chmod(real, mode & 0o7777)
  }

  /**
   * A new upper object (made by creation or copy-up, not yet visible): the
   * override records `o`; the real object stays the daemon's, with mode|0700
   * so that the daemon can always use it. One that cannot carry the xattr
   * gets `o` for real, as far as the daemon may (its owner may stay the daemon's).
   */
  async stamp (real: string, o: OwnerMode): Promise<void> {
    const symlink = (o.mode & S_IFMT) === S_IFLNK
    if (await this.write(real, o)) {
      if (!symlink) await fsp.chmod(real, (o.mode & 0o7777) | 0o700)
      return
    }
    await realChown(real, o.uid, o.gid)
    if (!symlink) await fsp.chmod(real, o.mode & 0o7777)
  }
}

/**
 * The real chown of an object without the override xattr (level 2, symlinks
 * and device nodes): what the daemon may not do is skipped, as fuse-overlayfs
 * ignores it, so that e.g. an archive's symlinks still extract.
 */
async function realChown (real: string, uid: number, gid: number): Promise<void> {
  try {
    await fsp.lchown(real, uid, gid)
  } catch (err) {
    const c = codeOf(err)
    if (c !== 'EPERM' && c !== 'EINVAL') throw err
  }
}

/** An xattr's value; null when absent, unsupported or not readable by us. */
async function readOptional (real: string, name: string): Promise<Buffer | null> {
  try {
    return await lgetxattr(real, name)
  } catch (err) {
    const c = codeOf(err)
    if (c === 'ENODATA' || c === 'EOPNOTSUPP' || c === 'ENOTSUP' || c === 'EPERM' || c === 'EACCES') return null
    throw err
  }
}

/** fuse-overlayfs's mount step: the upper root gets the xattr from a lower root, else the default. */
async function initUpperRoot (root: string, name: string, level: 1 | 2, lowers: readonly Layer[]): Promise<void> {
  if (await readOptional(root, name) !== null) return
  let value: Buffer | null = null
  for (const l of lowers) {
    value = await readOptional(l.root, name) ?? (level === 2 ? await readOptional(l.root, CONTAINERS_NAME) : null)
    if (value !== null) break
  }
  try {
    await lsetxattr(root, name, value ?? encodeOverrideStat({ uid: 0, gid: 0, mode: (await fsp.lstat(root)).mode }))
  } catch (err) {
    const code = codeOf(err)
    const known = code !== undefined && code in constants.errno ? code as keyof typeof constants.errno : 'EIO'
    throw new OvlError(known, `xattr_permissions=${level}: cannot write ${name} on the upper root (${code ?? String(err)})`)
  }
}
