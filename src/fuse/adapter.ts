import { constants } from 'node:os'
import type { Logger } from 'pino'
import type { Attr, Caller, Engine } from '../engine/engine'
import { OvlError, errnoOf } from '../engine/errors'
import { normPath } from '../engine/layers'
import { type MaybePromise, andThen } from '../engine/maybe'
import { IdMapping, isAclXattr, staticNlink } from '../engine/mapping'
import { type CallerContext, type FuseOps, type FuseStat, type Timespec, packDirents } from './binding'
import type { FastNames } from './fast-names'

const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const { EBADF } = constants.errno
const TYPE_MODE: Record<string, number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, chr: 0o020000, blk: 0o060000, fifo: 0o010000, sock: 0o140000, unknown: 0,
}

/**
 * The adapter from fuse-native's callback operations to the engine: each
 * request becomes one async engine call, so a slow request (a large
 * copy-up) never holds up the others; results and errors map to what FUSE
 * expects (negative errno). The caller context is read synchronously at the
 * start of each handler, as the patched binding requires.
 */
/** fuse-overlayfs's id mapping, static_nlink and noacl, applied at the FUSE boundary (see engine/mapping.ts). */
export interface Presentation {
  readonly ids: IdMapping
  readonly staticNlink: boolean
  /**
   * `noacl`: POSIX ACLs are off. get/set/removexattr of `system.posix_acl_access`
   * and `system.posix_acl_default` answer EOPNOTSUPP and listxattr leaves them
   * out, which is what the kernel answers for a FUSE mount without
   * FUSE_POSIX_ACL in a user namespace (fuse-overlayfs's noacl there). ACLs
   * already on the layers stay on disk and are still copied up.
   */
  readonly noacl?: boolean
  /**
   * Seconds the kernel may cache names whose top is in a lower layer, the
   * attributes of lower objects with one name and of all directories, and
   * the pages of lower files between opens (0 or absent: the mount-wide
   * timeouts apply to everything). Lower layers do not change while mounted;
   * such an object changes through an operation on its own name (which the
   * kernel sees) or through a copy-up (of it, e.g. as the source of a link,
   * or into a directory), which the engine reports (onAttrsChanged) and the
   * binding takes back from the kernel by st_ino — so only objects whose
   * st_ino names one kernel inode qualify (invalidatable): directories,
   * which cannot be hard linked and whose changes of names the kernel sees
   * itself, and lower objects with nlink 1. Other objects use the mount-wide
   * attr_timeout (0): the names of an upper hard link are separate kernel
   * inodes under libfuse 2's path API, so one would go stale on a write
   * through another.
   */
  readonly lowerTimeout?: number
}

/** The error of an ACL xattr request under noacl. */
function aclOff (name: string): OvlError {
  return new OvlError('EOPNOTSUPP', `POSIX ACLs are off (noacl): ${name}`)
}

/**
 * `fast`: lookups of lower names answered by the addon (fast-names.ts); the
 * adapter hands it listings and the writing operations are guarded.
 */
