// Guards for the hostile-input tests (hostile.test.ts, permissions.test.ts, fuzz-cli.test.ts):
//
//   treeState / diffStates   a byte-exact fingerprint of a tree (names are raw bytes, so names
//                            that are not UTF-8 are covered too): type, mode, owner, size,
//                            content hash, symlink target, rdev, every xattr, mtime and ctime
//                            in ns (ctime moves on any write, chmod, chown, xattr change, link
//                            or rename), inode number and link count. atime is left out.
//   FanotifyWatch            who opened, read or wrote a set of host files while a test ran
//                            (fanotify through a tiny Perl program; perl-base is on every Debian).
//   ovlfsDaemons             the pids of the ovlfs daemons serving a mount point.
//   abortFuse / forceUnmount get rid of one of *our* FUSE mounts even when its daemon is
//                            deadlocked: abort its connection through fusectl (mounted in a
//                            private mount namespace, so nothing changes for anyone else),
//                            then a lazy unmount. The test process itself never touches the
//                            mount point's files (a stat there would hang on a dead daemon).
import { createHash } from 'node:crypto'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import { typeOf } from './snapshot'

export type TreeState = Map<string, string>

/** Raw bytes of a path as a 'latin1' string (one char per byte): a lossless, comparable key. */
const key = (b: Buffer): string => b.toString('latin1')
/** A readable form of a raw name: valid UTF-8 as is, other bytes as \xNN. */
export function showName (k: string): string {
  const b = Buffer.from(k, 'latin1')
  const s = b.toString('utf8')
  if (Buffer.from(s, 'utf8').equals(b)) return JSON.stringify(s)
  return '"' + [...b].map(c => c === 0x22 || c === 0x5c ? '\\' + String.fromCharCode(c) : c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`).join('') + '"'
}

/** Fingerprint of the tree at root; keys are relative paths as latin1 strings ('.' for root). */
export function treeState (root: string, opts: { times?: boolean, inodes?: boolean } = {}): TreeState {
  const times = opts.times ?? true
  const inodes = opts.inodes ?? true
  const out: TreeState = new Map()
  const xattrs = readXattrsRaw(root)
  const rootBuf = Buffer.from(root)
  const visit = (rel: Buffer): void => {
    const abs = rel.length === 0 ? rootBuf : Buffer.concat([rootBuf, Buffer.from('/'), rel])
    let st: fs.BigIntStats
    try { st = fs.lstatSync(abs, { bigint: true }) } catch (e) { out.set(key(rel) || '.', `lstat error ${code(e)}`); return }
    const parts = [typeOf(st), (Number(st.mode) & 0o7777).toString(8), `${st.uid}:${st.gid}`]
    if (times) parts.push(`mtime=${st.mtimeNs}`, `ctime=${st.ctimeNs}`)
    if (inodes) parts.push(`ino=${st.ino}`)
    if (!st.isDirectory()) parts.push(`nlink=${st.nlink}`)
    if (st.isFile()) parts.push(`size=${st.size}`, `sha256=${sha256(abs)}`)
    if (st.isSymbolicLink()) parts.push(`-> ${key(fs.readlinkSync(abs, { encoding: 'buffer' }))}`)
    if (st.isCharacterDevice() || st.isBlockDevice()) parts.push(`rdev=${st.rdev}`)
    const xa = xattrs.get(key(rel)) ?? {}
    for (const k of Object.keys(xa).sort()) parts.push(`${k}=${xa[k]}`)
    out.set(key(rel) || '.', parts.join(' '))
    if (st.isDirectory()) {
      let names: Buffer[]
      try { names = fs.readdirSync(abs, { encoding: 'buffer' }) } catch (e) { out.set(key(rel) + '/*', `readdir error ${code(e)}`); return }
      for (const n of names.sort(Buffer.compare)) visit(rel.length === 0 ? n : Buffer.concat([rel, Buffer.from('/'), n]))
    }
  }
  visit(Buffer.alloc(0))
  return out
}

/** One line per difference, `label` first; empty when equal. */
export function diffStates (before: TreeState, after: TreeState, label = ''): string[] {
  const lines: string[] = []
  const pre = label ? `${label}: ` : ''
  for (const [p, v] of before) {
    const w = after.get(p)
    if (w === undefined) lines.push(`${pre}${showName(p)} disappeared (was ${v})`)
    else if (w !== v) lines.push(`${pre}${showName(p)} changed: ${v}  =>  ${w}`)
  }
  for (const [p, v] of after) if (!before.has(p)) lines.push(`${pre}${showName(p)} appeared (${v})`)
  return lines
}

/** Every file under root whose content contains `needle` (relative paths, readable form). */
export function filesContaining (root: string, needle: string): string[] {
  const hits: string[] = []
  const want = Buffer.from(needle)
  const rootBuf = Buffer.from(root)
  const visit = (rel: Buffer): void => {
    const abs = rel.length === 0 ? rootBuf : Buffer.concat([rootBuf, Buffer.from('/'), rel])
    let st: fs.Stats
    try { st = fs.lstatSync(abs) } catch { return }
    if (st.isFile()) {
      try { if (fs.readFileSync(abs).includes(want)) hits.push(showName(key(rel))) } catch { /* unreadable: not ours */ }
    } else if (st.isSymbolicLink()) {
      if (fs.readlinkSync(abs, { encoding: 'buffer' }).includes(want)) hits.push(showName(key(rel)) + ' (symlink target)')
    } else if (st.isDirectory()) {
      for (const n of fs.readdirSync(abs, { encoding: 'buffer' })) visit(rel.length === 0 ? n : Buffer.concat([rel, Buffer.from('/'), n]))
    }
  }
  visit(Buffer.alloc(0))
  return hits
}

/** All xattrs of a tree (getfattr -R, values in hex), by raw relative path. */
function readXattrsRaw (root: string): Map<string, Record<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root],
    { maxBuffer: 256 << 20, env: { ...process.env, LC_ALL: 'C' } })
  const out = new Map<string, Record<string, string>>()
  const rootKey = key(Buffer.from(root))
  let cur: Record<string, string> | undefined
  for (const line of r.stdout.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = unescapeGetfattr(line.slice(8))
      const rel = abs === rootKey ? '' : abs.startsWith(rootKey + '/') ? abs.slice(rootKey.length + 1) : abs
      cur = {}
      out.set(rel, cur)
    } else if (line !== '' && cur !== undefined) {
      const eq = line.indexOf('=')
      if (eq < 0) cur[line] = ''
      else cur[line.slice(0, eq)] = line.slice(eq + 1)
    }
  }
  return out
}

/** getfattr quotes names: `\\` for a backslash, `\ooo` for other special bytes. */
function unescapeGetfattr (s: string): string {
  return s.replace(/\\(\\|[0-7]{3})/g, (_m, g: string) => g === '\\' ? '\\' : String.fromCharCode(parseInt(g, 8)))
}

function sha256 (abs: Buffer): string {
  try {
    const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW)
    try {
      const h = createHash('sha256')
      const buf = Buffer.alloc(1 << 16)
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n))
      return h.digest('hex')
    } finally { fs.closeSync(fd) }
  } catch (e) { return `error ${code(e)}` }
}

function code (e: unknown): string {
  return (e as { code?: string }).code ?? String(e)
}

// ---------------------------------------------------------------------------------------------
// fanotify: who touches a set of host files

export interface FanEvent { pid: number, mask: number, path: string, cmd: string }

const FAN_PL = String.raw`
use strict; use warnings; use POSIX ();
my %nr = (x86_64 => [300, 301], aarch64 => [262, 263], riscv64 => [262, 263]);
my $arch = (POSIX::uname())[4];
my $n = $nr{$arch} or die "fanotify: no syscall numbers for $arch\n";
my $fd = syscall($n->[0], 0x1 | 0x2, 0);            # FAN_CLASS_NOTIF, FAN_CLOEXEC|FAN_NONBLOCK
die "fanotify_init: $!\n" if $fd < 0;
open(my $fh, '<&=', $fd) or die "fdopen: $!\n";
# FAN_ACCESS|FAN_MODIFY|FAN_CLOSE_WRITE|FAN_CLOSE_NOWRITE|FAN_OPEN, on dirs too, and on a dir's children
my $mask = 0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x40000000 | 0x08000000;
for my $p (@ARGV) {
  my $r = ($arch eq 'x86_64') ? syscall($n->[1], $fd, 1, $mask, -100, $p) : syscall($n->[1], $fd, 1, $mask & 0xffffffff, -100, $p);
  $r == 0 or die "fanotify_mark $p: $!\n";
}
$| = 1;
print "ready\n";
while (1) {
  my $rin = ''; vec($rin, $fd, 1) = 1; vec($rin, 0, 1) = 1;
  select(my $rout = $rin, undef, undef, undef);
  if (vec($rout, $fd, 1)) {
    my $buf; my $r = sysread($fh, $buf, 65536);
    if ($r) {
      my $off = 0;
      while ($off + 24 <= length $buf) {
        my ($len, $ver, $res, $mlen, $m, $efd, $pid) = unpack('L C C S Q l l', substr($buf, $off, 24));
        my $path = $efd >= 0 ? (readlink("/proc/self/fd/$efd") // '?') : '?';
        my $cmd = '';
        if (open(my $c, '<', "/proc/$pid/cmdline")) { local $/; $cmd = <$c> // ''; $cmd =~ tr/\0/ /; close $c }
        POSIX::close($efd) if $efd >= 0;
        $path =~ s/\n/\\n/g; $cmd =~ s/\n/\\n/g;
        print "event\t$pid\t$m\t$path\t$cmd\n";
        $off += $len;
      }
    }
  }
  if (vec($rout, 0, 1)) { my $b; last unless sysread(STDIN, $b, 1); }
}
print "done\n";
`

/** Watches opens, reads and writes of `paths` (and of the children of those that are dirs). */
export class FanotifyWatch {
  private readonly child: ChildProcess
  private out = ''
  private err = ''
  private readonly ready: Promise<void>
  private readonly closed: Promise<void>

  private constructor (paths: string[]) {
    this.child = spawn('perl', ['-e', FAN_PL, ...paths], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.out += d })
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.err += d })
    this.closed = new Promise(resolve => this.child.on('close', () => resolve()))
    this.ready = new Promise((resolve, reject) => {
      const t = setInterval(() => {
        if (this.out.startsWith('ready\n')) { clearInterval(t); resolve() }
      }, 20)
      void this.closed.then(() => { clearInterval(t); reject(new Error(`fanotify watcher failed: ${this.err.trim()}`)) })
    })
  }

  static async start (paths: string[]): Promise<FanotifyWatch> {
    const w = new FanotifyWatch(paths)
    await w.ready
    return w
  }

  /** Stop watching; every event seen. */
  async stop (): Promise<FanEvent[]> {
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await this.closed
    clearTimeout(timer)
    return this.out.split('\n').filter(l => l.startsWith('event\t')).map((l) => {
      const [, pid, mask, p, cmd] = l.split('\t')
      return { pid: Number(pid), mask: Number(mask), path: p ?? '', cmd: cmd ?? '' }
    })
  }
}

export function describeFanMask (m: number): string {
  const names: Array<[number, string]> = [[0x1, 'access'], [0x2, 'modify'], [0x8, 'close-write'], [0x10, 'close'], [0x20, 'open']]
  return names.filter(([b]) => (m & b) !== 0).map(([, n]) => n).join('|') || `0x${m.toString(16)}`
}

// ---------------------------------------------------------------------------------------------
// our daemons and our mounts

/** Pids of the ovlfs daemons (processes with --ovlfs-daemon in argv) whose argv mentions `needle`. */
export function ovlfsDaemons (needle: string): number[] {
  const out: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let argv: string[]
    try { argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0') } catch { continue }
    if (argv.includes('--ovlfs-daemon') && argv.some(a => a.includes(needle))) out.push(Number(name))
  }
  return out
}

interface MountLine { mnt: string, dev: string, fstype: string }

function mountLines (): MountLine[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [left, right] = line.split(' - ')
    const f = left!.split(' ')
    return { mnt: unescape(f[4]!), dev: f[2]!, fstype: right!.split(' ')[0]! }
  })
}

/** Mount points at or below dir, deepest first. */
export function mountsUnder (dir: string): MountLine[] {
  return mountLines().filter(m => m.mnt === dir || m.mnt.startsWith(dir + '/')).sort((a, b) => b.mnt.length - a.mnt.length)
}

/**
 * Abort the FUSE connection of the mount at `mnt` (ours: the caller made it), so that every
 * request pending on it fails at once. fusectl is mounted in a private mount namespace.
 */
export function abortFuse (mnt: string): boolean {
  const m = mountLines().filter(l => l.mnt === mnt && l.fstype.startsWith('fuse')).at(-1)
  if (m === undefined) return false
  const minor = m.dev.split(':')[1]
  const script = 'mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null; ' +
    'test -e "/sys/fs/fuse/connections/$1/abort" && echo 1 > "/sys/fs/fuse/connections/$1/abort"'
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', String(minor)], { timeout: 10_000 })
  return r.status === 0
}

/**
 * Unmount every mount at or below `dir` without the test process touching the mounts' files:
 * fusermount -u / umount with a time limit, then abort the FUSE connection and unmount lazily.
 * Returns what was still mounted when called.
 */
export function forceUnmountUnder (dir: string): string[] {
  const found = mountsUnder(dir).map(m => m.mnt)
  for (let round = 0; round < 10; round++) {
    const left = mountsUnder(dir)
    if (left.length === 0) break
    const m = left[0]!
    const fuse = m.fstype.startsWith('fuse')
    // Not lazily at first: a lazy unmount of a deadlocked FUSE mount would only detach it, and
    // leave its daemon and whoever waits on it stuck for good. Busy or hung: abort, then detach.
    const r = fuse
      ? spawnSync('fusermount', ['-u', m.mnt], { timeout: 5000, stdio: 'ignore' })
      : spawnSync('umount', ['--no-canonicalize', m.mnt], { timeout: 5000, stdio: 'ignore' })
    if (r.status === 0 && !mountsUnder(dir).some(x => x.mnt === m.mnt && x.dev === m.dev)) continue
    if (fuse) abortFuse(m.mnt)
    spawnSync('umount', ['--no-canonicalize', '-l', m.mnt], { timeout: 5000, stdio: 'ignore' })
  }
  return found
}

/** Remove a tree unless something is mounted at or below it. */
export function removeUnmounted (dir: string): void {
  if (mountsUnder(dir).length > 0) throw new Error(`refusing to remove ${dir}: still mounted below it: ${mountsUnder(dir).map(m => m.mnt).join(', ')}`)
  fs.rmSync(dir, { recursive: true, force: true })
}

/** A short-lived child with a hard time limit (SIGKILL): status, signal and output. */
export function runLimited (cmd: string, args: string[], opts: { timeoutMs?: number, cwd?: string, env?: NodeJS.ProcessEnv, input?: string } = {}): { status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, timedOut: boolean } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', cwd: opts.cwd, env: opts.env, input: opts.input, maxBuffer: 64 << 20 })
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT'
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut }
}

