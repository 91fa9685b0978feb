// The operation vocabulary, applied by the test process through a mount point.
// The test process serves neither mount, so synchronous fs calls are safe here.
// Every op returns 'ok' or the errno name (e.g. 'ENOENT'); a few return 'ok' plus a detail.
// All opens use O_NONBLOCK, so an op that meets a fifo fails (ENXIO) instead of hanging.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

export type Op =
  | { op: 'create', path: string, data: string } // O_CREAT|O_EXCL, then write
  | { op: 'write', path: string, offset: number, data: string }
  | { op: 'append', path: string, data: string }
  | { op: 'truncate', path: string, size: number }
  | { op: 'chmod', path: string, mode: number }
  | { op: 'chown', path: string, uid: number, gid: number } // lchown
  | { op: 'utimens', path: string, time: string } // '@SEC.FRACTION', atime = mtime, no follow
  | { op: 'setxattr', path: string, name: string, value: string }
  | { op: 'removexattr', path: string, name: string }
  | { op: 'link', from: string, to: string }
  | { op: 'symlink', target: string, path: string }
  | { op: 'mkdir', path: string }
  | { op: 'rmdir', path: string }
  | { op: 'unlink', path: string }
  | { op: 'rename', from: string, to: string }
  | { op: 'mkfifo', path: string }
  | { op: 'mknod', path: string, kind: 'c' | 'b', major: number, minor: number }
  | { op: 'read', path: string } // 'ok <sha-prefix>' of the content
  | { op: 'openReadAfterWrite', path: string, data: string } // fd1 opened before fd2 writes: must see it
  // open path (with `create`: a new file, O_RDWR|O_CREAT|O_EXCL, `create` written), apply `then`, fstat the still open fd:
  // 'ok size= nlink= mode= sameIno= data=' (sameIno: st_ino as before `then`; data: what the fd reads from 0, or its sha256)
  | { op: 'fstatAfter', path: string, then: Op, create?: string }

// Compact constructors for the catalogue.
export const o = {
  create: (p: string, data = ''): Op => ({ op: 'create', path: p, data }),
  write: (p: string, offset: number, data: string): Op => ({ op: 'write', path: p, offset, data }),
  append: (p: string, data: string): Op => ({ op: 'append', path: p, data }),
  truncate: (p: string, size: number): Op => ({ op: 'truncate', path: p, size }),
  chmod: (p: string, mode: number): Op => ({ op: 'chmod', path: p, mode }),
  chown: (p: string, uid: number, gid: number): Op => ({ op: 'chown', path: p, uid, gid }),
  utimens: (p: string, time: string): Op => ({ op: 'utimens', path: p, time }),
  setxattr: (p: string, name: string, value: string): Op => ({ op: 'setxattr', path: p, name, value }),
  removexattr: (p: string, name: string): Op => ({ op: 'removexattr', path: p, name }),
  link: (from: string, to: string): Op => ({ op: 'link', from, to }),
  symlink: (target: string, p: string): Op => ({ op: 'symlink', target, path: p }),
  mkdir: (p: string): Op => ({ op: 'mkdir', path: p }),
  rmdir: (p: string): Op => ({ op: 'rmdir', path: p }),
  unlink: (p: string): Op => ({ op: 'unlink', path: p }),
  rename: (from: string, to: string): Op => ({ op: 'rename', from, to }),
  mkfifo: (p: string): Op => ({ op: 'mkfifo', path: p }),
  mknod: (p: string, kind: 'c' | 'b', major: number, minor: number): Op => ({ op: 'mknod', path: p, kind, major, minor }),
  read: (p: string): Op => ({ op: 'read', path: p }),
  openReadAfterWrite: (p: string, data: string): Op => ({ op: 'openReadAfterWrite', path: p, data }),
  fstatAfter: (p: string, then: Op, create?: string): Op => ({ op: 'fstatAfter', path: p, then, create }),
}

