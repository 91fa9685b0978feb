/**
 * Typed binding over fuse-native 2.2.6 as patched by
 * patches/fuse-native+2.2.6.patch (applied + rebuilt by
 * scripts/patch-fuse-native.js at npm ci). The patch gives us: 64-bit st_ino,
 * (sec, nsec) timestamps both ways, utimens with UTIME_NOW / UTIME_OMIT, the
 * caller's uid/gid/pid/umask, create flags, null paths for unlinked open
 * files, and a destroy op (session end, e.g. external umount).
 *
 * Conventions of the callback-style ops (checked against the patched index.js):
 * - Every status is a number: 0 = success, a NEGATIVE errno = failure
 *   (-2 = ENOENT). Never pass an Error object or null.
 * - read / write call back with the byte count (>= 0) or a negative errno,
 *   nothing else. `buf` points into libfuse's memory and is detached once the
 *   callback has run: fill / copy it before calling back, never keep it.
 * - getxattr calls back (0, Buffer) with the whole value, (0, null) for "no
 *   such attribute" (becomes ENODATA), or (-errno). The binding answers size
 *   probes and ERANGE itself. `position` is always 0 on Linux.
 * - listxattr calls back (0, names[]); size probes / ERANGE are handled too.
 * - setxattr flags: XATTR_CREATE = 1, XATTR_REPLACE = 2.
 * - File handles (fh) are integers 1 .. 2^31-1; 0 means "no handle" and is not
 *   stored by libfuse.
 * - fsync / fsyncdir take (path, datasync, fh) — in that order (fuse-native's
 *   README says (path, fh, datasync); the code does not).
 * - symlink(target, path): first the link's contents, then the new link's path.
 *   link(existingPath, newPath). rename(src, dst) (no flags: libfuse 2 has no
 *   rename2, so RENAME_NOREPLACE / RENAME_EXCHANGE are refused by the kernel).
 * - chown gets uid / gid 0xFFFFFFFF for "leave unchanged".
 * - utimens gets {sec, nsec} pairs; nsec === UTIME_NOW means "now",
 *   nsec === UTIME_OMIT means "leave unchanged" (sec is then meaningless).
 * - readdir calls back (0, names, stats?) or (0, packDirents(...)) (patch
 *   item 18: one Buffer instead of a string and a stat array per entry; the
 *   addon reads it without a call per entry): names should include '.' and '..';
 *   stats (same length as names) supply d_ino (with the use_ino option) and the
 *   d_type. There is no offset and no fh: one call returns the whole directory.
 * - create: (path, mode, flags); mode has the file type bit and is already
 *   masked by the kernel (umask is informative). libfuse then looks the new
 *   path up with fgetattr, which must succeed and report a regular file.
 * - chmod, chown, utimens, truncate, ftruncate and create may call back with
 *   the object's attributes after the change (as getattr would give them):
 *   libfuse's getattr/fgetattr right after the change (for its SETATTR or
 *   CREATE reply) is then answered from them (patch item 20).
 * - open flags never contain O_CREAT / O_EXCL / O_NOCTTY / O_TRUNC: libfuse 2
 *   does not negotiate atomic_o_trunc, so the kernel follows a successful
 *   open(O_TRUNC) with truncate(path, 0) (path-based, not ftruncate).
 * - Paths are UTF-8 decoded by N-API: names that are not valid UTF-8 are not
 *   representable.
 * - Paths may be null (string | null below) for operations on a file or
 *   directory that was unlinked while open: always for release / flush with the
 *   hard_remove option, and for the other fh-based ops when `nullpathOk` is set.
 *   Serve those by fh.
 * - Caller context: call FuseMount#context() synchronously at the start of the
 *   handler, before any await or callback hop (see context()).
 */
import * as path from 'node:path';
import FuseNative = require('fuse-native');