export function makeOps (engine: Engine, context: () => CallerContext, log: Logger, view: Presentation = { ids: new IdMapping(), staticNlink: false }, fast?: FastNames): FuseOps {
  const debug = log.isLevelEnabled('debug')
  const { ids } = view
  const lowerTimeout = view.lowerTimeout ?? 0

  /** Attributes as the mount shows them: owners mapped host → merged; directories' nlink 1 with static_nlink. */
  function present (a: Attr): FuseStat {
    const mapped = ids.attrToMerged(toFuseStat(a))
    return view.staticNlink ? staticNlink(mapped) : mapped
  }

  /**
   * Run an engine call and answer FUSE: cb(0, result) or cb(-errno). A call
   * that finished without waiting (a cached lookup) is answered at once, with
   * no promise in between (maybe.ts).
   */
  function run<T> (op: string, path: string, work: () => MaybePromise<T>, reply: (err: number, value?: T) => void): void {
    const ok = (value: T): void => {
      if (debug) log.debug({ op, path }, op)
      reply(0, value)
    }
    const fail = (err: unknown): void => {
      const errno = errnoOf(err)
      if (debug || errno === 5) log[errno === 5 ? 'warn' : 'debug']({ op, path, errno, err: String(err) }, `${op} failed`)
      reply(-errno)
    }
    let result: MaybePromise<T>
    try {
      result = work()
    } catch (err) {
      fail(err)
      return
    }
    if (result instanceof Promise) result.then(ok, fail)
    else ok(result)
  }

  /** The requesting process's ids, mapped merged → host (the owner new objects get on disk). */
  function caller (): Caller {
    const c = context()
    return { uid: ids.toHost('uid', c.uid), gid: ids.toHost('gid', c.gid) }
  }

  const ops: FuseOps = {
    init: (cb) => cb(0),

    destroy: (cb) => cb(0),

    getattr: (path, cb) => {
      const p = normPath(path)
      run('getattr', path, () => attrsOf(lookedUp(p), fast?.generation), cb)
    },

    fgetattr: (path, fh, cb) => run('fgetattr', path ?? '(unlinked)', async () => present(await fileAttrs(path, fh)), cb),

    readdir: (path, cb) => {
      if (path === null) return cb(-2)
      const p = normPath(path)
      const gen = fast?.generation ?? 0
      const known = fast?.listing(p)
      if (known !== undefined) {
        if (debug) log.debug({ op: 'readdir', path, kept: true }, 'readdir')
        return cb(0, known)
      }
      run('readdir', path, async () => {
        const entries = await engine.readdirWithIno(p)
        const self = await engine.getattr(p)
        // '.' and '..' first (both with the directory's own st_ino), then the entries.
        const packed = packDirents({
          length: entries.length + 2,
          name: (i) => i === 0 ? '.' : i === 1 ? '..' : entries.name(i - 2),
          ino: (i) => i < 2 ? self.ino : entries.ino(i - 2),
          mode: (i) => i < 2 ? S_IFDIR : TYPE_MODE[entries.type(i - 2)] ?? 0,
        })
        fast?.listed(p, entries, gen, packed)
        return packed
      }, cb)
    },

    readlink: (path, cb) => run('readlink', path, async () => await engine.readlink(normPath(path)), cb),

    statfs: (path, cb) => run('statfs', path, async () => await engine.statfs(), cb),

    open: (path, flags, cb) => run('open', path, async () => await engine.open(normPath(path), flags),
      (err, h) => h === undefined ? cb(err) : cb(0, h.id, lowerTimeout > 0 && !h.upper)),

    // opendir, releasedir and flush are left out on purpose: libfuse answers them itself (the kernel
    // sends OPENDIR only for directories; FLUSH answered ENOSYS is success and is not sent again), which
    // saves two or three crossings to the JS thread per directory listed and one per file closed.

    // The changes below answer with the attributes afterwards, as libfuse's getattr right after them would get (patch item 20).

    create: (path, mode, flags, cb) => {
      const who = caller()
      run('create', path, async () => {
        const { h, attr } = await engine.createOpen(normPath(path), mode, flags, who)
        fast?.lend(h)
        return { h, st: present(attr) }
      }, (err, v) => v === undefined ? cb(err) : cb(0, v.h.id, v.st))
    },

    read: (_path, fh, buf, len, pos, cb) => {
      engine.read(engine.handles.get(fh), buf, len, pos).then(
        (n) => cb(n),
        (err: unknown) => cb(-errnoOf(err)),
      )
    },

    write: (_path, fh, buf, len, pos, cb) => {
      const c = context()
      const who = { uid: ids.toHost('uid', c.uid), gid: ids.toHost('gid', c.gid), pid: c.pid }
      engine.write(engine.handles.get(fh), buf, len, pos, who).then(
        (n) => cb(n),
        (err: unknown) => cb(-errnoOf(err)),
      )
    },

    release: (path, fh, cb) => run('release', path ?? '(unlinked)', async () => {
      fast?.unlend(fh) // before the fd closes: the addon may write through it (patch item 23)
      await engine.release(engine.handles.get(fh))
    }, cb),

    fsync: (path, datasync, fh, cb) => run('fsync', path ?? '(unlinked)', async () => await engine.fsync(engine.handles.get(fh), datasync !== 0), cb),

    fsyncdir: (path, _datasync, _fh, cb) => run('fsyncdir', path ?? '(unlinked)', async () => { if (path !== null) await engine.fsyncdir(normPath(path)) }, cb),

    truncate: (path, size, cb) => run('truncate', path, async () => await changeOf(path, async (p) => await engine.truncate(p, size)), cb),

    ftruncate: (path, fh, size, cb) => run('ftruncate', path ?? '(unlinked)', async () => {
      const h = engine.handles.get(fh)
      await engine.ftruncate(h, size)
      return present(await engine.fgetattr(h))
    }, cb),

    utimens: (path, atime, mtime, cb) => run('utimens', path, async () => await changeOf(path, async (p) => await engine.utimens(p, atime, mtime)), cb),

    chmod: (path, mode, cb) => run('chmod', path, async () => await changeOf(path, async (p) => await engine.chmod(p, mode)), cb),

    chown: (path, uid, gid, cb) => run('chown', path, async () => await changeOf(path, async (p) => {
      const host = ids.chownToHost(uid, gid)
      try {
        await engine.chown(p, host.uid, host.gid)
      } catch (err) {
        // fuse-overlayfs reports a failing chown as success when squashing owners.
        if (!ids.ignoresChownErrors) throw err
      }
    }), cb),

    mknod: (path, mode, dev, cb) => {
      const who = caller()
      run('mknod', path, async () => await engine.mknod(normPath(path), mode, dev, who), cb)
    },

    mkdir: (path, mode, cb) => {
      const who = caller()
      run('mkdir', path, async () => await engine.mkdir(normPath(path), mode, who), cb)
    },

    symlink: (target, path, cb) => {
      const who = caller()
      run('symlink', path, async () => await engine.symlink(target, normPath(path), who), cb)
    },

    link: (src, dst, cb) => run('link', dst, async () => await engine.link(normPath(src), normPath(dst)), cb),

    unlink: (path, cb) => run('unlink', path, async () => await engine.unlink(normPath(path)), cb),

    rmdir: (path, cb) => run('rmdir', path, async () => await engine.rmdir(normPath(path)), cb),

    rename: (src, dst, cb) => run('rename', src, async () => await engine.rename(normPath(src), normPath(dst)), cb),

    getxattr: (path, name, _position, cb) => run('getxattr', path, async () => {
      if (view.noacl === true && isAclXattr(name)) throw aclOff(name)
      const v = await engine.getxattr(normPath(path), name)
      if (v === null) throw Object.assign(new Error('no such xattr'), { code: 'ENODATA' })
      return isAclXattr(name) ? ids.aclToMerged(v) : v
    }, cb),

    setxattr: (path, name, value, _position, flags, cb) =>
      run('setxattr', path, async () => {
        if (view.noacl === true && isAclXattr(name)) throw aclOff(name)
        const v = Buffer.from(value)
        await engine.setxattr(normPath(path), name, isAclXattr(name) ? ids.aclToHost(v) : v, flags)
      }, cb),

    listxattr: (path, cb) => run('listxattr', path, async () => {
      const names = await engine.listxattr(normPath(path))
      return view.noacl === true ? names.filter(n => !isAclXattr(n)) : names
    }, cb),

    removexattr: (path, name, cb) => run('removexattr', path, async () => {
      if (view.noacl === true && isAclXattr(name)) throw aclOff(name)
      await engine.removexattr(normPath(path), name)
    }, cb),
  }
  return fast !== undefined ? fast.guard(ops) : ops

  /**
   * What getattr answers for `p`: the attributes as shown, with the cache
   * timeouts of lower objects; the object is handed to the fast names (which
   * take what they can answer the same way) when `gen` (their generation
   * when the request came) is given.
   */
  function attrsOf (p: string, gen?: number): MaybePromise<FuseStat> {
    return andThen(engine.getattrWithOrigin(p), ({ attr, lower, node }) => {
      const st = present(attr)
      if (gen !== undefined) fast?.learned(p, node, gen)
      if (lowerTimeout > 0) {
        // Directories, and lower objects with one name: their st_ino names one kernel inode to invalidate.
        if ((st.mode & S_IFMT) === 0o040000 || (lower && attr.nlink === 1)) {
          st.attrTimeout = lowerTimeout
          st.invalidatable = true
          if (p === '') st.isRoot = true
        }
        if (lower) st.entryTimeout = lowerTimeout
      }
      return st
    })
  }

  /**
   * fgetattr: the open file's attributes. A stat by node of a file whose
   * name is gone comes here with the newest fh the kernel opened on that
   * node (patch item 29); a RELEASE of it may have come first, and then,
   * with no name left, the answer is ENOENT, what libfuse gave such a stat
   * before item 29.
   */
  async function fileAttrs (path: string | null, fh: number): Promise<Attr> {
    if (fh === 0) return await engine.getattr(normPath(path ?? ''))
    let h
    try {
      h = engine.handles.get(fh)
    } catch (err) {
      if (errnoOf(err) !== EBADF || path !== null) throw err
      throw new OvlError('ENOENT', `the open file ${fh} was released and has no name left`)
    }
    return await engine.fgetattr(h)
  }

  /** Make a change of `path` (FUSE form), then answer what getattr would (patch item 20). */
  async function changeOf (path: string, change: (p: string) => Promise<void>): Promise<FuseStat> {
    const p = normPath(path)
    await change(p)
    return await attrsOf(p)
  }

  /** A path JS looks up (fast names count them per directory). */
  function lookedUp (p: string): string {
    fast?.looked(p)
    return p
  }
}

export function toFuseStat (a: Attr): FuseStat {
  return { ...a, dev: 0 }
}

export type { Timespec }
