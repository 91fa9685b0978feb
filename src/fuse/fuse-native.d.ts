// Types for fuse-native 2.2.6 *as patched* by patches/fuse-native+2.2.6.patch
// (scripts/patch-fuse-native.js). Only what src/fuse/binding.ts uses; the typed
// op signatures live in binding.ts (FuseOps).

declare module 'fuse-native' {
  type Done = (err: Error | null) => void

  namespace Fuse {
    interface Options {
      /** Per-op timeout in ms (fuse-native default 15000); false = none. */
      timeout?: number | false
      force?: boolean
      mkdir?: boolean
      debug?: boolean
      /** patched: set libfuse's flag_nullpath_ok (ops on unlinked open files get path null). */
      nullpathOk?: boolean
      /** patched: OPENDIR replies carry FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE (the kernel caches listings). */
      cacheDirs?: boolean
      /** patched (item 31): with cacheDirs, the kernel opens directories without OPENDIR. */
      noOpendir?: boolean
      /** patched (item 32): read-only opens of lower files answered with a backing file (FUSE passthrough); only without an upper layer. */
      passthrough?: boolean
      /** patched (item 33): reads of files the addon opened are spliced from the file to /dev/fuse (adds libfuse's splice_write). */
      spliceReads?: boolean
    }

    interface RawContext {
      uid: number
      gid: number
      pid: number
      umask: number
    }
  }

  class Fuse {
    constructor(mnt: string, ops: object, opts?: Fuse.Options)
    readonly mnt: string
    opts: Fuse.Options
    mount(cb: Done): void
    unmount(cb: Done): void
    /** '-o' + comma-separated options, or '' (overridable). */
    _fuseOptions(): string
    /** patched: caller of the request being dispatched, null outside a handler. */
    context(): Fuse.RawContext | null
    /** patched: drop the kernel's cached attributes of the object with this st_ino (with pages, its page cache: a directory's listing); 0 or -errno. */
    invalidateIno(ino: number, pages?: boolean): number
    /** patched (item 17): fast names. Forget them all; the new generation. */
    fastClear(): number
    /** patched (item 21): apply changes name by name; the new generation. */
    fastChange(records: Buffer): number
    /** patched (item 17): hand over a listing's records; the table's epoch, or -1 if refused. */
    fastPut(gen: number, entryMs: number, attrMs: number, records: Buffer, epoch?: number): number
    /** patched (items 17, 22, 23): [names held, lookups answered by the addon, of them absent names, files opened by the addon, chmod/chown/utimens it made, writes through lent fds]. */
    fastStats(): number[]
    /** patched (item 30): [libfuse thread locals made, reused from ended threads, libfuse threads ended], process-wide. */
    threadStats(): number[]
    /** patched (item 31): [the kernel offered opens without OPENDIR (0/1), directory requests given a handle by the addon, READDIRs that went on in a kept listing], process-wide. */
    nodirStats(): number[]
    /** patched (item 32): [passthrough on (0/1), opens answered with a backing file, backing files registered, registrations refused], process-wide. */
    ptStats(): number[]
    /** patched (item 23): lend handle fh's fd for writes by root on libfuse's thread; fd -1 takes it back. */
    fastLend(fh: number, fd: number): boolean
    /** ovlfs patch item 25: let the addon create files in the upper layer of this record head (null: stop). */
    fastCreates(head: Buffer | null): void
    /** ovlfs patch item 25: null, or the generation and the files the addon created since the last call. */
    fastAdopted(): Buffer | null
    /** ovlfs patch item 26: the shared whiteout the addon links for root's unlinks of lower files (null: stop). */
    fastWhiteout(path: string | null): void
    /** patched (item 19): reopen the files the addon opened on path ('': those of merged st_ino ino) on upperPath. */
    fastMove(path: string, ino: number, upperPath: string): number
    static context(): Fuse.RawContext | null
    static unmount(mnt: string, cb: Done): void
    static readonly UTIME_NOW: number
    static readonly UTIME_OMIT: number
  }

  export = Fuse
}
