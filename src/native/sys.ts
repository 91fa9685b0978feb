// Typed Promise wrappers over the ovlfs_sys N-API addon (src/native/ovlfs_sys.c):
// the Linux syscalls Node's fs lacks. Every call runs on the libuv thread pool;
// the metadata calls also have ...Sync twins that run on the calling thread
// (for layers that answer fast: src/engine/layer-io.ts decides).
// Errors are SysError with code/errno/syscall/path like Node's fs errors.
import os from 'os'
import path from 'path'

export type PathLike = string | Buffer
export type Timespec = { sec: number; nsec: number }

export interface StatFs {
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

/** The raw addon. Rejections carry `errno` (positive), `syscall` and `errname` (glibc strerrorname_np) only. */
interface Addon {
  lgetxattr(p: PathLike, name: PathLike): Promise<Buffer | null>
  lsetxattr(p: PathLike, name: PathLike, value: Buffer, flags: number): Promise<void>
  llistxattr(p: PathLike): Promise<Buffer>
  lremovexattr(p: PathLike, name: PathLike): Promise<void>
  mknod(p: PathLike, mode: number, dev: number): Promise<void>
  renameat2(oldPath: PathLike, newPath: PathLike, flags: number): Promise<void>
  utimensat(p: PathLike, aSec: number, aNsec: number, mSec: number, mNsec: number, nofollow: number): Promise<void>
  futimens(fd: number, aSec: number, aNsec: number, mSec: number, mNsec: number): Promise<void>
  copyData(src: PathLike, dst: PathLike, mode: number, flags: number): Promise<number>
  fsyncPath(p: PathLike): Promise<void>
  statfs(p: PathLike): Promise<StatFs>
  readdirIno(p: PathLike): Promise<Buffer>
  overlayFh(p: PathLike): Promise<Buffer>
  lgetxattrSync(p: PathLike, name: PathLike): Buffer | null
  llistxattrSync(p: PathLike): Buffer
  utimensatSync(p: PathLike, aSec: number, aNsec: number, mSec: number, mNsec: number, nofollow: number): void
  mknodSync(p: PathLike, mode: number, dev: number): void
  renameat2Sync(oldPath: PathLike, newPath: PathLike, flags: number): void
}

export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2
export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2
export const RENAME_WHITEOUT = 4
export const UTIME_NOW = (1 << 30) - 1
export const UTIME_OMIT = (1 << 30) - 2

/** Package root is two levels up from both src/native and dist/native. */
export const ADDON_PATH = path.join(__dirname, '..', '..', 'build', 'Release', 'ovlfs_sys.node')

let addon: Addon | undefined
function load(): Addon {
  if (addon === undefined) {
    const mod: { exports: unknown } = { exports: {} }
    try {
      process.dlopen(mod, ADDON_PATH)
    } catch (e) {
      const err = new Error(
        `ovlfs native addon not loadable at ${ADDON_PATH} (build it with \`npm run install\` / node-gyp rebuild): ${(e as Error).message}`,
      )
      throw Object.assign(err, { cause: e })
    }
    addon = mod.exports as Addon
  }
  return addon
}

// errno number -> name, from Node's own table. Aliases resolve to the names
// Node's fs/libuv report (EAGAIN not EWOULDBLOCK, ENOTSUP not EOPNOTSUPP).
const ERRNO_NAMES = new Map<number, string>()
for (const [name, num] of Object.entries(os.constants.errno)) {
  if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name)
}
ERRNO_NAMES.set(os.constants.errno.EAGAIN, 'EAGAIN')
ERRNO_NAMES.set(os.constants.errno.ENOTSUP, 'ENOTSUP')

/** errno number -> name ('ENOENT'); `fallback` is the C side's strerrorname_np. */
export function errnoName(errno: number, fallback?: string): string {
  return ERRNO_NAMES.get(errno) ?? fallback ?? `E${errno}`
}

export class SysError extends Error {
  code: string
  errno: number
  syscall: string
  path?: string
  dest?: string

  constructor(errno: number, syscall: string, detail: string, p?: PathLike, dest?: PathLike, errname?: string) {
    const code = errnoName(errno, errname)
    const ps = p === undefined ? undefined : p.toString()
    const ds = dest === undefined ? undefined : dest.toString()
    let msg = `${code}: ${detail}, ${syscall}`
    if (ps !== undefined) msg += ` '${ps}'`
    if (ds !== undefined) msg += ` -> '${ds}'`
    super(msg)
    this.name = 'SysError'
    this.code = code
    this.errno = errno
    this.syscall = syscall
    if (ps !== undefined) this.path = ps
    if (ds !== undefined) this.dest = ds
  }
}