/** Apply one op below `root`; never throws for filesystem errors. */
export function apply (root: string, op: Op): string {
  const at = (p: string) => path.join(root, p)
  try {
    switch (op.op) {
      case 'create': withFd(at(op.path), C.O_WRONLY | C.O_CREAT | C.O_EXCL, fd => fs.writeSync(fd, op.data)); break
      case 'write': withFd(at(op.path), C.O_WRONLY, fd => fs.writeSync(fd, op.data, op.offset)); break
      case 'append': withFd(at(op.path), C.O_WRONLY | C.O_APPEND, fd => fs.writeSync(fd, op.data)); break
      case 'truncate': // truncate(2) on the path (Node's truncateSync would open the file instead)
        return tool('perl', ['-e', 'truncate($ARGV[0], $ARGV[1]) or die "$!\\n"', at(op.path), String(op.size)])
      case 'chmod': fs.chmodSync(at(op.path), op.mode); break
      case 'chown': fs.lchownSync(at(op.path), op.uid, op.gid); break
      case 'utimens':
        fs.lstatSync(at(op.path)) // touch -c would silently succeed on a missing name
        return tool('touch', ['-c', '-h', '-d', op.time, at(op.path)])
      case 'setxattr': return tool('setfattr', ['-h', '-n', op.name, '-v', op.value, at(op.path)])
      case 'removexattr': return tool('setfattr', ['-h', '-x', op.name, at(op.path)])
      case 'link': fs.linkSync(at(op.from), at(op.to)); break
      case 'symlink': fs.symlinkSync(op.target, at(op.path)); break
      case 'mkdir': fs.mkdirSync(at(op.path)); break
      case 'rmdir': fs.rmdirSync(at(op.path)); break
      case 'unlink': fs.unlinkSync(at(op.path)); break
      case 'rename': fs.renameSync(at(op.from), at(op.to)); break
      case 'mkfifo': return tool('mkfifo', [at(op.path)])
      case 'mknod': return tool('mknod', [at(op.path), op.kind, String(op.major), String(op.minor)])
      case 'read': {
        const data = withFd(at(op.path), C.O_RDONLY, fd => readAll(fd))
        return `ok ${data.toString('hex').slice(0, 16)}`
      }
      case 'openReadAfterWrite': {
        const fd1 = fs.openSync(at(op.path), C.O_RDONLY | C.O_NONBLOCK)
        try {
          withFd(at(op.path), C.O_WRONLY, fd2 => fs.writeSync(fd2, op.data, 0))
          const buf = Buffer.alloc(op.data.length)
          const n = fs.readSync(fd1, buf, 0, buf.length, 0)
          const seen = buf.subarray(0, n).toString()
          return seen === op.data ? 'ok' : `stale (read ${JSON.stringify(seen)})`
        } finally { fs.closeSync(fd1) }
      }
      case 'fstatAfter': {
        const fd = op.create !== undefined
          ? fs.openSync(at(op.path), C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NONBLOCK, 0o644)
          : fs.openSync(at(op.path), C.O_RDONLY | C.O_NONBLOCK)
        try {
          if (op.create !== undefined) fs.writeSync(fd, op.create)
          const before = fs.fstatSync(fd)
          // Only regular files: the kernel opens the others (fifos, devices) without the daemon, and a
          // directory's opendir is another request; the README's limits say what their fstat gives.
          if (!before.isFile()) return 'ok not a regular file'
          const ino = before.ino
          const then = apply(root, op.then)
          if (then !== 'ok') return `${describe(op.then)}: ${then}`
          const st = fs.fstatSync(fd)
          const data = Buffer.alloc(st.size + 1)
          const n = fs.readSync(fd, data, 0, data.length, 0)
          const read = data.subarray(0, n)
          const shown = n <= 64 ? JSON.stringify(read.toString()) : `${n} bytes sha256 ${createHash('sha256').update(read).digest('hex').slice(0, 16)}`
          return `ok size=${st.size} nlink=${st.nlink} mode=${st.mode.toString(8)} sameIno=${String(st.ino === ino)} data=${shown}`
        } finally { fs.closeSync(fd) }
      }
    }
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? String(e)
  }
}

