import * as fs from 'node:fs'
import { promises as fsp, type BigIntStats } from 'node:fs'
import { promisify } from 'node:util'
import {
  RENAME_EXCHANGE, RENAME_WHITEOUT, UTIME_NOW, UTIME_OMIT, type Timespec,
  fsyncPath, lgetxattr, llistxattr, lremovexattr, lsetxattr, mknod, renameat2, statfs,
} from '../native/sys'
import { CopyUp, type CopyUpOptions } from './copyup'
import { HardLinkIndex, mergedNlink } from './hardlinks'
import { OvlError, codeOf } from './errors'
import { Handles, closeFd, fstatFd, openFd, type OpenFile } from './handles'
import { KeyedLocks } from './locks'
import { dropSgidOnWrite, type Writer } from './privs'
import { type Layer, LayerStack, type LayerStackConfig, joinPath, realPath, splitPath } from './layers'
import type { LayerIo } from './layer-io'
import type { XattrPermissions } from './mapping'
import { OverrideStat } from './override-stat'
import { Lookup, type Hit, type Node, dataInUpper, dataPath, hitPath } from './lookup'
import { type MaybePromise, andThen } from './maybe'
import { isEmptyDir, mergedListing, type DirEntry, type MergedListing } from './readdir'
import { readRedirect, redirectForRename } from './redirect'
import { aufsWhiteoutName, isWhiteoutName, isWhiteoutStat, type WhiteoutStyle } from './whiteout'
import { WorkDir, removeEntries } from './workdir'
import { isPrivateXattr, overlayXattrs, type OverlayXattrs, type XattrNamespace } from './xattrs'

const C = fs.constants
const S_IFMT = 0o170000
const S_IFCHR = 0o020000
const S_ISGID = 0o2000
const S_IFDIR = 0o040000
const O_ACCMODE = 3
/** Copy-up for a change of metadata only: a metadata-only copy will do (metacopy.ts). */
const META_ONLY: CopyUpOptions = { data: true, meta: true }

/** Who asks: the FUSE caller's fsuid/fsgid, used as owner of what it creates. */
export interface Caller {
  readonly uid: number
  readonly gid: number
}

export interface EngineOptions extends LayerStackConfig {
  /** Skip fsync of copy-ups and of fsync() calls (`volatile`). */
  readonly volatile?: boolean
  readonly maxNodes?: number
  readonly maxListingEntries?: number
  /**
   * Rename directories that have lower layers by recording a redirect (the
   * kernel's `redirect_dir=on`, the default); false answers EXDEV for them, as
   * the kernel's default `redirect_dir=off`. Redirects are followed either way.
   */
  readonly redirectDir?: boolean
  /**
   * Keep lower hard links through copy-up (the kernel's `index=on`; the
   * default): see hardlinks.ts. False breaks them, as the kernel's default.
   */
  readonly index?: boolean
  /**
   * Copy up metadata only for chmod, chown, utimens and xattr changes (the
   * kernel's `metacopy=on`): see metacopy.ts. Default: on where trusted.*
   * xattrs can be written; off in the user namespace, where the kernel
   * (userxattr) refuses metacopy and could not read such files.
   */
  readonly metacopy?: boolean
  /** fuse-overlayfs's `xattr_permissions=`: owner and mode in an xattr (override-stat.ts); 0 or absent: off. */
  readonly xattrPermissions?: XattrPermissions
}

/** Attributes of a merged object, ready for FUSE (ns times; st_ino as the merge defines it). */
export interface Attr {
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  ino: number
  rdev: number
  blksize: number
  blocks: number
  atimeNs: bigint
  mtimeNs: bigint
  ctimeNs: bigint
}

export interface Statfs {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  fsid: number
  flag: number
  namemax: number
}

const readP = promisify(fs.read)
const writeP = promisify(fs.write)
const fsyncP = promisify(fs.fsync)
const fdatasyncP = promisify(fs.fdatasync)
const ftruncateP = promisify(fs.ftruncate)

/**
 * The merge engine: every filesystem operation on merged paths ('' is the
 * root, '/a/b' below it), with the kernel overlayfs's semantics, on plain
 * directories. Free of FUSE: the adapter in src/fuse maps requests onto it.
 */
export class Engine {
  readonly stack: LayerStack
  readonly lookup: Lookup
  readonly handles = new Handles()
  private readonly locks = new KeyedLocks()
  private readonly copyUp: CopyUp | undefined
  private readonly work: WorkDir | undefined
  private readonly whiteoutStyle: WhiteoutStyle
  private readonly xattrs: OverlayXattrs
  private readonly sync: boolean
  private readonly hardlinks: HardLinkIndex | undefined
  /** Rename lower files as metadata-only copies with a redirect (metacopy=on needs redirect_dir=on, as in the kernel). */
  private readonly metacopyRename: boolean
  /** xattr_permissions=1|2 (override-stat.ts); undefined when off. */
  private readonly override: OverrideStat | undefined
  /**
   * Called with the merged st_ino of an object whose attributes changed
   * maybe without the kernel seeing it (a copy-up of it or into it); the FUSE
   * layer makes the kernel drop its cached attributes, and with `listing`
   * (the directory a copy-up went into, whose listing the kernel may hold:
   * a copy-up that cannot keep the child's st_ino changes its d_ino there)
   * its cached listing too.
   */
  onAttrsChanged: (ino: number, listing?: boolean) => void = () => {}
  /** The work dir's shared whiteout changed (made, or given up: undefined); fast-names.ts hands it to the addon (patch item 26). */
  onSharedWhiteout: (path: string | undefined) => void = () => {}

