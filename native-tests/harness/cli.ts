// Helpers for driving the ovlfs command line (or a stand-in such as
// fuse-overlayfs) in child processes, and for watching the daemon it leaves
// behind.
//
// Every command runs under a tiny Perl "reaper" that makes itself a child
// subreaper (prctl(PR_SET_CHILD_SUBREAPER)) before exec'ing the command. When
// the command daemonizes, the daemon is reparented to the reaper instead of to
// init, so the test learns the daemon's pid and its exact exit status. The
// reaper reports on fd 3, one line per event:
//   spawned PID        the command itself was started as PID
//   exit PID code N    PID exited with status N
//   exit PID signal N  PID was killed by signal N
// and exits when it has no children left. Perl (perl-base) is on every Debian.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const REPO_ROOT = path.resolve(__dirname, '..', '..')
export const BUILT_CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js')

/** Temp dirs of the native tests start with this; scripts/test.sh sweeps mounts under it. */
export const TEMP_PREFIX = path.join(os.tmpdir(), 'ovlfs-test-')

// ---------------------------------------------------------------------------
// The command under test

/** Split OVLFS_CMD like a shell would for simple words and quotes (no expansions). */
export function splitWords(s: string): string[] {
  const out: string[] = []
  let cur = ''
  let inWord = false
  let quote: '"' | "'" | null = null
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (quote) {
      if (c === quote) quote = null
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i]
      else cur += c
    } else if (c === '"' || c === "'") {
      quote = c
      inWord = true
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i]
      inWord = true
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur)
      cur = ''
      inWord = false
    } else {
      cur += c
      inWord = true
    }
  }
  if (quote) throw new Error(`OVLFS_CMD has an unterminated ${quote}: ${s}`)
  if (inWord) out.push(cur)
  return out
}

/**
 * The command under test, as argv words: `OVLFS_CMD` when set, otherwise
 * `node <repo>/dist/cli/main.js`. Throws (never skips) when the built CLI is
 * missing.
 */
export function cliCommand(): string[] {
  const env = process.env.OVLFS_CMD
  if (env !== undefined && env.trim() !== '') return splitWords(env)
  if (!fs.existsSync(BUILT_CLI)) {
    throw new Error(
      `the ovlfs CLI is not built: ${BUILT_CLI} does not exist. ` +
        `Run \`npm run build\` (or scripts/setup.sh), or set OVLFS_CMD to the command to test.`,
    )
  }
  return [process.execPath, BUILT_CLI]
}

/** The fstype the mount must show in /proc/self/mountinfo (`OVLFS_FSTYPE` overrides). */
export function expectedFstype(): string {
  return process.env.OVLFS_FSTYPE || 'fuse.ovlfs'
}

/** Fail loudly when this machine cannot run native tests. */
export function assertNativeTestPrerequisites(): void {
  const problems: string[] = []
  if (typeof process.getuid === 'function' && process.getuid() !== 0) problems.push('not running as root')
  if (!fs.existsSync('/dev/fuse')) problems.push('/dev/fuse is missing')
  if (!commandPath('perl')) problems.push('perl is not on PATH')
  if (!commandPath('fusermount') && !commandPath('fusermount3')) problems.push('fusermount is not on PATH (install fuse3)')
  if (problems.length) {
    throw new Error(`native tests cannot run here: ${problems.join('; ')}. Run scripts/setup.sh first.`)
  }
}

/** Absolute path of a command on PATH, or null. */
export function commandPath(name: string): string | null {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' })
  const p = r.stdout.trim()
  return r.status === 0 && p ? p : null
}

// ---------------------------------------------------------------------------
// Running commands under the reaper

const REAPER_PL = String.raw`
use strict; use warnings; use POSIX ();
my %nr = (x86_64 => 157, aarch64 => 167, riscv64 => 167, i686 => 172, i386 => 172,
          armv7l => 172, ppc64le => 171, ppc64 => 171, s390x => 172, loongarch64 => 167);
my $arch = (POSIX::uname())[4];
defined $nr{$arch} or die "reaper: no prctl syscall number for $arch\n";
syscall($nr{$arch}, 36, 1, 0, 0, 0) == 0 or die "reaper: prctl(PR_SET_CHILD_SUBREAPER): $!\n";
open(my $ev, '>&=', 3) or die "reaper: fd 3: $!\n";
$ev->autoflush(1);
my $pid = fork() // die "reaper: fork: $!\n";
if ($pid == 0) {
  POSIX::close(3);
  { no warnings 'exec'; exec { $ARGV[0] } @ARGV; }
  print STDERR "reaper: cannot exec $ARGV[0]: $!\n";
  POSIX::_exit(127);
}
print $ev "spawned $pid\n";
while (1) {
  my $w = waitpid(-1, 0);
  last if $w <= 0;
  my $s = $?;
  print $ev ($s & 127) ? "exit $w signal " . ($s & 127) . "\n" : "exit $w code " . ($s >> 8) . "\n";
}
exit 0;
`

