import * as fs from 'node:fs'
import { promisify } from 'node:util'
import { OvlError } from './errors'

/** An open file of the mount: a real fd in one layer. */
export interface OpenFile {
  readonly id: number
  fd: number
  /** Open flags as the caller gave them (minus creation flags). */
  readonly flags: number
  /** Whether `fd` is in the upper layer. */
  upper: boolean
  /** Merged path when opened (for finding handles to refresh on copy-up). */
  path: string
  /** Merged st_ino of the file (for fgetattr after the name is gone). */
  readonly ino: number
  /** Whether a write has already checked the setgid bit (see privs.ts). */
  privsDropped?: boolean
  /** Removed from the table (released): its fd is the releaser's to close, not a copy-up's to replace. */
  released?: boolean
  /**
   * While `fd` is the lower data of a metadata-only copy (metacopy.ts): an
   * O_PATH fd of that upper copy, whose inode holds the file's attributes,
   * so that fgetattr still finds them once the name is gone (the kernel's
   * overlayfs keeps the upper inode of an open file too). Closed with the
   * handle, or when the data is copied up.
   */
  meta?: number
}

/** Linux's O_PATH (Node's fs.constants lacks it): an fd for fstat only. */
const O_PATH = 0o10000000

/**
 * The table of open files. The kernel's overlayfs makes a file opened
 * read-only before its copy-up read the copied-up data afterwards; so does
 * ovlfs: a copy-up reopens the lower handles of that path on the upper copy.
 */
export class Handles {
  private readonly byId = new Map<number, OpenFile>()
  private readonly lowerByPath = new Map<string, Set<OpenFile>>()
  private nextId = 1
  /**
   * Files opened outside this table that must move on a copy-up too (the
   * addon's, src/fuse/fast-names.ts): called with the merged path, or with
   * null and the merged st_ino for all names of a hard-linked file.
   */
  onMove: ((path: string | null, ino: number, upperPath: string) => void) | undefined

  add (fd: number, flags: number, upper: boolean, path: string, ino: number): OpenFile {
    let id = this.nextId
    while (this.byId.has(id) || id === 0) id = (id + 1) % 0x7fffffff
    this.nextId = (id + 1) % 0x7fffffff
    const h: OpenFile = { id, fd, flags, upper, path, ino }
    this.byId.set(id, h)
    if (!upper) {
      let set = this.lowerByPath.get(path)
      if (set === undefined) this.lowerByPath.set(path, set = new Set())
      set.add(h)
    }
    return h
  }

  /** An upper file opened outside this table with handle `id` (one add() never gives: at or above 2^31). */
  adopt (id: number, fd: number, flags: number, path: string, ino: number): OpenFile {
    if (id <= 0x7fffffff || this.byId.has(id)) throw new OvlError('EBADF', `handle ${id} cannot be adopted`)
    const h: OpenFile = { id, fd, flags, upper: true, path, ino }
    this.byId.set(id, h)
    return h
  }

  get (id: number): OpenFile {
    const h = this.byId.get(id)
    if (h === undefined) throw new OvlError('EBADF', `no open file with handle ${id}`)
    return h
  }

  /** Remove and return the handle; the caller closes its fd. */
  remove (id: number): OpenFile {
    const h = this.get(id)
    h.released = true
    this.byId.delete(id)
    this.untrack(h)
    return h
  }

  /**
   * After a copy-up of `path`: move its read-only handles from the lower copy
   * to the upper one at once (not lazily: the name may be unlinked before the
   * next read, and reads by handle carry no path then).
   */
  async moveToUpper (path: string, upperPath: string): Promise<void> {
    this.onMove?.(path, 0, upperPath)
    const set = this.lowerByPath.get(path)
    if (set === undefined) return
    this.lowerByPath.delete(path)
    await reopen(set, upperPath)
  }

  /**
   * After the first copy-up of a file with several names kept as hard links
   * (hardlinks.ts): the read-only handles of its other names, all one inode
   * (`ino`), move to the copy too.
   */
  async moveInoToUpper (ino: number, upperPath: string): Promise<void> {
    this.onMove?.(null, ino, upperPath)
    const moved = new Set<OpenFile>()
    for (const [p, set] of this.lowerByPath) {
      for (const h of set) if (h.ino === ino) moved.add(h)
      for (const h of moved) set.delete(h)
      if (set.size === 0) this.lowerByPath.delete(p)
    }
    await reopen(moved, upperPath)
  }

  /**
   * After a metadata-only copy of `path` to `upperMeta`, or an open of such a
   * copy (`only`: that handle): its read-only handles, whose fds stay on the
   * lower data, also hold the copy (OpenFile.meta).
   */
  async holdMeta (path: string, upperMeta: string, only?: OpenFile): Promise<void> {
    const set = only !== undefined ? [only] : [...(this.lowerByPath.get(path) ?? [])]
    for (const h of set) {
      if (h.meta !== undefined || h.upper || isReleased(h)) continue
      const fd = await openFd(upperMeta, O_PATH | fs.constants.O_NOFOLLOW)
      if (h.meta !== undefined || h.upper || isReleased(h)) { // (changed while the open was on the pool)
        await closeFd(fd)
        continue
      }
      h.meta = fd
    }
  }

  get size (): number {
    return this.byId.size
  }

  private untrack (h: OpenFile): void {
    if (h.upper) return
    const set = this.lowerByPath.get(h.path)
    if (set === undefined) return
    set.delete(h)
    if (set.size === 0) this.lowerByPath.delete(h.path)
  }
}

/**
 * Reopen lower read-only handles on their upper copy, at once. A handle
 * released while its new fd was being opened keeps the old one, which its
 * release closed (closing it here too would close whatever file took that
 * fd number meanwhile); the new fd is closed instead.
 */
async function reopen (handles: Iterable<OpenFile>, upperPath: string): Promise<void> {
  const C = fs.constants
  for (const h of handles) {
    if (isReleased(h)) continue
    const fd = await openFd(upperPath, (h.flags & ~(C.O_CREAT | C.O_EXCL | C.O_TRUNC)) | C.O_NOFOLLOW)
    if (isReleased(h)) { // (released while the open was on the pool)
      await closeFd(fd)
      continue
    }
    const old = h.fd
    const meta = h.meta
    h.fd = fd
    h.upper = true
    h.meta = undefined
    await closeFd(old)
    if (meta !== undefined) await closeFd(meta)
  }
}

function isReleased (h: OpenFile): boolean {
  return h.released === true
}

/** Raw fds through the callback API: no FileHandle objects, no GC closing fds behind our back. */
export const openFd: (p: string, flags: number, mode?: number) => Promise<number> = promisify(fs.open) as (p: string, flags: number, mode?: number) => Promise<number>
export const closeFd: (fd: number) => Promise<void> = promisify(fs.close)
export const fstatFd = promisify(fs.fstat) as (fd: number, o: { bigint: true }) => Promise<fs.BigIntStats>