  private constructor (
    readonly options: EngineOptions,
    probed: { work?: WorkDir, hardlinks?: HardLinkIndex, whiteouts: WhiteoutStyle, xattrNamespace: XattrNamespace },
    stack: LayerStack,
    override: OverrideStat | undefined,
  ) {
    this.stack = stack
    this.override = override
    this.sync = options.volatile !== true
    this.work = probed.work
    this.whiteoutStyle = probed.whiteouts
    this.xattrs = overlayXattrs(probed.xattrNamespace)
    this.hardlinks = probed.hardlinks
    const metacopy = options.metacopy ?? probed.xattrNamespace === 'trusted'
    this.metacopyRename = metacopy && options.redirectDir !== false
    this.lookup = new Lookup(this.stack, this.xattrs.origin, { maxNodes: options.maxNodes, maxListingEntries: options.maxListingEntries }, this.hardlinks)
    const upper = this.stack.upper
    if (upper !== undefined && this.work !== undefined) {
      this.copyUp = new CopyUp(this.lookup, upper, this.work, this.xattrs, this.sync, this.override, async (p, upperReal, before, meta) => {
        // The object copied up changed (ctime; nlink of a merged directory or of the source of a link)
        // and so did the directory it was linked into (size, ctime), maybe without an operation on their names.
        this.onAttrsChanged(before.ino)
        if (before.parent !== undefined) this.onAttrsChanged(before.parent.ino, true)
        if (upperReal !== undefined) await this.handles.moveToUpper(p, upperReal)
        else if (meta !== undefined) await this.handles.holdMeta(p, meta)
        // A kept hard link: the other names' read-only handles are the same file (hardlinks.ts).
        if (upperReal !== undefined && before.fh !== undefined) await this.handles.moveInoToUpper(before.ino, upperReal)
      }, { hardlinks: this.hardlinks, metacopy })
    }
  }

  /**
   * Build an engine. With an upper layer: clears the work dir's leftovers and
   * probes what the upper filesystem allows (char-dev whiteouts, trusted.* xattrs).
   */
  static async open (given: EngineOptions): Promise<Engine> {
    const options = pinLayers(given)
    const stack = new LayerStack(options, (dir) => fs.statSync(dir).dev)
    const override = await OverrideStat.open(options.xattrPermissions ?? 0, stack.layers)
    if (options.upperdir === undefined) return new Engine(options, { whiteouts: 'chardev', xattrNamespace: 'trusted' }, stack, override)
    if (options.workdir === undefined) throw new OvlError('EINVAL', 'upperdir needs a workdir')
    const work = new WorkDir(options.workdir)
    await work.prepare()
    const probe = await work.probe()
    let hardlinks: HardLinkIndex | undefined
    if (options.index !== false) {
      const x = overlayXattrs(probe.xattrNamespace)
      hardlinks = new HardLinkIndex(options.workdir, x.nlink, x.kernelOrigin)
      await hardlinks.prepare()
    }
    return new Engine(options, { work, hardlinks, whiteouts: probe.whiteouts, xattrNamespace: probe.xattrNamespace }, stack, override)
  }

  /**
   * Whether a lower non-directory with one name shows its lstat as it is (with
   * its inode number mapped): true unless xattr_permissions overrides owners
   * and modes. The FUSE layer's fast names (src/fuse/fast-names.ts) rely on it.
   */
  get lowerAttrsAreLstat (): boolean {
    return this.override === undefined
  }

  get features (): { whiteouts: WhiteoutStyle, xattrNamespace: XattrNamespace, readOnly: boolean } {
    return { whiteouts: this.whiteoutStyle, xattrNamespace: this.xattrs.namespace, readOnly: this.stack.readOnly }
  }

  // ---- reading -------------------------------------------------------------

  async getattr (path: string): Promise<Attr> {
    return (await this.getattrWithOrigin(path)).attr
  }

  /**
   * Attributes and whether they come from a lower layer (immutable while
   * mounted: they change only through an operation on this very name, which
   * copies the object up first). The FUSE layer lets the kernel cache those.
   */
  getattrWithOrigin (path: string): MaybePromise<{ attr: Attr, lower: boolean, node: Node }> {
    return andThen(this.lookup.getMaybe(path), (node) => {
      const lower = !node.top.layer.isUpper && node.index === undefined
      // A lower object (not a hard link served from its index entry): its attributes are its lstat at lookup.
      if (lower && this.override === undefined) return { attr: attrOf(node.stat, node.ino, node.isDir && node.dirs.length > 1), lower, node }
      return this.attrsOf(node, lower)
    })
  }

  private async attrsOf (node: Node, lower: boolean): Promise<{ attr: Attr, lower: boolean, node: Node }> {
    // An upper object, or a lower name of a hard-linked file served from its index entry (hardlinks.ts).
    const real = node.index ?? hitPath(node.top)
    const st = lower ? node.stat : await this.lstatOf(node.top.layer, real)
    const attr = attrOf(st, node.ino, node.isDir && node.dirs.length > 1)
    if (!lower && st.isFile() && st.nlink > 1n) attr.nlink = await mergedNlink(real, st, this.xattrs.nlink)
    // A metadata-only copy occupies the lower data's blocks (as the kernel reports).
    if (node.data !== undefined) attr.blocks = Number((await fsp.lstat(hitPath(node.data), { bigint: true })).blocks)
    return { attr: this.override !== undefined ? await this.override.present(real, node.top.layer, attr) : attr, lower, node }
  }

  /**
   * Attributes through an open file (also after its name was unlinked). With
   * xattr_permissions the override is read through the file's name while it
   * still names the same object; an unlinked file shows its real owner and mode.
   */
  async fgetattr (h: OpenFile): Promise<Attr> {
    const upper = this.stack.upper
    let attr: Attr
    if (h.meta !== undefined && !h.upper) {
      // The lower data of a metadata-only copy: attributes from the copy, blocks from the data (as getattr).
      attr = attrOf(await fstatFd(h.meta, { bigint: true }), h.ino, false)
      attr.blocks = Number((await fstatFd(h.fd, { bigint: true })).blocks)
    } else {
      attr = attrOf(await (h.upper && upper !== undefined ? this.io.fstat(upper, h.fd) : fstatFd(h.fd, { bigint: true })), h.ino, false)
    }
    if (this.override === undefined) return attr
    const node = await this.lookup.resolve(h.path).catch(() => null)
    if (node === null || node.ino !== h.ino) return attr
    return await this.override.present(hitPath(node.top), node.top.layer, attr)
  }

