// Apply file operations from a separate process: as another user (setpriv with numeric ids,
// no user is created), and/or in a private mount namespace where "decoy" files or directories
// are bind-mounted over host paths. A symlink the kernel resolves for the process then lands
// on the decoy, while anything the FUSE daemon (which lives in the host namespace) follows on
// its own would reach the real host path: that is how hostile.test.ts tells the two apart.
//
// Every op returns 'ok', 'ok:<detail>' or the errno name (EACCES, EPERM, ...).
import { spawnSync } from 'node:child_process'

export type ChildOp =
  | { op: 'read', path: string } // ok:<content, first 200 chars>
  | { op: 'readdir', path: string } // ok:<names sorted, joined with '|'>
  | { op: 'lstat' | 'stat', path: string } // ok:<type> <mode octal> <uid>:<gid> <size for files>
  | { op: 'readlink', path: string }
  | { op: 'append', path: string, data: string } // O_WRONLY|O_APPEND, follows symlinks
  | { op: 'writeAt', path: string, offset: number, data: string }
  | { op: 'openTrunc', path: string } // O_WRONLY|O_TRUNC
  | { op: 'create', path: string, data?: string, mode?: number } // O_CREAT|O_EXCL
  | { op: 'openCreat', path: string } // O_CREAT|O_WRONLY without O_EXCL
  | { op: 'truncate', path: string, size: number } // truncate(2), follows symlinks
  | { op: 'chmod', path: string, mode: number } // follows symlinks
  | { op: 'chown', path: string, uid: number, gid: number } // follows symlinks
  | { op: 'lchown', path: string, uid: number, gid: number }
  | { op: 'utimes', path: string, sec: number } // explicit atime = mtime, follows
  | { op: 'lutimes', path: string, sec: number } // explicit, no follow
  | { op: 'touch', path: string } // utimensat(UTIME_NOW) on an existing file (touch -c), follows
  | { op: 'setxattr', path: string, name: string, value: string, follow?: boolean }
  | { op: 'getxattr', path: string, name: string } // no follow; ok:<value>
  | { op: 'link', from: string, to: string }
  | { op: 'symlink', target: string, path: string }
  | { op: 'mkdir', path: string, mode?: number }
  | { op: 'rmdir', path: string }
  | { op: 'unlink', path: string }
  | { op: 'rename', from: string, to: string }
  | { op: 'mkfifo', path: string }
  | { op: 'mknod', path: string, kind: 'c' | 'b', major: number, minor: number }
  | { op: 'exec', path: string } // run it; ok:<stdout>

export interface ChildOptions {
  cwd: string
  /** run as this uid/gid (setpriv --reuid --regid --clear-groups) */
  user?: { uid: number, gid: number }
  /** [decoy, hostPath]: bind-mount decoy over hostPath in a private mount namespace first */
  decoys?: Array<[string, string]>
  timeoutMs?: number
}

export function describeChildOp (o: ChildOp): string {
  const rest = Object.entries(o).filter(([k]) => k !== 'op').map(([k, v]) => k === 'mode' ? `0${(v as number).toString(8)}` : JSON.stringify(v))
  return `${o.op} ${rest.join(' ')}`
}