/** utimens nsec value meaning "set to the current time" (Linux). */
export const UTIME_NOW = (1 << 30) - 1;
/** utimens nsec value meaning "leave this timestamp unchanged" (Linux). */
export const UTIME_OMIT = (1 << 30) - 2;

/** fuse-native copies the mount point and the option string into 1024-byte buffers. */
const NATIVE_STRING_MAX = 1023;
const EIO = -5;

export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  /** exact up to 2^53 (reported as st_ino with the use_ino option) */
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  /** nanoseconds since the epoch */
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /**
   * getattr only: seconds the kernel may cache this name (entry) and these
   * attributes, instead of the mount's entry_timeout / attr_timeout (patch
   * item 13: applied to the LOOKUP or GETATTR reply that this getattr serves).
   */
  entryTimeout?: number;
  attrTimeout?: number;
  /**
   * With attrTimeout on a directory: the attributes stay cached only while
   * FuseMount#invalidateIno can take them back (the addon records the
   * kernel's node for this st_ino; when its table is full, the mount-wide
   * attr_timeout applies instead).
   */
  invalidatable?: boolean;
  /**
   * The mount root: the kernel never looks it up, so no LOOKUP reply told the
   * addon its st_ino; this records it as the root's node, so an invalidatable
   * root keeps its attrTimeout (without it every path walk from the mount
   * root re-sent GETATTR "/", doubling the requests of a stat).
   */
  isRoot?: boolean;
}

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

export interface Timespec {
  sec: number;
  /** 0..999999999, or UTIME_NOW / UTIME_OMIT */
  nsec: number;
}

export interface CallerContext {
  uid: number;
  gid: number;
  pid: number;
  /** Only set by the kernel for create / mknod / mkdir; 0 otherwise. */
  umask: number;
}

/** 0 for success or a negative errno. */
export type Status = number;
export type StatusCallback = (status: Status) => void;
export type StatCallback = (status: Status, stat?: FuseStat) => void;
/** open may add keepCache: the kernel keeps the file's cached pages from earlier opens (patch item 14). */
export type HandleCallback = (status: Status, fh?: number, keepCache?: boolean) => void;
/** create answers the handle and, like a change, maybe the new file's attributes (patch item 20). */
export type CreateCallback = (status: Status, fh?: number, stat?: FuseStat) => void;
/** byte count (>= 0) or negative errno */
export type IoCallback = (result: number) => void;

export interface FuseOps {
  init?(cb: StatusCallback): void;
  /** The session ended (our unmount or an external umount). */
  destroy?(cb: StatusCallback): void;
  access?(path: string, mode: number, cb: StatusCallback): void;
  statfs?(path: string, cb: (status: Status, statfs?: FuseStatfs) => void): void;
  getattr?(path: string, cb: StatCallback): void;
  fgetattr?(path: string | null, fh: number, cb: StatCallback): void;
  flush?(path: string | null, fh: number, cb: StatusCallback): void;
  fsync?(path: string | null, datasync: number, fh: number, cb: StatusCallback): void;
  fsyncdir?(path: string | null, datasync: number, fh: number, cb: StatusCallback): void;
  /** names: the names, or packDirents()'s Buffer (then no stats). */
  readdir?(path: string | null, cb: (status: Status, names?: string[] | Buffer, stats?: FuseStat[]) => void): void;
  /** The changes (truncate, ftruncate, utimens, chown, chmod) may answer with the attributes afterwards (patch item 20). */
  truncate?(path: string, size: number, cb: StatCallback): void;
  ftruncate?(path: string | null, fh: number, size: number, cb: StatCallback): void;
  utimens?(path: string, atime: Timespec, mtime: Timespec, cb: StatCallback): void;
  readlink?(path: string, cb: (status: Status, target?: string) => void): void;
  chown?(path: string, uid: number, gid: number, cb: StatCallback): void;
  chmod?(path: string, mode: number, cb: StatCallback): void;
  mknod?(path: string, mode: number, dev: number, cb: StatusCallback): void;
  setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: StatusCallback): void;
  getxattr?(path: string, name: string, position: number, cb: (status: Status, value?: Buffer | null) => void): void;
  listxattr?(path: string, cb: (status: Status, names?: string[]) => void): void;
  removexattr?(path: string, name: string, cb: StatusCallback): void;
  open?(path: string, flags: number, cb: HandleCallback): void;
  opendir?(path: string, flags: number, cb: HandleCallback): void;
  read?(path: string | null, fh: number, buf: Buffer, len: number, pos: number, cb: IoCallback): void;
  write?(path: string | null, fh: number, buf: Buffer, len: number, pos: number, cb: IoCallback): void;
  release?(path: string | null, fh: number, cb: StatusCallback): void;
  releasedir?(path: string | null, fh: number, cb: StatusCallback): void;
  create?(path: string, mode: number, flags: number, cb: CreateCallback): void;
  unlink?(path: string, cb: StatusCallback): void;
  rename?(src: string, dest: string, cb: StatusCallback): void;
  link?(existingPath: string, newPath: string, cb: StatusCallback): void;
  symlink?(target: string, path: string, cb: StatusCallback): void;
  mkdir?(path: string, mode: number, cb: StatusCallback): void;
  rmdir?(path: string, cb: StatusCallback): void;
}