  async readdir (path: string): Promise<DirEntry[]> {
    return (await this.listing(path)).toArray()
  }

  /** The merged listing of a directory, by column (readdir.ts); readdir() as entries. */
  async listing (path: string): Promise<MergedListing> {
    const node = await this.lookup.get(path)
    if (!node.isDir) throw new OvlError('ENOTDIR', `not a directory: ${path || '/'}`)
    return await mergedListing(this.lookup, node)
  }

  /**
   * The merged listing with each entry's merged st_ino, so that d_ino agrees
   * with stat's st_ino (as the kernel's overlayfs makes it agree). An entry
   * from a lower layer reports its own inode number there (d_ino from
   * getdents, no syscall per entry); one from the upper layer may carry an
   * origin record, so it is looked up.
   */
  async readdirWithIno (path: string): Promise<MergedListing> {
    const out = await this.listing(path)
    const fromUpper: number[] = []
    for (let i = 0; i < out.length; i++) if (out.hit(i).layer.isUpper) fromUpper.push(i)
    await mapLimit(fromUpper, 64, async (i) => {
      const child = await this.lookup.resolve(joinPath(path, out.name(i))).catch(() => null)
      if (child !== null) out.setIno(i, child.ino)
    })
    return out
  }

  async readlink (path: string): Promise<string> {
    const node = await this.lookup.get(path)
    if (!node.stat.isSymbolicLink()) throw new OvlError('EINVAL', `not a symlink: ${path}`)
    return await fsp.readlink(hitPath(node.top))
  }

  async statfs (): Promise<Statfs> {
    return await statfs((this.stack.layers[0] ?? { root: '/' }).root)
  }

  async getxattr (path: string, name: string): Promise<Buffer | null> {
    if (isPrivateXattr(name, this.xattrs.namespace)) throw new OvlError('EOPNOTSUPP', `overlay-private xattr ${name}`)
    const node = await this.lookup.get(path)
    if (this.override?.hides(name) === true) return null
    // A kept hard link's index entry is in the upper filesystem.
    return await this.io.lgetxattr(node.index !== undefined ? this.stack.upper ?? node.top.layer : node.top.layer, node.index ?? hitPath(node.top), name)
  }

  async listxattr (path: string): Promise<string[]> {
    const node = await this.lookup.get(path)
    const names = await llistxattr(node.index ?? hitPath(node.top))
    return names.filter(n => !isPrivateXattr(n, this.xattrs.namespace) && this.override?.hides(n) !== true)
  }

  // ---- open files ----------------------------------------------------------