/** Apply a sequence, returning one result per op. */
export function applyAll (root: string, ops: Op[]): string[] {
  return ops.map(op => apply(root, op))
}

/** A readable one-line form of an op, e.g. `write dl/a @3 "xyz"`. */
export function describe (op: Op): string {
  switch (op.op) {
    case 'create': case 'append': return `${op.op} ${op.path} ${JSON.stringify(op.data)}`
    case 'write': return `write ${op.path} @${op.offset} ${JSON.stringify(op.data)}`
    case 'truncate': return `truncate ${op.path} ${op.size}`
    case 'chmod': return `chmod ${op.path} ${op.mode.toString(8).padStart(4, '0')}`
    case 'chown': return `chown ${op.path} ${op.uid}:${op.gid}`
    case 'utimens': return `utimens ${op.path} ${op.time}`
    case 'setxattr': return `setxattr ${op.path} ${op.name}=${JSON.stringify(op.value)}`
    case 'removexattr': return `removexattr ${op.path} ${op.name}`
    case 'link': case 'rename': return `${op.op} ${op.from} ${op.to}`
    case 'symlink': return `symlink ${op.target} ${op.path}`
    case 'mknod': return `mknod ${op.path} ${op.kind} ${op.major} ${op.minor}`
    case 'openReadAfterWrite': return `openReadAfterWrite ${op.path} ${JSON.stringify(op.data)}`
    case 'fstatAfter': return `fstatAfter ${op.path}${op.create !== undefined ? ` (created with ${JSON.stringify(op.create)})` : ''} then ${describe(op.then)}`
    default: return `${op.op} ${op.path}`
  }
}

const C = fs.constants

function withFd<T> (p: string, flags: number, fn: (fd: number) => T): T {
  const fd = fs.openSync(p, flags | C.O_NONBLOCK, 0o644)
  try { return fn(fd) } finally { fs.closeSync(fd) }
}

function readAll (fd: number): Buffer {
  const chunks: Buffer[] = []
  const buf = Buffer.alloc(1 << 16)
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) chunks.push(Buffer.from(buf.subarray(0, n)))
  return Buffer.concat(chunks)
}

// Error texts of the command line tools (strerror) mapped back to errno names.
const STRERROR: Record<string, string> = {
  'No such file or directory': 'ENOENT',
  'File exists': 'EEXIST',
  'Not a directory': 'ENOTDIR',
  'Is a directory': 'EISDIR',
  'Operation not permitted': 'EPERM',
  'Permission denied': 'EACCES',
  'Operation not supported': 'EOPNOTSUPP',
  'No data available': 'ENODATA',
  'No such attribute': 'ENODATA',
  'Read-only file system': 'EROFS',
  'Invalid argument': 'EINVAL',
  'Directory not empty': 'ENOTEMPTY',
  'Invalid cross-device link': 'EXDEV',
  'Numerical result out of range': 'ERANGE',
  'No space left on device': 'ENOSPC',
  'Transport endpoint is not connected': 'ENOTCONN',
  'Input/output error': 'EIO',
  'Function not implemented': 'ENOSYS',
  'Argument list too long': 'E2BIG',
  'Too many levels of symbolic links': 'ELOOP',
  'Device or resource busy': 'EBUSY',
  'Bad file descriptor': 'EBADF',
  'Stale file handle': 'ESTALE',
}

/** Run a command line tool; 'ok', or the errno name parsed from its error message. */
function tool (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status === 0) return 'ok'
  const msg = (r.stderr || String(r.error)).trim().split('\n')[0]!
  const text = msg.includes(': ') ? msg.slice(msg.lastIndexOf(': ') + 2) : msg
  return STRERROR[text] ?? `error (${cmd}: ${text})`
}