export type FuseOpName = keyof FuseOps;

const OP_NAMES: readonly FuseOpName[] = [
  'init', 'destroy', 'access', 'statfs', 'getattr', 'fgetattr', 'flush', 'fsync', 'fsyncdir',
  'readdir', 'truncate', 'ftruncate', 'utimens', 'readlink', 'chown', 'chmod', 'mknod',
  'setxattr', 'getxattr', 'listxattr', 'removexattr', 'open', 'opendir', 'read', 'write',
  'release', 'releasedir', 'create', 'unlink', 'rename', 'link', 'symlink', 'mkdir', 'rmdir',
];

export interface FuseMountOptions {
  /** Shown as the mount source (escaped for libfuse's option parser). */
  fsname: string;
  /** Shown as fuse.<subtype> (escaped likewise). */
  subtype: string;
  /**
   * Appended verbatim to the -o list, e.g. 'use_ino', 'entry_timeout=1',
   * 'attr_timeout=1', 'negative_timeout=1', 'allow_other',
   * 'default_permissions', 'big_writes', 'max_write=131072', 'kernel_cache',
   * 'hard_remove'.
   */
  extraOptions: string[];
  /** libfuse debug output on stderr (also enabled by DEBUG=fuse-bindings). */
  debug?: boolean;
  /**
   * libfuse flag_nullpath_ok: fh-based ops (read, write, fgetattr, ftruncate,
   * fsync, readdir, ...) on unlinked open files get path null instead of
   * failing with ENOENT. Use with hard_remove.
   */
  nullpathOk?: boolean;
  /**
   * The kernel caches directory listings (patch item 16: OPENDIR replies carry
   * FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE): a listing read once is served from
   * the kernel's page cache, without READDIR, until the directory changes
   * through the mount or a GETATTR reports another mtime. Only for file
   * systems whose listings change through the mount alone. Do not implement
   * an `opendir` op needlessly: without one the addon answers OPENDIR on the
   * libfuse thread. Default false.
   */
  cacheDirs?: boolean;
  /**
   * With cacheDirs and no `opendir`/`releasedir` op: directories are opened
   * by the kernel without OPENDIR (patch item 31: the addon answers the first
   * OPENDIR ENOSYS when the kernel offered FUSE_NO_OPENDIR_SUPPORT; no
   * RELEASEDIR follows), one round trip less per directory opened and none
   * at its close. Default false.
   */
  noOpendir?: boolean;
  /**
   * Read-only opens of lower files the addon opened (item 19) are answered
   * with that file as their backing file (patch item 32, FUSE passthrough,
   * Linux 6.9+, root): the kernel reads and maps it without the daemon. Only
   * for a mount without an upper layer: on a writable mount a file opened
   * read-only must follow its copy-up. Default false.
   */
  passthrough?: boolean;
  /**
   * Reads of files the addon opened (item 19) are answered by splicing the
   * file's pages into /dev/fuse (patch item 33; libfuse's splice_write):
   * one copy of the data instead of two, and no buffer per READ. Default false.
   */
  spliceReads?: boolean;
  /**
   * Per-request timeout in ms after which fuse-native answers ETIMEDOUT and
   * drops the handler's late answer. Default false (none): a slow copy-up must
   * not turn into a spurious error with a leaked handle.
   */
  timeout?: number | false;
  /** A handler threw or called back twice. Default: process.emitWarning. */
  onHandlerError?: (op: FuseOpName, err: unknown) => void;
}