export interface ExitInfo {
  pid: number
  /** exit status, or null when killed by a signal */
  code: number | null
  /** signal number, or null */
  signal: number | null
}

export interface RunOptions {
  /** words put before the command, e.g. ['setpriv', '--bounding-set=-dac_override', ...] */
  prefix?: string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export class Run {
  readonly child: ChildProcess
  readonly argv: string[]
  stdout = ''
  stderr = ''
  /** every exit the reaper reported, by pid */
  readonly exits = new Map<number, ExitInfo>()
  /** pid of the command itself */
  readonly mainPid: Promise<number>
  /** resolves when the command itself exits (daemonizing commands: when they return) */
  readonly mainExit: Promise<ExitInfo>
  /** /proc/self/mountinfo read synchronously at the moment the command's exit was reported */
  mountinfoAtMainExit: string | null = null
  /** resolves when the reaper (so the command and everything it left behind) is gone */
  readonly closed: Promise<void>
  isClosed = false

  private waiters: Array<() => void> = []
  private mainPidValue: number | null = null

  constructor(argv: string[], opts: RunOptions = {}) {
    this.argv = [...(opts.prefix ?? []), ...argv]
    this.child = spawn('perl', ['-e', REAPER_PL, '--', ...this.argv], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    })
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d))
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d))

    let resolvePid!: (n: number) => void
    let resolveMain!: (e: ExitInfo) => void
    let rejectMain!: (e: Error) => void
    this.mainPid = new Promise<number>((res) => (resolvePid = res))
    this.mainExit = new Promise<ExitInfo>((res, rej) => {
      resolveMain = res
      rejectMain = rej
    })
    this.mainExit.catch(() => {}) // avoid unhandled rejections when nobody waits

    let buf = ''
    const events = this.child.stdio[3] as NodeJS.ReadableStream
    events.setEncoding('utf8')
    events.on('data', (d: string) => {
      buf += d
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const m = /^(spawned|exit) (\d+)(?: (code|signal) (\d+))?$/.exec(line)
        if (!m) continue
        const pid = Number(m[2])
        if (m[1] === 'spawned') {
          this.mainPidValue = pid
          resolvePid(pid)
          continue
        }
        const n = Number(m[4])
        const info: ExitInfo = { pid, code: m[3] === 'code' ? n : null, signal: m[3] === 'signal' ? n : null }
        if (pid === this.mainPidValue) this.mountinfoAtMainExit = readMountinfoRaw()
        this.exits.set(pid, info)
        if (pid === this.mainPidValue) resolveMain(info)
        this.wake()
      }
    })
    this.closed = new Promise<void>((res) => {
      this.child.on('close', () => {
        this.isClosed = true
        rejectMain(new Error(`reaper closed before the command exited; stderr:\n${this.stderr}`))
        this.wake()
        res()
      })
    })
    this.child.on('error', (e) => rejectMain(e))
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise<void>((res) => {
      const t = setTimeout(res, timeoutMs)
      this.waiters.push(() => {
        clearTimeout(t)
        res()
      })
    })
  }

  /** Wait for the command to return; rejects after timeoutMs. */
  async waitMain(timeoutMs = 30_000): Promise<ExitInfo> {
    return withTimeout(this.mainExit, timeoutMs, () => `${this.describe()} did not return within ${timeoutMs} ms`)
  }

  /** Wait until `pid` (a child of the reaper) exits; rejects after timeoutMs. */
  async waitExit(pid: number, timeoutMs = 15_000): Promise<ExitInfo> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const e = this.exits.get(pid)
      if (e) return e
      if (this.isClosed) throw new Error(`pid ${pid} never reported by the reaper of ${this.describe()}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`pid ${pid} (${this.describe()}) still running after ${timeoutMs} ms`)
      await this.changed(Math.min(left, 200))
    }
  }

  /** Wait until the reaper is gone (the command and all it left behind exited). */
  async waitClosed(timeoutMs = 15_000): Promise<void> {
    await withTimeout(this.closed, timeoutMs, () => `${this.describe()}: processes still running after ${timeoutMs} ms`)
  }

  /** Live processes below the reaper (children, grandchildren, ...). */
  descendants(): number[] {
    if (this.child.pid === undefined) return []
    return descendantsOf(this.child.pid)
  }

  /**
   * The daemon left behind once the command returned: the live descendant whose
   * command line mentions `mountpoint` (the topmost one if several do), or else
   * the only live descendant. Polls until one appears.
   */
  async findDaemon(mountpoint: string, timeoutMs = 5_000): Promise<number> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const pids = this.descendants().filter((p) => cmdlineOf(p).includes(mountpoint) && !isZombie(p))
      // if the daemon has helpers of its own that mention the mountpoint, take the topmost process
      const top = pids.filter((p) => !pids.includes(ppidOf(p) ?? -1))
      if (top.length === 1) return top[0]!
      if (pids.length === 0) {
        // the daemon need not repeat the mountpoint in its argv: accept a single live descendant
        const live = this.descendants().filter((p) => !isZombie(p))
        if (live.length === 1 && this.exits.has(this.mainPidValue ?? -1)) return live[0]!
      }
      if (Date.now() > deadline) {
        throw new Error(
          `no single daemon process for ${mountpoint} below the reaper of ${this.describe()} ` +
            `(candidates: ${pids.join(', ') || 'none'})`,
        )
      }
      await sleep(50)
    }
  }

  /** SIGKILL everything still alive below the reaper, then the reaper. */
  async kill(): Promise<void> {
    for (const p of this.descendants()) {
      try {
        process.kill(p, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
    if (!this.isClosed && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
    await withTimeout(this.closed, 5_000, () => `reaper of ${this.describe()} did not die`).catch(() => {})
  }

  describe(): string {
    return `\`${this.argv.join(' ')}\``
  }

  /** stderr split into non-empty lines */
  stderrLines(): string[] {
    return this.stderr.split('\n').filter((l) => l.trim() !== '')
  }
}