/** The addon's raw error (errno + syscall) as a SysError with the paths; anything else as it is. */
function sysError(e: unknown, p: PathLike | undefined, dest: PathLike | undefined): unknown {
  const raw = e as { errno?: unknown; syscall?: unknown; message?: unknown; errname?: unknown }
  if (typeof raw.errno === 'number' && typeof raw.syscall === 'string') {
    const errname = typeof raw.errname === 'string' ? raw.errname : undefined
    return new SysError(raw.errno, raw.syscall, String(raw.message), p, dest, errname)
  }
  return e
}

/** Run an addon call; turn its raw rejection (errno + syscall) into a SysError. */
async function run<T>(p: PathLike | undefined, dest: PathLike | undefined, call: (a: Addon) => Promise<T>): Promise<T> {
  const a = load()
  try {
    return await call(a)
  } catch (e) {
    throw sysError(e, p, dest)
  }
}

/** run() for the ...Sync twins: the same errors, thrown. */
function runSync<T>(p: PathLike | undefined, dest: PathLike | undefined, call: (a: Addon) => T): T {
  const a = load()
  try {
    return call(a)
  } catch (e) {
    throw sysError(e, p, dest)
  }
}

/** Value of xattr `name` on `p` (symlinks not followed); null when it is not set (ENODATA). */
export function lgetxattr(p: PathLike, name: PathLike): Promise<Buffer | null> {
  return run(p, undefined, (a) => a.lgetxattr(p, name))
}

export function lsetxattr(p: PathLike, name: PathLike, value: Buffer, flags = 0): Promise<void> {
  return run(p, undefined, (a) => a.lsetxattr(p, name, value, flags))
}

function splitNames(list: Buffer): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i < list.length; i++) {
    if (list[i] === 0) {
      if (i > start) out.push(list.subarray(start, i))
      start = i + 1
    }
  }
  if (start < list.length) out.push(list.subarray(start))
  return out
}

export function lgetxattrSync(p: PathLike, name: PathLike): Buffer | null {
  return runSync(p, undefined, (a) => a.lgetxattrSync(p, name))
}

export function llistxattrSync(p: PathLike): string[] {
  return splitNames(runSync(p, undefined, (a) => a.llistxattrSync(p))).map((b) => b.toString('utf8'))
}

export function utimensatSync(p: PathLike, atime: Timespec, mtime: Timespec, nofollow: boolean): void {
  runSync(p, undefined, (a) => a.utimensatSync(p, atime.sec, atime.nsec, mtime.sec, mtime.nsec, nofollow ? 1 : 0))
}

export function mknodSync(p: PathLike, mode: number, dev: number): void {
  runSync(p, undefined, (a) => a.mknodSync(p, mode, dev))
}

export function renameat2Sync(oldPath: PathLike, newPath: PathLike, flags: number): void {
  runSync(oldPath, newPath, (a) => a.renameat2Sync(oldPath, newPath, flags))
}

/** xattr names on `p` (symlinks not followed), decoded as UTF-8. */
export async function llistxattr(p: PathLike): Promise<string[]> {
  return (await llistxattrRaw(p)).map((b) => b.toString('utf8'))
}

/** xattr names as raw bytes, for names that are not valid UTF-8. */
export async function llistxattrRaw(p: PathLike): Promise<Buffer[]> {
  return splitNames(await run(p, undefined, (a) => a.llistxattr(p)))
}

export function lremovexattr(p: PathLike, name: PathLike): Promise<void> {
  return run(p, undefined, (a) => a.lremovexattr(p, name))
}

/** mknod(2). `mode` includes the file type (fs.constants.S_IFCHR, S_IFIFO, ...); `dev` is st_rdev-encoded (see makedev). */
export function mknod(p: PathLike, mode: number, dev: number): Promise<void> {
  return run(p, undefined, (a) => a.mknod(p, mode, dev))
}

// glibc's dev_t encoding (gnu_dev_makedev), the same as fs.Stats.rdev.
// Computed in BigInt because majors >= 4096 shift past 32 bits.
export function makedev(maj: number, min: number): number {
  const M = BigInt(maj >>> 0)
  const m = BigInt(min >>> 0)
  return Number(((M & 0xfffn) << 8n) | ((M & 0xfffff000n) << 32n) | (m & 0xffn) | ((m & 0xffffff00n) << 12n))
}

export function major(dev: number): number {
  const d = BigInt(dev)
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n))
}

export function minor(dev: number): number {
  const d = BigInt(dev)
  return Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n))
}

/** renameat2(2) with RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT. */
export function renameat2(oldPath: PathLike, newPath: PathLike, flags: number): Promise<void> {
  return run(oldPath, newPath, (a) => a.renameat2(oldPath, newPath, flags))
}

