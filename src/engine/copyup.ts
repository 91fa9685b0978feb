import { promises as fsp, type BigIntStats } from 'node:fs'
import { RENAME_NOREPLACE, copyData, fsyncPath, llistxattr, lgetxattr, lsetxattr, mknod, renameat2, utimensat } from '../native/sys'
import { OvlError, codeOf } from './errors'
import type { HardLinkIndex } from './hardlinks'
import { encodeOrigin } from './inode'
import { type Layer, realPath, splitPath } from './layers'
import { type Lookup, type Node, hitPath } from './lookup'
import { createMetacopy, dropMetacopy } from './metacopy'
import type { OverrideStat } from './override-stat'
import type { WorkDir } from './workdir'
import { METACOPY_NAMES, OPAQUE_NAMES, REDIRECT_NAMES, isPrivateXattr, type OverlayXattrs } from './xattrs'

export interface CopyUpOptions {
  /** Copy the file's data too (false for an open with O_TRUNC or a truncate to 0). */
  readonly data: boolean
  /** Only metadata will change (chmod, chown, utimens, xattrs): a metadata-only copy will do (metacopy.ts). */
  readonly meta?: boolean
}

/** What copy-up may do beyond copying: keep hard links (index), copy metadata only (metacopy). */
export interface CopyUpFeatures {
  readonly hardlinks?: HardLinkIndex
  readonly metacopy: boolean
}

/**
 * Copy-up: bring a lower object into the upper layer before its first change,
 * parents first, each with its own metadata. The copy is built in the work
 * directory (data, owner, mode, every xattr but overlay-private ones, times,
 * and the origin record that keeps st_ino stable) and renamed into place, so
 * no half-copied object is ever visible, even after a crash.
 */
export class CopyUp {
  private readonly inflight = new Map<string, Promise<Node>>()

  constructor (
    private readonly lookup: Lookup,
    private readonly upper: Layer,
    private readonly work: WorkDir,
    private readonly xattrs: OverlayXattrs,
    private readonly sync: boolean,
    /** xattr_permissions: the copy records the owner and mode shown before in the override xattr instead of a real chown. */
    private readonly override: OverrideStat | undefined,
    /** upperReal: the copy, when it holds the data; meta: the copy, when it holds metadata only. */
    private readonly onCopiedUp: (path: string, upperReal: string | undefined, before: Node, meta?: string) => Promise<void>,
    private readonly features: CopyUpFeatures = { metacopy: false },
  ) {}

  /**
   * The node of `path` with its top in the upper layer, copying it (and its
   * parents) up first; with its own data unless only metadata will change.
   */
  async ensure (node: Node, opts: CopyUpOptions = { data: true }): Promise<Node> {
    let n = node.top.layer.isUpper ? node : await this.once(node.path, async () => await this.copy(node, opts))
    if (n.data !== undefined && opts.meta !== true) n = await this.once('\0data' + n.path, async () => await this.copyData(n, opts.data))
    return n
  }

  private async once (key: string, fn: () => Promise<Node>): Promise<Node> {
    let p = this.inflight.get(key)
    if (p === undefined) {
      p = fn()
      this.inflight.set(key, p)
      void p.finally(() => this.inflight.delete(key)).catch(() => {})
    }
    return await p
  }

  /** Make sure the directory `path` exists in the upper layer (copying up the chain). */
  async ensureDir (path: string): Promise<Node> {
    const node = await this.lookup.get(path)
    if (!node.isDir) throw new OvlError('ENOTDIR', `not a directory: ${path || '/'}`)
    return await this.ensure(node)
  }