type AnyOp = (...args: unknown[]) => void;
type Done = (err: Error | null) => void;

function escapeOptionValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/** fuse-native's Fuse with ovlfs' extra mount options appended to its -o list. */
export class OvlfsFuse extends FuseNative {
  private readonly extraOptions: readonly string[];

  constructor(mountpoint: string, ops: object, opts: FuseNative.Options & { fsname: string; subtype: string }, extraOptions: readonly string[]) {
    super(mountpoint, ops, opts);
    this.extraOptions = extraOptions;
  }

  override _fuseOptions(): string {
    const base = super._fuseOptions();
    if (this.extraOptions.length === 0) return base;
    return (base ? base + ',' : '-o') + this.extraOptions.join(',');
  }
}

/** Entries to pack for readdir, by position. */
export interface DirentSource {
  readonly length: number;
  name(i: number): string;
  ino(i: number): number;
  /** The mode (the type bits are what counts). */
  mode(i: number): number;
}

/**
 * A directory listing as readdir's one-Buffer answer (patch item 18): per
 * entry uint32 ino low, ino high, mode (the type bits are what counts), the
 * name's length in bytes, then the name and a NUL, padded to 4 bytes.
 */
export function packDirents(entries: DirentSource): Buffer {
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += (16 + Buffer.byteLength(entries.name(i)) + 1 + 3) & ~3;
  const buf = Buffer.alloc(size);
  let pos = 0;
  for (let i = 0; i < entries.length; i++) {
    const ino = entries.ino(i);
    const len = buf.write(entries.name(i), pos + 16);
    buf.writeUInt32LE(ino % 0x100000000, pos);
    buf.writeUInt32LE(Math.floor(ino / 0x100000000), pos + 4);
    buf.writeUInt32LE(entries.mode(i), pos + 8);
    buf.writeUInt32LE(len, pos + 12);
    pos += (16 + len + 1 + 3) & ~3;
  }
  return buf;
}

export class FuseMount {
  readonly mountpoint: string;
  /** The -o string handed to libfuse. */
  readonly optionString: string;
  /**
   * Resolves when libfuse ends the session: after unmount(), or when someone
   * else unmounts (umount / fusermount -u). The process can then exit.
   */
  readonly unmounted: Promise<void>;

  private readonly fuse: OvlfsFuse;
  private ended = false;
  private mounted = false;