/** utimensat(2) with exact ns; nsec may be UTIME_NOW / UTIME_OMIT. nofollow sets times on a symlink itself. */
export function utimensat(p: PathLike, atime: Timespec, mtime: Timespec, nofollow: boolean): Promise<void> {
  return run(p, undefined, (a) => a.utimensat(p, atime.sec, atime.nsec, mtime.sec, mtime.nsec, nofollow ? 1 : 0))
}

export function futimens(fd: number, atime: Timespec, mtime: Timespec): Promise<void> {
  return run(undefined, undefined, (a) => a.futimens(fd, atime.sec, atime.nsec, mtime.sec, mtime.nsec))
}

/** copyData's flag: start writeback of each chunk as it is copied (ovlfs_sys.c). */
const COPY_WRITEBACK = 1

/**
 * Create `dst` (O_CREAT|O_EXCL, exactly `mode`, umask not applied) with the
 * contents of regular file `src`: reflink when the filesystem can, else a
 * hole-preserving copy (SEEK_DATA/SEEK_HOLE + copy_file_range, sendfile,
 * pread/pwrite fallback). No fsync. With `toBeSynced`, each 8 MiB copied is
 * handed to the disk at once (sync_file_range SYNC_FILE_RANGE_WRITE, no
 * wait), so the caller's fsync overlaps the copy instead of following it.
 * On error `dst` is removed. Resolves to the bytes of data copied (the file
 * size when reflinked).
 */
export function copyData(src: PathLike, dst: PathLike, mode: number, toBeSynced = false): Promise<number> {
  return run(src, dst, (a) => a.copyData(src, dst, mode, toBeSynced ? COPY_WRITEBACK : 0))
}

/** open(O_RDONLY) + fsync + close; works on directories. */
export function fsyncPath(p: PathLike): Promise<void> {
  return run(p, undefined, (a) => a.fsyncPath(p))
}

/**
 * The kernel overlayfs's file handle of a real object (struct ovl_fb: version,
 * magic 0xfb, length, flags, fid type, filesystem UUID, fid from
 * name_to_handle_at), as it stores it in `overlay.origin` and names index
 * entries by (hex). The final symlink is not followed.
 */
export function overlayFh(p: PathLike): Promise<Buffer> {
  return run(p, undefined, (a) => a.overlayFh(p))
}

/** statvfs(3). */
export function statfs(p: PathLike): Promise<StatFs> {
  return run(p, undefined, (a) => a.statfs(p))
}

/** Marks a name that is not valid UTF-8 (see eachDirent). */
export const UNREPRESENTABLE_PREFIX = '\0'

export const DT_UNKNOWN = 0
export const DT_FIFO = 1
export const DT_CHR = 2
export const DT_DIR = 4
export const DT_BLK = 6
export const DT_REG = 8
export const DT_LNK = 10
export const DT_SOCK = 12

/**
 * readdir(3) with inode numbers, in one pass on the pool ('.' and '..' left
 * out), undecoded: per entry a u64 d_ino (LE), a u8 d_type (DT_*), a u16
 * name length (LE) and the name's bytes. eachDirent reads it; a listing of
 * 100,000 names is one Buffer of about 2 MB, not 100,000 objects.
 */
export async function readdirRaw(p: PathLike): Promise<Buffer> {
  return await run(p, undefined, (a) => a.readdirIno(p))
}

/**
 * Calls `each` for every entry of a readdirRaw answer, in order, and returns
 * how many there were. `ino` is d_ino as a number (exact below 2^53). The
 * name is UTF-8; a name that is not valid UTF-8 cannot cross the FUSE
 * binding intact, so it comes as UNREPRESENTABLE_PREFIX + its bytes in
 * latin1, a string no lookup can ask for (names never hold NUL).
 */
export function eachDirent(buf: Buffer, each: (name: string, type: number, ino: number) => void): number {
  let count = 0
  let i = 0
  while (i + 11 <= buf.length) {
    const lo = buf.readUInt32LE(i)
    const hi = buf.readUInt32LE(i + 4)
    const ino = hi < 0x200000 ? hi * 0x100000000 + lo : Number(buf.readBigUInt64LE(i))
    const type = buf[i + 8] as number
    const n = buf.readUInt16LE(i + 9)
    let name = buf.toString('utf8', i + 11, i + 11 + n)
    // Invalid bytes decode to U+FFFD; a genuine U+FFFD re-encodes to the same bytes.
    if (name.includes('\ufffd') && !Buffer.from(name).equals(buf.subarray(i + 11, i + 11 + n))) {
      name = UNREPRESENTABLE_PREFIX + buf.toString('latin1', i + 11, i + 11 + n)
    }
    each(name, type, ino)
    count++
    i += 11 + n
  }
  return count
}

/** How many entries a readdirRaw answer holds. */
export function direntCount(buf: Buffer): number {
  let count = 0
  for (let i = 0; i + 11 <= buf.length; i += 11 + buf.readUInt16LE(i + 9)) count++
  return count
}
