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
  /** Set when the file was copied up after this read-only handle was opened on the lower copy. */
  stale: boolean
  /** Merged path when opened (for finding handles to refresh on copy-up). */
  path: string
  /** Merged st_ino of the file (for fgetattr after the name is gone). */
  readonly ino: number
}

/**
 * The table of open files. The kernel's overlayfs makes a file opened
 * read-only before its copy-up read the copied-up data afterwards; so does
 * ovlfs: a copy-up marks lower handles of that path stale and the next read
 * reopens them on the upper copy.
 */
export class Handles {
  private readonly byId = new Map<number, OpenFile>()
  private readonly lowerByPath = new Map<string, Set<OpenFile>>()
  private nextId = 1

  add (fd: number, flags: number, upper: boolean, path: string, ino: number): OpenFile {
    let id = this.nextId
    while (this.byId.has(id) || id === 0) id = (id + 1) % 0x7fffffff
    this.nextId = (id + 1) % 0x7fffffff
    const h: OpenFile = { id, fd, flags, upper, stale: false, path, ino }
    this.byId.set(id, h)
    if (!upper) {
      let set = this.lowerByPath.get(path)
      if (set === undefined) this.lowerByPath.set(path, set = new Set())
      set.add(h)
    }
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
    this.byId.delete(id)
    this.untrack(h)
    return h
  }

  /** After a copy-up of `path`: read-only handles on the lower copy must move to the upper one. */
  markCopiedUp (path: string): void {
    const set = this.lowerByPath.get(path)
    if (set === undefined) return
    for (const h of set) h.stale = true
    this.lowerByPath.delete(path)
  }

  /** Reopen a stale handle on the upper copy at `upperPath`. */
  async refresh (h: OpenFile, upperPath: string): Promise<void> {
    const C = fs.constants
    const fd = await openFd(upperPath, (h.flags & ~(C.O_CREAT | C.O_EXCL | C.O_TRUNC)) | C.O_NOFOLLOW)
    const old = h.fd
    h.fd = fd
    h.upper = true
    h.stale = false
    await closeFd(old)
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

/** Raw fds through the callback API: no FileHandle objects, no GC closing fds behind our back. */
export const openFd: (p: string, flags: number, mode?: number) => Promise<number> = promisify(fs.open) as (p: string, flags: number, mode?: number) => Promise<number>
export const closeFd: (fd: number) => Promise<void> = promisify(fs.close)