  constructor(mountpoint: string, ops: FuseOps, options: FuseMountOptions) {
    this.mountpoint = path.resolve(mountpoint);
    if (Buffer.byteLength(this.mountpoint) > NATIVE_STRING_MAX) {
      throw new RangeError(`FUSE mount point path is ${Buffer.byteLength(this.mountpoint)} bytes; fuse-native copies it into a 1024-byte buffer (max ${NATIVE_STRING_MAX})`);
    }
    for (const opt of options.extraOptions) {
      if (opt.length === 0) throw new RangeError('empty FUSE mount option');
    }

    const onHandlerError = options.onHandlerError ?? defaultHandlerError;
    let resolveUnmounted: () => void = () => undefined;
    this.unmounted = new Promise<void>((resolve) => { resolveUnmounted = resolve; });

    const wrapped = wrapOps(ops, onHandlerError);
    const userDestroy = wrapped.destroy;
    wrapped.destroy = (cb: unknown) => {
      this.ended = true;
      resolveUnmounted();
      if (userDestroy) userDestroy(cb);
      else (cb as StatusCallback)(0);
    };

    this.fuse = new OvlfsFuse(this.mountpoint, wrapped, {
      fsname: escapeOptionValue(options.fsname),
      subtype: escapeOptionValue(options.subtype),
      debug: options.debug ?? false,
      nullpathOk: options.nullpathOk ?? false,
      cacheDirs: options.cacheDirs ?? false,
      noOpendir: options.noOpendir ?? false,
      passthrough: options.passthrough ?? false,
      spliceReads: options.spliceReads ?? false,
      timeout: options.timeout ?? false,
      force: false,
      mkdir: false,
    }, options.extraOptions);

    this.optionString = this.fuse._fuseOptions();
    const len = Buffer.byteLength(this.optionString);
    if (len > NATIVE_STRING_MAX) {
      throw new RangeError(`FUSE mount options are ${len} bytes; fuse-native copies them into a 1024-byte buffer (max ${NATIVE_STRING_MAX}): ${this.optionString.slice(0, 80)}...`);
    }
  }