/** Start argv (the command under test, or `mount ...`) under the reaper. */
export function run(argv: string[], opts: RunOptions = {}): Run {
  const r = new Run(argv, opts)
  allRuns.add(r)
  return r
}

/** Start the command under test with these arguments. */
export function runCli(args: string[], opts: RunOptions = {}): Run {
  return run([...cliCommand(), ...args], opts)
}

const allRuns = new Set<Run>()

/** Kill whatever any run of this test file left behind (for afterEach/afterAll). */
export async function killAllRuns(): Promise<void> {
  for (const r of allRuns) await r.kill()
  allRuns.clear()
}

// ---------------------------------------------------------------------------
// /proc helpers

export function descendantsOf(root: number): number[] {
  const parent = new Map<number, number>()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const pp = ppidOf(Number(name))
    if (pp !== null) parent.set(Number(name), pp)
  }
  const out: number[] = []
  for (const [pid] of parent) {
    let p: number | undefined = pid
    for (let depth = 0; depth < 64 && p !== undefined && p > 1; depth++) {
      p = parent.get(p)
      if (p === root) {
        out.push(pid)
        break
      }
    }
  }
  return out
}

function statFields(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = s.lastIndexOf(')')
    return s.slice(close + 2).split(' ') // fields from 3 (state) on
  } catch {
    return null
  }
}

export function ppidOf(pid: number): number | null {
  const f = statFields(pid)
  return f ? Number(f[1]) : null
}

export function isZombie(pid: number): boolean {
  const f = statFields(pid)
  return f === null || f[0] === 'Z' || f[0] === 'X'
}

export function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')
  } catch {
    return ''
  }
}

export function isAlive(pid: number): boolean {
  return !isZombie(pid)
}

// ---------------------------------------------------------------------------
// Mounts

export interface MountEntry {
  mountId: number
  parentId: number
  mountpoint: string
  /** per-mount options (ro/rw, nosuid, nodev, noexec, atime flags) */
  mountOptions: string[]
  fstype: string
  source: string
  superOptions: string[]
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export function readMountinfoRaw(): string {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8')
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = []
  for (const line of text.split('\n')) {
    if (!line) continue
    const [left, right] = line.split(' - ')
    if (left === undefined || right === undefined) continue
    const a = left.split(' ')
    const b = right.split(' ')
    out.push({
      mountId: Number(a[0]),
      parentId: Number(a[1]),
      mountpoint: unescapeMountinfo(a[4] ?? ''),
      mountOptions: (a[5] ?? '').split(','),
      fstype: b[0] ?? '',
      source: unescapeMountinfo(b[1] ?? ''),
      superOptions: (b[2] ?? '').split(','),
    })
  }
  return out
}

/** The topmost mount at exactly this path, or null. */
export function mountAt(mountpoint: string, text = readMountinfoRaw()): MountEntry | null {
  const all = parseMountinfo(text).filter((m) => m.mountpoint === mountpoint)
  return all.length ? all[all.length - 1]! : null
}

export function mountsAt(mountpoint: string, text = readMountinfoRaw()): MountEntry[] {
  return parseMountinfo(text).filter((m) => m.mountpoint === mountpoint)
}

export async function waitForMount(mountpoint: string, timeoutMs = 30_000): Promise<MountEntry> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const m = mountAt(mountpoint)
    if (m) return m
    if (Date.now() > deadline) throw new Error(`${mountpoint} was not mounted within ${timeoutMs} ms`)
    await sleep(50)
  }
}