const CHILD_JS = String.raw`
const fs = require('fs'); const cp = require('child_process')
const C = fs.constants
const ops = JSON.parse(process.env.OVLFS_CHILD_OPS)
const STRERROR = {
  'No such file or directory': 'ENOENT', 'File exists': 'EEXIST', 'Not a directory': 'ENOTDIR', 'Is a directory': 'EISDIR',
  'Operation not permitted': 'EPERM', 'Permission denied': 'EACCES', 'Operation not supported': 'EOPNOTSUPP',
  'No data available': 'ENODATA', 'No such attribute': 'ENODATA', 'Read-only file system': 'EROFS', 'Invalid argument': 'EINVAL',
  'Directory not empty': 'ENOTEMPTY', 'Invalid cross-device link': 'EXDEV', 'Too many levels of symbolic links': 'ELOOP',
  'File name too long': 'ENAMETOOLONG', 'Input/output error': 'EIO', 'Transport endpoint is not connected': 'ENOTCONN',
  'Function not implemented': 'ENOSYS', 'Text file busy': 'ETXTBSY', 'Exec format error': 'ENOEXEC', 'Device or resource busy': 'EBUSY',
}
function tool (cmd, args) {
  const r = cp.spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } })
  if (r.status === 0) return { ok: true, out: r.stdout }
  const msg = (r.stderr || String(r.error)).trim().split('\n')[0]
  const text = msg.includes(': ') ? msg.slice(msg.lastIndexOf(': ') + 2) : msg
  return { ok: false, err: STRERROR[text] || ('error (' + cmd + ': ' + text + ')') }
}
function withFd (p, flags, mode, fn) {
  const fd = fs.openSync(p, flags | C.O_NONBLOCK, mode)
  try { return fn(fd) } finally { fs.closeSync(fd) }
}
function typeOf (st) {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo'
    : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : 'socket'
}
function showStat (st) {
  return 'ok:' + typeOf(st) + ' ' + (st.mode & 0o7777).toString(8).padStart(4, '0') + ' ' + st.uid + ':' + st.gid + (st.isFile() ? ' ' + st.size : '')
}
function one (o) {
  switch (o.op) {
    case 'read': return 'ok:' + withFd(o.path, C.O_RDONLY, 0, fd => { const b = Buffer.alloc(4096); const n = fs.readSync(fd, b, 0, b.length, 0); return b.subarray(0, n).toString('utf8').slice(0, 200) })
    case 'readdir': return 'ok:' + fs.readdirSync(o.path).sort().join('|')
    case 'lstat': return showStat(fs.lstatSync(o.path))
    case 'stat': return showStat(fs.statSync(o.path))
    case 'readlink': return 'ok:' + fs.readlinkSync(o.path)
    case 'append': withFd(o.path, C.O_WRONLY | C.O_APPEND, 0, fd => fs.writeSync(fd, o.data)); return 'ok'
    case 'writeAt': withFd(o.path, C.O_WRONLY, 0, fd => fs.writeSync(fd, o.data, o.offset)); return 'ok'
    case 'openTrunc': withFd(o.path, C.O_WRONLY | C.O_TRUNC, 0, () => 0); return 'ok'
    case 'create': withFd(o.path, C.O_WRONLY | C.O_CREAT | C.O_EXCL, o.mode === undefined ? 0o644 : o.mode, fd => { if (o.data) fs.writeSync(fd, o.data) }); return 'ok'
    case 'openCreat': withFd(o.path, C.O_WRONLY | C.O_CREAT, 0o644, () => 0); return 'ok'
    case 'truncate': { const r = tool('perl', ['-e', 'truncate($ARGV[0], $ARGV[1]) or die "x: $!\\n"', o.path, String(o.size)]); return r.ok ? 'ok' : r.err }
    case 'chmod': fs.chmodSync(o.path, o.mode); return 'ok'
    case 'chown': fs.chownSync(o.path, o.uid, o.gid); return 'ok'
    case 'lchown': fs.lchownSync(o.path, o.uid, o.gid); return 'ok'
    case 'utimes': fs.utimesSync(o.path, o.sec, o.sec); return 'ok'
    case 'lutimes': fs.lutimesSync(o.path, o.sec, o.sec); return 'ok'
    case 'touch': { fs.statSync(o.path); const r = tool('touch', ['-c', o.path]); return r.ok ? 'ok' : r.err }
    case 'setxattr': { const r = tool('setfattr', [...(o.follow ? [] : ['-h']), '-n', o.name, '-v', o.value, o.path]); return r.ok ? 'ok' : r.err }
    case 'getxattr': { const r = tool('getfattr', ['-h', '--only-values', '-n', o.name, o.path]); return r.ok ? 'ok:' + r.out : r.err }
    case 'link': fs.linkSync(o.from, o.to); return 'ok'
    case 'symlink': fs.symlinkSync(o.target, o.path); return 'ok'
    case 'mkdir': fs.mkdirSync(o.path, o.mode === undefined ? 0o755 : o.mode); return 'ok'
    case 'rmdir': fs.rmdirSync(o.path); return 'ok'
    case 'unlink': fs.unlinkSync(o.path); return 'ok'
    case 'rename': fs.renameSync(o.from, o.to); return 'ok'
    case 'mkfifo': { const r = tool('mkfifo', [o.path]); return r.ok ? 'ok' : r.err }
    case 'mknod': { const r = tool('mknod', [o.path, o.kind, String(o.major), String(o.minor)]); return r.ok ? 'ok' : r.err }
    case 'exec': { const r = cp.spawnSync(o.path, [], { encoding: 'utf8' }); if (r.error) return r.error.code || String(r.error); return r.status === 0 ? 'ok:' + r.stdout.trim() : 'exit ' + r.status }
  }
  return 'unknown op ' + o.op
}
const out = ops.map(o => { try { return one(o) } catch (e) { return e.code || String(e) } })
process.stdout.write(JSON.stringify(out))
`

/** Run ops in a child process; one result per op. Throws when the child itself fails. */
export function runChildOps (ops: ChildOp[], opts: ChildOptions): string[] {
  let argv = [process.execPath, '-e', CHILD_JS]
  if (opts.user !== undefined) {
    argv = ['setpriv', `--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--clear-groups', '--', ...argv]
  }
  if (opts.decoys !== undefined && opts.decoys.length > 0) {
    const n = opts.decoys.length
    const binds = opts.decoys.map((_d, i) => `mount --bind "$${2 * i + 1}" "$${2 * i + 2}" || exit 99;`).join(' ')
    argv = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `${binds} shift ${2 * n}; exec "$@"`, 'sh', ...opts.decoys.flat(), ...argv]
  }
  const [cmd, ...args] = argv
  const r = spawnSync(cmd!, args, {
    cwd: opts.cwd,
    encoding: 'utf8',
    env: { ...process.env, OVLFS_CHILD_OPS: JSON.stringify(ops) },
    timeout: opts.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    maxBuffer: 64 << 20,
  })
  if (r.status !== 0) throw new Error(`child ops failed (status ${r.status}, signal ${r.signal}, ${String(r.error ?? '')}): ${r.stderr}`)
  return JSON.parse(r.stdout) as string[]
}