  async open (path: string, flags: number): Promise<OpenFile> {
    let node = await this.lookup.get(path)
    const writes = (flags & O_ACCMODE) !== C.O_RDONLY || (flags & C.O_TRUNC) !== 0
    if (writes) {
      node = await this.writable(node, { data: (flags & C.O_TRUNC) === 0 })
    }
    const fd = await openFd(dataPath(node), (flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOCTTY)) | C.O_NOFOLLOW)
    if (writes) this.lookup.invalidate(path)
    // A handle on the lower data of a metadata-only copy moves to the full copy when the data is copied up.
    const h = this.handles.add(fd, flags & ~(C.O_CREAT | C.O_EXCL), dataInUpper(node), path, node.ino)
    if (!h.upper) {
      // A copy-up that finished while this lower file was being opened missed this handle.
      // The name gone meanwhile (unlinked after the open): the open still holds, as on any file system.
      const now = await this.lookup.get(path).catch(() => null)
      try {
        if (now !== null && dataInUpper(now)) await this.handles.moveToUpper(path, dataPath(now))
        else if (now !== null && now.data !== undefined) await this.handles.holdMeta(path, hitPath(now.top), h)
      } catch (err) {
        // This open answers the error: its handle must not stay in the table (no RELEASE will come for it).
        if (h.released !== true) await this.release(h).catch(() => {})
        throw err
      }
    }
    return h
  }

  async create (path: string, mode: number, flags: number, caller: Caller): Promise<OpenFile> {
    return (await this.createOpen(path, mode, flags, caller)).h
  }

  /**
   * create(), with the new file's attributes as fgetattr gives them: the
   * file's fstat (after its owner is set) makes both its node, recorded as a
   * lookup would find it, and the answer.
   */
  async createOpen (path: string, mode: number, flags: number, caller: Caller): Promise<{ h: OpenFile, attr: Attr }> {
    const openFlags = (flags & ~(C.O_EXCL | C.O_NOCTTY)) | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW
    let fd = -1
    const made = await this.createObject(path, caller, mode, async (target, layer) => {
      fd = await this.io.open(layer, target, openFlags, mode & 0o7777)
    })
    let h: OpenFile | undefined
    try {
      const st = await this.io.fstat(made.top.layer, fd)
      const node = this.lookup.recordCreated(path, made.parent, made.top, st)
      h = this.handles.add(fd, flags & ~(C.O_CREAT | C.O_EXCL), true, path, node.ino)
      const attr = attrOf(st, node.ino, false)
      return { h, attr: this.override === undefined ? attr : await this.override.present(hitPath(node.top), node.top.layer, attr) }
    } catch (err) {
      // The create answers the error: neither its fd nor its handle may stay (no RELEASE will come).
      if (h !== undefined && h.released !== true) this.handles.remove(h.id)
      await closeFd(fd).catch(() => {})
      throw err
    }
  }

  /**
   * A file created outside the engine, as create() makes it (the addon's,
   * patch item 25): whatever was known of the name is forgotten, and its
   * open handle `id` on `fd` is ours from now on (fd -1: already released,
   * or a name the addon removed, patch item 26).
   */
  adoptCreated (path: string, id: number, fd: number, flags: number, ino: number): void {
    this.lookup.invalidate(path)
    if (fd >= 0) this.handles.adopt(id, fd, flags, path, ino)
  }

  async read (h: OpenFile, buf: Buffer, len: number, pos: number): Promise<number> {
    const { bytesRead } = await readP(h.fd, buf, 0, len, pos)
    return bytesRead
  }

  async write (h: OpenFile, buf: Buffer, len: number, pos: number, who?: Writer): Promise<number> {
    if (who !== undefined && !h.privsDropped) {
      h.privsDropped = true
      await dropSgidOnWrite(h.fd, who)
    }
    const { bytesWritten } = await writeP(h.fd, buf, 0, len, pos)
    return bytesWritten
  }

  async release (h: OpenFile): Promise<void> {
    this.handles.remove(h.id)
    const upper = this.stack.upper
    const meta = h.meta
    h.meta = undefined
    await (h.upper && upper !== undefined ? this.io.close(upper, h.fd) : closeFd(h.fd))
    if (meta !== undefined) await closeFd(meta)
  }

  async fsync (h: OpenFile, datasync: boolean): Promise<void> {
    if (!this.sync) return
    await (datasync ? fdatasyncP(h.fd) : fsyncP(h.fd))
  }

  async ftruncate (h: OpenFile, size: number): Promise<void> {
    if (!h.upper) throw new OvlError('EBADF', 'file not open for writing')
    await ftruncateP(h.fd, size)
  }

  // ---- changing attributes (copy-up first) -----------------------------------

  async chmod (path: string, mode: number): Promise<void> {
    const found = await this.lookup.get(path)
    const node = await this.writable(found, META_ONLY)
    const real = hitPath(node.top)
    if (this.override !== undefined) {
      await this.override.chmod(real, node.top.layer, await fsp.lstat(real), mode)
    } else {
      await this.io.chmod(node.top.layer, real, mode & 0o7777)
    }
    this.attrsChanged(path, found, node)
  }

  /**
   * After chmod, chown or utimens of `path`: the cached node is forgotten if
   * a copy-up replaced it. An upper node stays: what changed (mode, owners,
   * times) is read afresh from its lstat at every getattr, and nothing the
   * node records (layers, st_ino, origin, metacopy data) depends on it.
   */
  private attrsChanged (path: string, found: Node, node: Node): void {
    if (node !== found) this.lookup.invalidate(path)
  }

  /** chown with host ids; -1 leaves that id unchanged. */
  async chown (path: string, uid: number, gid: number): Promise<void> {
    const found = await this.lookup.get(path)
    const node = await this.writable(found, META_ONLY)
    const real = hitPath(node.top)
    if (this.override !== undefined) {
      await this.override.chown(real, node.top.layer, await fsp.lstat(real), uid, gid)
    } else {
      await this.io.lchown(node.top.layer, real, uid, gid)
    }
    this.attrsChanged(path, found, node)
  }

  async utimens (path: string, atime: Timespec, mtime: Timespec): Promise<void> {
    const found = await this.lookup.get(path)
    const node = await this.writable(found, META_ONLY)
    await this.io.utimens(node.top.layer, hitPath(node.top), atime, mtime)
    this.attrsChanged(path, found, node)
  }

  async truncate (path: string, size: number): Promise<void> {
    const found = await this.lookup.get(path)
    if (found.isDir) throw new OvlError('EISDIR', `is a directory: ${path}`)
    const node = await this.writable(found, { data: size !== 0 })
    await fsp.truncate(hitPath(node.top), size)
    this.lookup.invalidate(path)
  }

  async setxattr (path: string, name: string, value: Buffer, flags: number): Promise<void> {
    if (isPrivateXattr(name, this.xattrs.namespace)) throw new OvlError('EOPNOTSUPP', `overlay-private xattr ${name}`)
    this.assertNotOverride(name)
    const found = await this.lookup.get(path)
    // A lower name of a kept hard link changes the shared index inode's xattrs in place, as the kernel does.
    const node = found.index !== undefined ? found : await this.writable(found, META_ONLY)
    this.assertWritable()
    await lsetxattr(node.index ?? hitPath(node.top), name, value, flags)
    this.lookup.invalidate(path)
  }

  async removexattr (path: string, name: string): Promise<void> {
    if (isPrivateXattr(name, this.xattrs.namespace)) throw new OvlError('EOPNOTSUPP', `overlay-private xattr ${name}`)
    this.assertNotOverride(name)
    let node = await this.lookup.get(path)
    this.assertWritable()
    // As the kernel: removing an xattr the lower file does not have fails without a copy-up.
    if (!node.top.layer.isUpper && await lgetxattr(node.index ?? hitPath(node.top), name) === null) {
      throw new OvlError('ENODATA', `no xattr ${name} on ${path}`)
    }
    if (node.index === undefined) node = await this.writable(node, META_ONLY)
    await lremovexattr(node.index ?? hitPath(node.top), name)
    this.lookup.invalidate(path)
  }

  /** With xattr_permissions the override xattrs are the daemon's: not settable or removable through the mount. */
  private assertNotOverride (name: string): void {
    if (this.override?.hides(name) === true) throw new OvlError('EPERM', `${name} is kept by xattr_permissions`)
  }

  // ---- creating --------------------------------------------------------------

  async mkdir (path: string, mode: number, caller: Caller): Promise<void> {
    await this.createObject(path, caller, S_IFDIR | (mode & 0o7777), async (target, layer) => {
      await this.io.mkdir(layer, target, mode & 0o7777)
    })
  }

  async mknod (path: string, mode: number, dev: number, caller: Caller): Promise<void> {
    if ((mode & S_IFMT) === 0o100000 || (mode & S_IFMT) === 0) {
      await this.createObject(path, caller, mode, async (target) => {
        await closeFd(await openFd(target, C.O_CREAT | C.O_EXCL | C.O_WRONLY, mode & 0o7777))
      })
      return
    }
    await this.createObject(path, caller, mode, async (target, layer) => {
      await this.io.mknod(layer, target, mode, dev)
    })
  }

  async symlink (target: string, path: string, caller: Caller): Promise<void> {
    await this.createObject(path, caller, 0o120777, async (real, layer) => {
      await this.io.symlink(layer, target, real)
    })
  }

  async link (src: string, dst: string): Promise<void> {
    const s = await this.lookup.get(src)
    this.assertWritable()
    await this.assertNewName(dst)
    if (s.isDir) throw new OvlError('EPERM', `cannot hard-link a directory: ${src}`)
    const up = await this.writable(s)
    // No owner change: a hard link shares the inode, whose owner stays.
    await this.createObject(dst, undefined, 0, async (real) => {
      await fsp.link(hitPath(up.top), real)
    })
    this.lookup.invalidate(src)
  }

  /**
   * Create a new object at `path` in the upper layer, with the caller as owner.
   * Over an upper whiteout the object is built in the work dir and renamed in
   * (a directory made there is opaque, so the lower one stays hidden).
   */
  private async createObject (path: string, caller: Caller | undefined, mode: number, make: (real: string, layer: Layer) => Promise<void>): Promise<{ parent: Node, top: Hit }> {
    this.assertWritable()
    const [parentPath, name] = splitPath(path)
    assertCreatableName(name)
    return await this.locks.with([path], async () => await this.createLocked(path, parentPath, name, caller, mode, make))
  }

  private async createLocked (path: string, parentPath: string, name: string, caller: Caller | undefined, mode: number, make: (real: string, layer: Layer) => Promise<void>): Promise<{ parent: Node, top: Hit }> {
    const isDir = (mode & S_IFMT) === S_IFDIR
    const existing = await this.existingDir(parentPath)
    // In a directory only the upper layer has, the two lstats below are all a lookup of the name would make.
    const upperOnly = existing.dirs.length === 1 && existing.top.layer.isUpper
    if (!upperOnly && await this.lookup.resolve(path) !== null) throw new OvlError('EEXIST', `file exists: ${path}`)
    const parent = upperOnly ? existing : await this.ensureDir(parentPath)
    const upper = parent.top.layer
    const top = { layer: upper, rel: joinPath(parent.top.rel, name) }
    const target = realPath(upper, top.rel)
    const atTarget = await this.lstatIfAny(upper, target)
    if (upperOnly && atTarget !== undefined && !isWhiteoutStat(atTarget)) throw new OvlError('EEXIST', `file exists: ${path}`)
    const overWhiteout = atTarget !== undefined && isWhiteoutStat(atTarget)
    const aufsWh = realPath(upper, joinPath(parent.top.rel, aufsWhiteoutName(name)))
    const overAufsWhiteout = await this.lstatIfAny(upper, aufsWh) !== undefined
    const owner = caller !== undefined ? await this.ownerFor(parent, caller) : undefined
    const finish = async (real: string): Promise<void> => {
      if (owner === undefined) return
      const keep = (mode & 0o6000) | (isDir && owner.setgid ? S_ISGID : 0)
      if (this.override !== undefined) {
        // The owner and mode go into the override xattr; the real object stays the daemon's.
        const type = (await fsp.lstat(real)).mode & S_IFMT
        await this.override.stamp(real, { uid: owner.uid, gid: owner.gid, mode: type | (mode & 0o7777) | keep })
        return
      }
      await this.io.lchown(upper, real, owner.uid, owner.gid)
      // chown clears setuid/setgid; the kernel creates as the caller and keeps the bits asked for.
      if (keep !== 0 && (mode & S_IFMT) !== 0o120000) await this.io.chmod(upper, real, (mode & 0o7777) | keep)
    }
    if (!overWhiteout && !overAufsWhiteout) {
      await make(target, upper)
      try {
        await finish(target)
        // With redirect_dir=on the kernel marks a directory made in a merged one opaque, an optimisation it allows
        // itself once lower layers may no longer change offline (ovl_create_upper, ovl_allow_offline_changes).
        if (isDir && this.options.redirectDir !== false && parent.dirs.length > 1) {
          await lsetxattr(target, this.xattrs.opaque, Buffer.from('y')).catch(() => {})
        }
      } catch (err) {
        await fsp.rm(target, { recursive: true, force: true }).catch(() => {})
        throw err
      }
    } else {
      const tmp = this.requireWork().temp()
      const exchange = overWhiteout && isDir
      let placed = false
      try {
        await make(tmp, upper)
        await finish(tmp)
        if (isDir && await this.lookup.lowerPositive(path)) await lsetxattr(tmp, this.xattrs.opaque, Buffer.from('y'))
        await this.io.rename(upper, tmp, target, exchange ? RENAME_EXCHANGE : 0)
        placed = true
      } finally {
        // After an exchange the whiteout it replaced is at tmp; after a failure, what was made.
        if (!placed || exchange) await this.discard(upper, tmp)
      }
      if (overAufsWhiteout) await fsp.unlink(aufsWh).catch(() => {})
    }
    this.lookup.invalidate(path)
    return { parent, top }
  }

  /** The parent of `path` exists and is a directory (ENOENT/ENOTDIR), and `path` does not exist (EEXIST). */
  private async assertNewName (path: string): Promise<void> {
    await this.existingDir(splitPath(path)[0])
    if (await this.lookup.resolve(path) !== null) throw new OvlError('EEXIST', `file exists: ${path}`)
  }

  private async existingDir (path: string): Promise<Node> {
    const n = await this.lookup.get(path)
    if (!n.isDir) throw new OvlError('ENOTDIR', `not a directory: ${path || '/'}`)
    return n
  }

  /** Owner of a new object in `parent` (an upper directory): the caller's ids, the parent's gid under a setgid parent (as shown). */
  private async ownerFor (parent: Node, caller: Caller): Promise<{ uid: number, gid: number, setgid: boolean }> {
    const real = hitPath(parent.top)
    const big = await this.lstatOf(parent.top.layer, real)
    const lst = { uid: Number(big.uid), gid: Number(big.gid), mode: Number(big.mode) }
    const pst = this.override !== undefined ? await this.override.effective(real, parent.top.layer, lst) : lst
    const setgid = (pst.mode & S_ISGID) !== 0
    return { uid: caller.uid, gid: setgid ? pst.gid : caller.gid, setgid }
  }

  // ---- removing --------------------------------------------------------------

  async unlink (path: string): Promise<void> {
    this.assertWritable()
    await this.locks.with([path], async () => {
      const node = await this.lookup.get(path)
      if (node.isDir) throw new OvlError('EISDIR', `is a directory: ${path}`)
      await this.remove(node)
    })
  }

  async rmdir (path: string): Promise<void> {
    this.assertWritable()
    if (path === '') throw new OvlError('EBUSY', 'cannot remove the root')
    await this.locks.with([path], async () => {
      const node = await this.lookup.get(path)
      if (!node.isDir) throw new OvlError('ENOTDIR', `not a directory: ${path}`)
      if (!await isEmptyDir(this.lookup, node)) throw new OvlError('ENOTEMPTY', `directory not empty: ${path}`)
      await this.remove(node)
      this.lookup.invalidate(path)
    })
  }

  /** Remove a name: from the upper layer if there, and leave a whiteout when a lower layer still shows it. */
  private async remove (found: Node): Promise<void> {
    // A lower name of a file with several names is linked up first, so the other names' link count drops (hardlinks.ts).
    const { node, fh } = await this.replacedHardLink(found)
    const [parentPath, name] = splitPath(node.path)
    const lowerPositive = await this.lookup.lowerPositive(node.path)
    const parent = await this.ensureDir(parentPath)
    const target = realPath(parent.top.layer, joinPath(parent.top.rel, name))
    const upper = parent.top.layer
    if (!node.top.layer.isUpper) {
      await this.placeWhiteout(target, 'none')
    } else if (lowerPositive) {
      await this.placeWhiteout(target, node.isDir ? 'dir' : 'nondir')
    } else if (node.isDir) {
      const trash = this.requireWork().temp()
      await this.io.rename(upper, target, trash)
      await this.io.removeTree(upper, trash)
    } else {
      await this.io.unlink(upper, target)
    }
    this.lookup.invalidate(node.path)
    if (fh !== undefined) await this.hardlinks?.release(fh)
  }

  /**
   * Put a whiteout at `target` in the upper layer, atomically replacing what
   * is there: a char device 0/0 built in the work dir, renamed over a
   * non-directory or exchanged with a directory (then removed); or, where
   * mknod is not allowed, a `.wh.NAME` file beside it.
   */
  private async placeWhiteout (target: string, existing: 'none' | 'nondir' | 'dir'): Promise<void> {
    const work = this.requireWork()
    const upper = this.stack.upper!
    if (this.whiteoutStyle === 'aufs') {
      const dir = target.slice(0, target.lastIndexOf('/'))
      const name = target.slice(target.lastIndexOf('/') + 1)
      await makeAufsWhiteout(dir + '/' + aufsWhiteoutName(name))
      if (existing === 'dir') {
        const trash = work.temp()
        await fsp.rename(target, trash)
        await fsp.rm(trash, { recursive: true, force: true })
      } else if (existing === 'nondir') {
        await fsp.unlink(target)
      }
      return
    }
    if (existing === 'none') {
      // Where the upper layer has nothing, making the whiteout in place is as atomic as renaming one there.
      try {
        await this.makeWhiteout(upper, work, target)
        return
      } catch (err) {
        if (codeOf(err) !== 'EEXIST') throw err
      }
    }
    const tmp = work.temp()
    await this.makeWhiteout(upper, work, tmp)
    let placed = false
    try {
      await this.io.rename(upper, tmp, target, existing === 'dir' ? RENAME_EXCHANGE : 0)
      placed = true
    } finally {
      // After an exchange the replaced directory is at tmp; after a failure, the whiteout.
      if (!placed || existing === 'dir') await this.discard(upper, tmp)
    }
  }

  /**
   * A char device 0/0 at `dst` (which must not exist): a hard link of the work
   * dir's shared whiteout, as the kernel makes them (ovl_whiteout), or its own
   * mknod where the upper filesystem refuses such links.
   */
  private async makeWhiteout (upper: Layer, work: WorkDir, dst: string): Promise<void> {
    for (let tries = 0; work.sharesWhiteouts && tries < 2; tries++) {
      let shared = work.sharedWhiteout
      if (shared === undefined) {
        shared = work.temp()
        await this.io.mknod(upper, shared, S_IFCHR, 0)
        work.sharedWhiteout = shared
        this.onSharedWhiteout(shared)
      }
      try {
        await this.io.link(upper, shared, dst)
        return
      } catch (err) {
        const c = codeOf(err)
        if (c === 'EEXIST' || (c === 'ENOENT' && tries > 0)) throw err
        // Full (EMLINK) or gone (ENOENT: removed behind our back): start a new one; the full one's links stay whiteouts.
        if (work.sharedWhiteout === shared) {
          work.sharedWhiteout = undefined
          this.onSharedWhiteout(undefined)
        }
        if (c === 'EMLINK') await this.discard(upper, shared)
        if (c !== 'EMLINK' && c !== 'ENOENT') work.sharesWhiteouts = false
      }
    }
    await this.io.mknod(upper, dst, S_IFCHR, 0)
  }

  /** At unmount: the shared whiteout goes, so the work dir is left empty (the kernel's stays until the next mount). */
  close (): void {
    const shared = this.work?.sharedWhiteout
    if (shared === undefined || this.work === undefined) return
    this.work.sharedWhiteout = undefined
    this.onSharedWhiteout(undefined)
    try {
      fs.unlinkSync(shared)
    } catch {}
  }

  /** Remove a work dir temp and what is under it; errors ignored (the work dir is emptied at mount). */
  private async discard (upper: Layer, tmp: string): Promise<void> {
    try {
      await this.io.removeTree(upper, tmp)
    } catch {}
  }

  // ---- rename ----------------------------------------------------------------

  async rename (src: string, dst: string): Promise<void> {
    this.assertWritable()
    assertCreatableName(splitPath(dst)[1])
    await this.locks.with([src, dst], async () => await this.renameLocked(src, dst))
  }

  private async renameLocked (src: string, dst: string): Promise<void> {
    if (src === dst) {
      await this.lookup.get(src)
      return
    }
    // The VFS resolves both parents before it looks the names up.
    const [dstParentPath, dstName] = splitPath(dst)
    await this.existingDir(splitPath(src)[0])
    await this.existingDir(dstParentPath)
    const s = await this.lookup.get(src)
    if (dst.startsWith(src + '/')) throw new OvlError('EINVAL', `cannot move ${src} into itself`)
    // The VFS's lock_rename trap: a target that is an ancestor of the source.
    if (src.startsWith(dst + '/') || dst === '') throw new OvlError('ENOTEMPTY', `${dst || '/'} is an ancestor of ${src}`)
    const d = await this.lookup.resolve(dst)
    const hasLower = s.isDir && (!s.top.layer.isUpper || s.dirs.length > 1)
    // Every check comes before any copy-up, as in the VFS: a failing rename changes nothing.
    if (s.isDir) {
      // The order of the kernel's checks: type mismatch (VFS), then EXDEV, then ENOTEMPTY.
      if (d !== null && !d.isDir) throw new OvlError('ENOTDIR', `not a directory: ${dst}`)
      if (hasLower && this.options.redirectDir === false) {
        throw new OvlError('EXDEV', `renaming a directory that has lower layers needs redirect_dir=on: ${src}`)
      }
      // An upper-only target is left to the upper filesystem's rename, after the copy-up and the markers, as in the kernel.
      if (d !== null && !pureUpper(d) && !await isEmptyDir(this.lookup, d)) throw new OvlError('ENOTEMPTY', `directory not empty: ${dst}`)
    } else if (d !== null && d.isDir) {
      throw new OvlError('EISDIR', `is a directory: ${dst}`)
    }
    const srcLowerPositive = await this.lookup.lowerPositive(src)
    // A lower file (one name) or a metadata-only copy moves as a metadata-only copy with a redirect to its data, as the kernel does.
    const metaMove = !s.isDir && this.metacopyRename && (s.data !== undefined || (!s.top.layer.isUpper && s.stat.isFile() && s.stat.nlink === 1n && s.stat.size > 0n))
    const up = await this.writable(s, metaMove ? META_ONLY : undefined)
    // A replaced name of a kept hard link: linked up first (so its other names' count drops), its index entry released after.
    const replacedFh = d !== null && !d.isDir ? (await this.replacedHardLink(d)).fh : undefined
    const dstParent = await this.ensureDir(dstParentPath)
    const target = realPath(dstParent.top.layer, joinPath(dstParent.top.rel, dstName))
    const from = hitPath(up.top)
    if (d !== null && d.isDir && d.top.layer.isUpper && !pureUpper(d)) await removeEntries(target) // only whiteouts are left in an upper dir that is empty in the merged view
    if (hasLower || up.data !== undefined) {
      // A directory with lower layers, or a metadata-only copy, keeps them through a redirect to where they are (redirect.ts).
      await this.setRedirect(up, splitPath(src)[0] === dstParentPath)
    } else if (s.isDir && dstParent.dirs.length > 1 && !await this.lookup.isOpaque(up.top)) {
      // An upper-only directory moved into a merged directory must hide what lower layers hold under its new name.
      await lsetxattr(from, this.xattrs.opaque, Buffer.from('y'))
    }
    if (s.isDir && await isWhiteoutAt(target)) {
      // A directory cannot replace the whiteout file: swap them, then the whiteout is at the
      // source, where it stays if a lower layer still shows the old name (as the kernel does).
      await renameat2(from, target, RENAME_EXCHANGE)
      if (!srcLowerPositive || this.whiteoutStyle !== 'chardev') await fsp.unlink(from)
      if (srcLowerPositive && this.whiteoutStyle !== 'chardev') await this.placeWhiteout(from, 'none')
    } else if (srcLowerPositive && this.whiteoutStyle === 'chardev') {
      await renameWithWhiteout(from, target, this.requireWork())
    } else {
      await fsp.rename(from, target)
      if (srcLowerPositive) await this.placeWhiteout(from, 'none')
    }
    const aufsWh = realPath(dstParent.top.layer, joinPath(dstParent.top.rel, aufsWhiteoutName(dstName)))
    if (s.isDir) await fsp.unlink(aufsWh).catch(() => {})
    if (s.isDir) this.lookup.clear()
    this.lookup.invalidate(src)
    this.lookup.invalidate(dst)
    if (replacedFh !== undefined) await this.hardlinks?.release(replacedFh)
  }

  /**
   * For a name about to be replaced or removed that belongs to a kept hard link (hardlinks.ts):
   * link it up if it is still a lower name, as the kernel does. Returns the name's node (linked
   * up or as it was) and its index handle, if it has one.
   */
  private async replacedHardLink (node: Node): Promise<{ node: Node, fh?: Buffer }> {
    if (this.hardlinks === undefined || !node.stat.isFile() || node.stat.nlink < 2n) return { node }
    const up = node.fh !== undefined ? await this.writable(node) : node
    return { node: up, fh: up.top.layer.isUpper ? await this.hardlinks.originOf(hitPath(up.top)) : undefined }
  }

  /** Give a copied-up directory about to move the redirect the kernel would (EXDEV when it cannot be written). */
  private async setRedirect (node: Node, samedir: boolean): Promise<void> {
    const real = hitPath(node.top)
    const value = await redirectForRename(await readRedirect(real), samedir, node.path, async (p) => {
      const a = await this.lookup.get(p)
      return a.top.layer.isUpper ? await readRedirect(hitPath(a.top)) : undefined
    })
    if (value === undefined) return
    try {
      await lsetxattr(real, this.xattrs.redirect, Buffer.from(value))
    } catch (err) {
      throw new OvlError('EXDEV', `cannot record the redirect of ${node.path}: ${String(codeOf(err) ?? err)}`)
    }
  }

  // ---- helpers ---------------------------------------------------------------

  /** Metadata syscalls on the layers (layer-io.ts). */
  private get io (): LayerIo {
    return this.lookup.io
  }

  /**
   * lstat of whatever is at `real` in `layer`; undefined when nothing is (also
   * for ENOTDIR, and for ENAMETOOLONG: `.wh.NAME` of a 252..255-byte NAME is
   * longer than any name can be).
   */
  private async lstatIfAny (layer: Layer, real: string): Promise<BigIntStats | undefined> {
    try {
      return await this.io.lstat(layer, real)
    } catch (err) {
      if (codeOf(err) === 'ENOTDIR' || codeOf(err) === 'ENAMETOOLONG') return undefined
      throw err
    }
  }

  /** lstat of an object known to exist in `layer` (ENOENT if it vanished). */
  private async lstatOf (layer: Layer, real: string): Promise<BigIntStats> {
    const st = await this.io.lstat(layer, real)
    if (st === undefined) throw new OvlError('ENOENT', `no such file or directory: ${real}`)
    return st
  }

  private assertWritable (): void {
    if (this.stack.readOnly) throw new OvlError('EROFS', 'read-only overlay (no upperdir)')
  }

  private requireWork (): WorkDir {
    if (this.work === undefined) throw new OvlError('EROFS', 'read-only overlay (no upperdir)')
    return this.work
  }

  /** The node, copied up (data too unless told otherwise) so it can be changed. */
  private async writable (node: Node, opts: CopyUpOptions = { data: true }): Promise<Node> {
    this.assertWritable()
    if (node.top.layer.isUpper && node.data === undefined) return node
    if (this.copyUp === undefined) throw new OvlError('EROFS', 'read-only overlay')
    return await this.copyUp.ensure(node, opts)
  }

  private async ensureDir (path: string): Promise<Node> {
    this.assertWritable()
    if (this.copyUp === undefined) throw new OvlError('EROFS', 'read-only overlay')
    return await this.copyUp.ensureDir(path)
  }

  /** Sync the upper root (syncfs-like best effort on fsyncdir of the root). */
  async fsyncdir (path: string): Promise<void> {
    if (!this.sync) return
    const node = await this.lookup.get(path)
    if (node.top.layer.isUpper) await fsyncPath(hitPath(node.top))
  }
}