  /** Resolves once the kernel has sent FUSE_INIT (the mount is live). */
  mount(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.fuse.mount((err) => {
        if (err) return reject(err);
        this.mounted = true;
        resolve();
      });
    });
  }

  /**
   * Lazy unmount (fusermount -uz) unless the session already ended. Does not
   * wait for `unmounted`: with busy files the kernel keeps the connection
   * until they are closed.
   */
  unmount(): Promise<void> {
    if (this.ended || !this.mounted) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done: Done = (err) => {
        if (err && !this.ended) return reject(err);
        this.mounted = false;
        resolve();
      };
      this.fuse.unmount(done);
    });
  }

  /**
   * Make the kernel drop its cached attributes of the object whose st_ino
   * is `ino` (one a getattr reply marked invalidatable), and with `listing`
   * the directory's cached listing too. 0, or a negative errno (-2: the
   * kernel caches nothing for it).
   */
  invalidateIno(ino: number, listing = false): number {
    if (this.ended) return -2;
    return this.fuse.invalidateIno(ino, listing);
  }

  /** Fast names (patch item 17, fast-names.ts): forget them all; the new generation. */
  fastClear(): number {
    return this.ended ? 0 : this.fuse.fastClear();
  }

  /** Fast names (patch item 21): apply changes name by name (FastNames.apply); the new generation. */
  fastChange(records: Buffer): number {
    return this.ended ? 0 : this.fuse.fastChange(records);
  }

  /** Fast names: hand over a listing's records; the table's epoch, or -1 if refused. */
  fastPut(gen: number, entryMs: number, attrMs: number, records: Buffer, epoch = -1): number {
    return this.ended ? -1 : this.fuse.fastPut(gen, entryMs, attrMs, records, epoch);
  }

  /** Fast names: [names held, lookups answered by the addon, of them absent names, files opened by the addon, chmod/chown/utimens it made, writes through lent fds, files it created, unlinks it made]. */
  fastStats(): number[] {
    return this.fuse.fastStats();
  }

  /** libfuse's worker threads (patch item 30): locals made for new threads, reused from ended ones, threads ended. */
  threadStats(): { made: number, reused: number, ended: number } {
    const [made = 0, reused = 0, ended = 0] = this.fuse.threadStats();
    return { made, reused, ended };
  }

  /**
   * Directories opened without OPENDIR (patch item 31, option noOpendir):
   * whether the kernel offered it, directory requests (READDIR, FSYNCDIR,
   * ioctl) the addon gave a handle, READDIRs that went on in a kept listing.
   */
  nodirStats(): { offered: boolean, handles: number, kept: number } {
    const [offered = 0, handles = 0, kept = 0] = this.fuse.nodirStats();
    return { offered: offered === 1, handles, kept };
  }

  /**
   * Passthrough (patch item 32, option passthrough): whether the kernel took
   * it at INIT, opens answered with a backing file, backing files
   * registered, and registrations the kernel refused (process-wide).
   */
  ptStats(): { on: boolean, opens: number, backings: number, refused: number } {
    const [on = 0, opens = 0, backings = 0, refused = 0] = this.fuse.ptStats();
    return { on: on === 1, opens, backings, refused };
  }

  /** Lend handle fh's fd for writes by root on libfuse's thread (patch item 23); fd -1 takes it back. */
  fastLend(fh: number, fd: number): boolean {
    return this.ended ? false : this.fuse.fastLend(fh, fd);
  }

  /** Let the addon create files in the upper layer whose record head this is (patch item 25); null stops it. */
  fastCreates(head: Buffer | null): void {
    if (!this.ended) this.fuse.fastCreates(head);
  }

  /** The files the addon created since the last call, for JS to adopt (patch item 25), or null. */
  fastAdopted(): Buffer | null {
    return this.ended ? null : this.fuse.fastAdopted();
  }

  /** The shared whiteout the addon links for root's unlinks of lower files (patch item 26); null stops it. */
  fastWhiteout(path: string | null): void {
    if (!this.ended) this.fuse.fastWhiteout(path);
  }

  /** Fast names: reopen the files the addon opened on `path` ('': those of merged st_ino `ino`) on upperPath. */
  fastMove(path: string, ino: number, upperPath: string): number {
    return this.ended ? 0 : this.fuse.fastMove(path, ino, upperPath);
  }

  /** True once libfuse ended the session (see `unmounted`). */
  get sessionEnded(): boolean {
    return this.ended;
  }

  /**
   * The uid/gid/pid/umask of the process that made the request being handled.
   * CONTRACT: call synchronously at the start of the op handler, before any
   * await or callback hop; afterwards it throws or describes another request.
   */
  context(): CallerContext {
    return FuseMount.context();
  }

  static context(): CallerContext {
    const ctx = FuseNative.context();
    if (!ctx) {
      throw new Error('FuseMount.context() called outside a FUSE op handler: read it synchronously, before any await');
    }
    return { uid: ctx.uid, gid: ctx.gid, pid: ctx.pid, umask: ctx.umask };
  }
}

function defaultHandlerError(op: FuseOpName, err: unknown): void {
  const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.emitWarning(`FUSE op ${op}: ${msg}`, 'FuseHandlerError');
}

/**
 * Guards every op: a throw answers EIO (the request would otherwise never be
 * answered and the error would kill the process) and a second callback is
 * dropped (it would wake the libfuse thread's NEXT request). Wrappers declare
 * no parameters, so fuse-native uses the (path, mode, flags, cb) create form.
 */
function wrapOps(ops: FuseOps, onError: (op: FuseOpName, err: unknown) => void): Partial<Record<FuseOpName, AnyOp>> {
  const out: Partial<Record<FuseOpName, AnyOp>> = {};
  for (const name of OP_NAMES) {
    const fn = ops[name] as unknown;
    if (typeof fn !== 'function') continue;
    const op = fn as AnyOp;
    out[name] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as AnyOp;
      let called = false;
      args[args.length - 1] = (...result: unknown[]) => {
        if (called) {
          onError(name, new Error('callback called more than once'));
          return;
        }
        called = true;
        cb(...result);
      };
      try {
        op.apply(ops, args);
      } catch (err) {
        onError(name, err);
        if (!called) {
          called = true;
          cb(EIO);
        }
      }
    };
  }
  return out;
}