export async function waitForUnmount(mountpoint: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (mountAt(mountpoint)) {
    if (Date.now() > deadline) throw new Error(`${mountpoint} still mounted after ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** Run a short command synchronously; returns status and output. */
export function sh(cmd: string, args: string[], timeoutMs = 30_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs })
  return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
}

export function fusermountCmd(): string {
  return commandPath('fusermount3') ?? 'fusermount'
}

/**
 * Unmount everything mounted at or below `dir` (deepest first), trying
 * fusermount -u, umount, then umount -l. Returns the mountpoints it had to
 * unmount.
 */
export function unmountAllUnder(dir: string): string[] {
  const done: string[] = []
  for (let round = 0; round < 20; round++) {
    const mine = parseMountinfo(readMountinfoRaw())
      .map((m) => m.mountpoint)
      .filter((p) => p === dir || p.startsWith(dir + '/'))
      .sort((x, y) => y.length - x.length)
    if (!mine.length) return done
    const p = mine[0]!
    done.push(p)
    if (sh(fusermountCmd(), ['-u', p]).status === 0) continue
    if (sh('umount', [p]).status === 0) continue
    sh('umount', ['-l', p])
  }
  return done
}

// ---------------------------------------------------------------------------
// Temp dirs and layer fixtures

export interface Fixture {
  root: string
  lower1: string
  lower2: string
  upper: string
  work: string
  mnt: string
  /** a lower dir whose name contains a colon */
  colonDir: string
}

/**
 * A fresh temp dir with two lower layers (lower1 on top), upper, work and mnt:
 *   lower1/f = "top\n"            lower2/f = "bottom\n"
 *   lower2/g = "only-lower2\n"    lower1/run.sh (executable script)
 *   a:b/h = "colon\n"
 */
export function makeFixture(tag = 'cli'): Fixture {
  // realpath: mountinfo shows canonical paths
  const root = fs.realpathSync(fs.mkdtempSync(`${TEMP_PREFIX}${tag}-`))
  const fx: Fixture = {
    root,
    lower1: path.join(root, 'lower1'),
    lower2: path.join(root, 'lower2'),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    mnt: path.join(root, 'mnt'),
    colonDir: path.join(root, 'a:b'),
  }
  for (const d of [fx.lower1, fx.lower2, fx.upper, fx.work, fx.mnt, fx.colonDir]) fs.mkdirSync(d)
  fs.writeFileSync(path.join(fx.lower1, 'f'), 'top\n')
  fs.writeFileSync(path.join(fx.lower1, 'run.sh'), '#!/bin/sh\necho ran\n', { mode: 0o755 })
  fs.writeFileSync(path.join(fx.lower2, 'f'), 'bottom\n')
  fs.writeFileSync(path.join(fx.lower2, 'g'), 'only-lower2\n')
  fs.writeFileSync(path.join(fx.colonDir, 'h'), 'colon\n')
  return fx
}

/** Unmount anything left under the fixture, then remove it (never while something is mounted there). */
export function removeFixture(fx: Fixture): string[] {
  const leftovers = unmountAllUnder(fx.root)
  const still = parseMountinfo(readMountinfoRaw()).filter(
    (m) => m.mountpoint === fx.root || m.mountpoint.startsWith(fx.root + '/'),
  )
  if (still.length === 0) fs.rmSync(fx.root, { recursive: true, force: true })
  return leftovers
}

// ---------------------------------------------------------------------------
// small utilities

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, rej) => {
    t = setTimeout(() => rej(new Error(what())), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(t)
  }
}

/** The errno code of a failing synchronous fs call, or 'OK'. */
export function errnoOf(f: () => unknown): string {
  try {
    f()
    return 'OK'
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e)
  }
}