  private async copy (node: Node, opts: CopyUpOptions): Promise<Node> {
    const [parentPath] = splitPath(node.path)
    await this.ensureDir(parentPath)
    // Another request may have copied it up (and written to it) since `node` was resolved.
    const current = await this.lookup.get(node.path)
    if (current.top.layer.isUpper) return current
    const src = hitPath(current.top)
    // The stat from lookup: taken before ovlfs itself read the directory (which moves its atime).
    const st = current.stat
    const target = realPath(this.upper, node.path)
    const hardlinks = this.features.hardlinks
    await keepingTimes(realPath(this.upper, parentPath), async () => {
      if (hardlinks !== undefined && current.fh !== undefined) {
        // A name of a lower file with several names: copied once into the index, then linked (hardlinks.ts).
        const fh = current.fh
        const entry = current.index ?? await hardlinks.find(fh) ??
          await hardlinks.publish(await this.build(src, current.top.layer, st, current.ino, { data: true }, true), fh, Number(st.nlink))
        await hardlinks.linkUp(entry, target)
        return
      }
      const tmp = await this.build(src, current.top.layer, st, current.ino, opts, st.isDirectory() || st.nlink === 1n)
      try {
        await renameat2(tmp, target, RENAME_NOREPLACE)
      } catch (err) {
        await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {})
        throw err
      }
    })
    this.lookup.invalidate(node.path)
    const copied = await this.lookup.get(node.path)
    // Read-only handles move to the copy, unless it holds metadata only (the data is still below).
    await this.onCopiedUp(node.path, copied.data === undefined ? target : undefined, current, copied.data !== undefined ? target : undefined)
    if (!copied.top.layer.isUpper) throw new OvlError('EIO', `copy-up of ${node.path} did not reach the upper layer`)
    return copied
  }

  /**
   * Build the copy of `src` in the work directory (data, owner, mode, xattrs,
   * origin, times; fsync'ed unless volatile) and return its path.
   */
  private async build (src: string, layer: Layer, st: BigIntStats, ino: number, opts: CopyUpOptions, origin: boolean): Promise<string> {
    const tmp = this.work.temp()
    try {
      const meta = opts.meta === true && opts.data && this.features.metacopy && st.isFile() && st.nlink === 1n && st.size > 0n
      if (meta) {
        await createMetacopy(tmp, st.size, this.xattrs.metacopy)
      } else {
        await this.createCopy(src, tmp, st, opts)
      }
      if (this.override !== undefined) {
        const shown = await this.override.effective(src, layer, { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) })
        // The override names are not copied: the copy gets the upper layer's, with what the object showed.
        const override = this.override
        await copyXattrs(src, tmp, this.xattrs, { skip: (name) => override.hides(name) })
        await this.override.stamp(tmp, shown)
      } else {
        // Owner first (chown clears setuid bits and security.capability), then mode, then xattrs.
        await fsp.lchown(tmp, Number(st.uid), Number(st.gid))
        if (!st.isSymbolicLink()) await fsp.chmod(tmp, Number(st.mode & 0o7777n))
        await copyXattrs(src, tmp, this.xattrs)
      }
      if (origin) await this.setOrigin(tmp, ino, st)
      await utimensat(tmp, nsToTimespec(st.atimeNs), nsToTimespec(st.mtimeNs), true)
      if (this.sync && st.isFile() && !meta) await fsyncPath(tmp)
      return tmp
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {})
      throw err
    }
  }

  /**
   * Give a metadata-only copy its data (metacopy.ts): a full copy of the lower
   * data with the upper copy's metadata, built in the work directory and
   * renamed over it; or, when the data is not wanted (truncate to 0), just
   * the empty file without its marker.
   */
  private async copyData (node: Node, withData: boolean): Promise<Node> {
    const current = await this.lookup.get(node.path)
    if (current.data === undefined) return current
    const real = hitPath(current.top)
    if (!withData) {
      await fsp.truncate(real, 0)
      await dropMetacopy(real)
    } else {
      const data = current.data
      const st = await fsp.lstat(real, { bigint: true })
      await keepingTimes(realPath(this.upper, splitPath(node.path)[0]), async () => {
        const tmp = this.work.temp()
        try {
          await copyData(hitPath(data), tmp, 0o600, this.sync)
          await fsp.lchown(tmp, Number(st.uid), Number(st.gid))
          await fsp.chmod(tmp, Number(st.mode & 0o7777n))
          // Everything but the marker and a redirect to the data (which only a metadata-only copy follows).
          await copyXattrs(real, tmp, this.xattrs, { all: true, skip: (n) => REDIRECT_NAMES.includes(n) })
          await utimensat(tmp, nsToTimespec(st.atimeNs), nsToTimespec(st.mtimeNs), true)
          if (this.sync) await fsyncPath(tmp)
          await fsp.rename(tmp, real)
        } catch (err) {
          await fsp.rm(tmp, { force: true }).catch(() => {})
          throw err
        }
      })
    }
    this.lookup.invalidate(node.path)
    await this.onCopiedUp(node.path, real, current)
    const full = await this.lookup.get(node.path)
    if (full.data !== undefined) throw new OvlError('EIO', `the data copy-up of ${node.path} did not finish`)
    return full
  }

  /** Record the st_ino the object had, so it keeps it. User xattrs cannot go on symlinks and special files. */
  private async setOrigin (tmp: string, ino: number, st: BigIntStats): Promise<void> {
    try {
      await lsetxattr(tmp, this.xattrs.origin, encodeOrigin(ino))
    } catch (err) {
      const c = codeOf(err)
      if (!(c === 'EPERM' && !st.isFile() && !st.isDirectory()) && !isUnsupported(err)) throw err
    }
  }

  private async createCopy (src: string, tmp: string, st: BigIntStats, opts: CopyUpOptions): Promise<void> {
    if (st.isDirectory()) {
      await fsp.mkdir(tmp, { mode: 0o700 })
    } else if (st.isFile()) {
      if (opts.data) await copyData(src, tmp, 0o600, this.sync)
      else await (await fsp.open(tmp, 'wx', 0o600)).close()
    } else if (st.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(src), tmp)
    } else {
      // fifos, sockets, character and block devices stay what they are.
      await mknod(tmp, Number(st.mode), Number(st.rdev))
    }
  }
}