export { UTIME_NOW, UTIME_OMIT }
export type { Timespec, DirEntry, OpenFile }

/**
 * Names starting with `.wh.` are whiteouts in ovlfs's layers: one created
 * through the mount would hide a lower name, so they are refused (EINVAL, as
 * fuse-overlayfs does); the kernel, which ignores such names, allows them.
 */
function assertCreatableName (name: string): void {
  if (isWhiteoutName(name)) throw new OvlError('EINVAL', `names starting with .wh. are reserved for whiteouts: ${name}`)
}

/** FUSE attributes of a real object; a merged directory reports nlink 1, as the kernel does. */
function attrOf (st: BigIntStats, ino: number, mergedDir: boolean): Attr {
  return {
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    nlink: mergedDir ? 1 : Number(st.nlink),
    ino,
    rdev: Number(st.rdev),
    blksize: Number(st.blksize),
    blocks: Number(st.blocks),
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
  }
}

/**
 * Hold every layer directory (and the workdir) open and address it through
 * its descriptor (/proc/self/fd/N), as the kernel holds its layers: renaming
 * or moving a layer directory under a live mount changes nothing for it.
 */
function pinLayers (o: EngineOptions): EngineOptions {
  // The trailing '/.' makes even an lstat of the layer root follow the descriptor's magic link.
  const pin = (dir: string): string => `/proc/self/fd/${fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY)}/.`
  return {
    ...o,
    lowerdirs: o.lowerdirs.map(pin),
    upperdir: o.upperdir !== undefined ? pin(o.upperdir) : undefined,
    workdir: o.workdir !== undefined ? pin(o.workdir) : undefined,
  }
}

