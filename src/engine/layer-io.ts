import * as fs from 'node:fs'
import { promises as fsp, type BigIntStats } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { type Timespec, lgetxattr, lgetxattrSync, llistxattr, llistxattrSync, mknod, mknodSync, renameat2, renameat2Sync, utimensat, utimensatSync } from '../native/sys'
import { closeFd, fstatFd, openFd } from './handles'
import type { Layer } from './layers'
import type { MaybePromise } from './maybe'

/**
 * Metadata syscalls on a layer, made on the JS thread while the layer answers
 * fast.
 *
 * A syscall through the libuv pool (fs.promises, the ovlfs_sys addon) costs
 * the daemon a hop to a pool thread and back, a promise and a microtask turn:
 * on the lookup path that was the largest single cost after the binding's own
 * (a sixth of the JS thread's time per LOOKUP of a lower name;
 * scripts/bench/split.js, README "Where the time goes"), and a file created
 * by `tar -x` took some forty such hops (its lookups, the create, the
 * chown/chmod/utimens that follow and the lookups after each), for syscalls
 * that take a few microseconds when the inode is cached. Layers are local
 * directories, so their metadata calls (lstat, xattr reads, and on the upper
 * layer the small changes: create, chmod, chown, utimens) are made
 * synchronously, as a C daemon (fuse-overlayfs) makes every syscall, and
 * timed: a layer whose call ever takes longer than SLOW_MS (a network or FUSE
 * file system under it that stalls, a journal that blocks) goes back to the
 * pool for SLOW_BACKOFF_MS, so one stalling layer does not hold up the
 * requests for the others for long. SLOW_MS is well above what a cold inode
 * read from a local disk, or being preempted on a busy machine, costs (a few
 * ms; measured with the wall clock, which cannot tell them apart). Data (file
 * reads and writes, copy-up copies, fsync) always goes through the pool.
 */
export class LayerIo {
  /** Per layer index: until when (performance.now()) its calls go through the pool. */
  private readonly slowUntil: number[] = []

  static readonly SLOW_MS = 50
  static readonly SLOW_BACKOFF_MS = 30_000

  /**
   * `inline` on the JS thread, timed, while `layer` answers fast (its result
   * or its throw, synchronously); else `pooled` (a promise).
   */
  run<T> (layer: Layer, inline: () => T, pooled: () => Promise<T>): MaybePromise<T> {
    if (this.isSlow(layer)) return pooled()
    const t0 = performance.now()
    try {
      return inline()
    } finally {
      const t1 = performance.now()
      if (t1 - t0 > LayerIo.SLOW_MS) this.slowUntil[layer.index] = t1 + LayerIo.SLOW_BACKOFF_MS
    }
  }

  /** lstat `real` (a path in `layer`); undefined when it does not exist (ENOENT). */
  lstat (layer: Layer, real: string): MaybePromise<BigIntStats | undefined> {
    return this.run(layer, () => fs.lstatSync(real, { bigint: true, throwIfNoEntry: false }), async () => await pooledLstat(real))
  }

  /** The xattr names of `real` (symlinks not followed). */
  llistxattr (layer: Layer, real: string): MaybePromise<string[]> {
    return this.run(layer, () => llistxattrSync(real), async () => await llistxattr(real))
  }

  /** The value of xattr `name` on `real`; null when it is not set. */
  lgetxattr (layer: Layer, real: string, name: string): MaybePromise<Buffer | null> {
    return this.run(layer, () => lgetxattrSync(real, name), async () => await lgetxattr(real, name))
  }

  chmod (layer: Layer, real: string, mode: number): MaybePromise<void> {
    return this.run(layer, () => fs.chmodSync(real, mode), async () => await fsp.chmod(real, mode))
  }

  lchown (layer: Layer, real: string, uid: number, gid: number): MaybePromise<void> {
    return this.run(layer, () => fs.lchownSync(real, uid, gid), async () => await fsp.lchown(real, uid, gid))
  }

  utimens (layer: Layer, real: string, atime: Timespec, mtime: Timespec): MaybePromise<void> {
    return this.run(layer, () => utimensatSync(real, atime, mtime, true), async () => await utimensat(real, atime, mtime, true))
  }

  /** open(2) with a mode; the descriptor. */
  open (layer: Layer, real: string, flags: number, mode?: number): MaybePromise<number> {
    return this.run(layer, () => fs.openSync(real, flags, mode), async () => await openFd(real, flags, mode))
  }

  fstat (layer: Layer, fd: number): MaybePromise<BigIntStats> {
    return this.run(layer, () => fs.fstatSync(fd, { bigint: true }), async () => await fstatFd(fd, { bigint: true }))
  }

  close (layer: Layer, fd: number): MaybePromise<void> {
    return this.run(layer, () => fs.closeSync(fd), async () => await closeFd(fd))
  }

  /** mknod(2); `mode` includes the file type. */
  mknod (layer: Layer, real: string, mode: number, dev: number): MaybePromise<void> {
    return this.run(layer, () => mknodSync(real, mode, dev), async () => await mknod(real, mode, dev))
  }

  /** rename(2) within the layer (its work dir included); renameat2(2) when `flags` are given. */
  rename (layer: Layer, from: string, to: string, flags = 0): MaybePromise<void> {
    if (flags !== 0) return this.run(layer, () => renameat2Sync(from, to, flags), async () => await renameat2(from, to, flags))
    return this.run(layer, () => fs.renameSync(from, to), async () => await fsp.rename(from, to))
  }

  /** mkdir(2) with exactly `mode` less the umask, as fs.mkdir. */
  mkdir (layer: Layer, real: string, mode: number): MaybePromise<void> {
    return this.run(layer, () => { fs.mkdirSync(real, { mode }) }, async () => { await fsp.mkdir(real, { mode }) })
  }

  symlink (layer: Layer, target: string, real: string): MaybePromise<void> {
    return this.run(layer, () => fs.symlinkSync(target, real), async () => await fsp.symlink(target, real))
  }

  /** link(2): a new name `to` for `from`. */
  link (layer: Layer, from: string, to: string): MaybePromise<void> {
    return this.run(layer, () => fs.linkSync(from, to), async () => await fsp.link(from, to))
  }

  unlink (layer: Layer, real: string): MaybePromise<void> {
    return this.run(layer, () => fs.unlinkSync(real), async () => await fsp.unlink(real))
  }

  /**
   * Remove `real` and everything under it; nothing when it does not exist.
   * For the work dir's trash: a directory that was empty in the merged view,
   * so it holds whiteouts and opaque markers only, a few syscalls each.
   */
  removeTree (layer: Layer, real: string): MaybePromise<void> {
    return this.run(layer, () => fs.rmSync(real, { recursive: true, force: true }), async () => await fsp.rm(real, { recursive: true, force: true }))
  }

  /** Whether the layer's calls go through the pool right now (tests, diagnostics). */
  isSlow (layer: Layer): boolean {
    return (this.slowUntil[layer.index] ?? 0) > performance.now()
  }
}

async function pooledLstat (real: string): Promise<BigIntStats | undefined> {
  try {
    return await fsp.lstat(real, { bigint: true })
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw err
  }
}