/**
 * Copy every xattr but the overlay-private ones of the namespace in use, the
 * markers ovlfs honours in either namespace (an opaque marker copied onto
 * the upper copy would hide the directory's own lower contents, a redirect
 * would send its lookups elsewhere), and those `skip` names. With `all` (an
 * upper file replaced by its full copy), private ones too, but never the
 * metacopy marker.
 */
export async function copyXattrs (src: string, dst: string, x: OverlayXattrs, opts: { all?: boolean, skip?: (name: string) => boolean } = {}): Promise<void> {
  let names: string[]
  try {
    names = await llistxattr(src)
  } catch (err) {
    if (isUnsupported(err)) return
    throw err
  }
  for (const name of names) {
    if (METACOPY_NAMES.includes(name) || opts.skip?.(name) === true) continue
    if (opts.all !== true && (isPrivateXattr(name, x.namespace) || OPAQUE_NAMES.includes(name) || REDIRECT_NAMES.includes(name))) continue
    const value = await lgetxattr(src, name)
    if (value === null) continue
    try {
      await lsetxattr(dst, name, value)
    } catch (err) {
      if (!isUnsupported(err)) throw err
    }
  }
}

function isUnsupported (err: unknown): boolean {
  const c = codeOf(err)
  return c === 'EOPNOTSUPP' || c === 'ENOTSUP'
}

/** Run `fn`, which links something into `dir`, and give `dir` back its atime and mtime (the kernel restores them too). */
async function keepingTimes (dir: string, fn: () => Promise<void>): Promise<void> {
  const st = await fsp.lstat(dir, { bigint: true })
  await fn()
  await utimensat(dir, nsToTimespec(st.atimeNs), nsToTimespec(st.mtimeNs), true)
}

export function nsToTimespec (ns: bigint): { sec: number, nsec: number } {
  const sec = ns / 1_000_000_000n
  let nsec = ns % 1_000_000_000n
  if (nsec < 0n) nsec += 1_000_000_000n
  return { sec: Number(ns < 0n && nsec !== 0n ? sec - 1n : sec), nsec: Number(nsec) }
}