/** Map with at most `limit` calls in flight, keeping order. */
async function mapLimit<T, R> (items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

/** A directory only in the upper layer (no lower part merged into it). */
function pureUpper (n: Node): boolean {
  return n.top.layer.isUpper && n.dirs.length === 1
}

async function isWhiteoutAt (p: string): Promise<boolean> {
  try {
    return isWhiteoutStat(await fsp.lstat(p))
  } catch {
    return false
  }
}


/**
 * Create the empty file `.wh.NAME` without following anything planted there:
 * O_EXCL|O_NOFOLLOW; an existing regular file is already the whiteout, anything
 * else at that name (a symlink, a directory) is replaced.
 */
async function makeAufsWhiteout (p: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await closeFd(await openFd(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW, 0o000))
      return
    } catch (err) {
      if (codeOf(err) !== 'EEXIST' || attempt > 2) throw err
    }
    const st = await fsp.lstat(p)
    if (st.isFile()) return
    await fsp.rm(p, { recursive: true, force: true })
  }
}

/**
 * rename(2) that leaves a whiteout at the source in the same step
 * (RENAME_WHITEOUT), falling back to rename + whiteout where the filesystem
 * does not offer it.
 */
async function renameWithWhiteout (from: string, to: string, work: WorkDir): Promise<void> {
  try {
    await renameat2(from, to, RENAME_WHITEOUT)
    return
  } catch (err) {
    if (codeOf(err) !== 'EINVAL' && codeOf(err) !== 'EOPNOTSUPP' && codeOf(err) !== 'ENOSYS') throw err
  }
  await fsp.rename(from, to)
  const tmp = work.temp()
  await mknod(tmp, S_IFCHR, 0)
  await fsp.rename(tmp, from)
}

