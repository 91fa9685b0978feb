// Mount and unmount the kernel's overlayfs and the FUSE command under test.
//
// The FUSE command is `node <repo>/dist/cli/main.js` unless OVLFS_CMD names another one
// with the same command line (e.g. OVLFS_CMD=fuse-overlayfs while developing the harness).
// Every mount made here is remembered until it is unmounted; unmountAll() is the safety net.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { cloneTree } from './layers'

const REPO = path.resolve(__dirname, '..', '..')
export const CLI = path.join(REPO, 'dist', 'cli', 'main.js')

/** Pinned kernel options: no redirect_dir (dir rename gives EXDEV), no index, no metacopy. */
export const KERNEL_OPTS = 'redirect_dir=off,index=off,metacopy=off'
/**
 * The same in a user namespace (unprivileged): `userxattr` (user.overlay.* instead of
 * trusted.overlay.*), which refuses redirect_dir=off (it means "follow" there): nofollow.
 */
export const KERNEL_USERXATTR_OPTS = 'redirect_dir=nofollow,index=off,metacopy=off,userxattr'
/** ovlfs mounted to match KERNEL_OPTS: its defaults (redirect_dir, index, metacopy on) would differ from the kernel's. */
export const FUSE_OPTS = 'redirect_dir=off,index=off,metacopy=off'
/** The kernel renaming directories with redirects (index and metacopy off). */
export const KERNEL_REDIRECT_OPTS = 'redirect_dir=on,index=off,metacopy=off'
/** ovlfs mounted to match KERNEL_REDIRECT_OPTS (its index and metacopy are on by default). */
export const FUSE_REDIRECT_OPTS = 'index=off,metacopy=off'
/** The kernel with every feature ovlfs has on by default: redirects, hard links kept, metadata-only copy-up. */
export const KERNEL_FULL_OPTS = 'redirect_dir=on,index=on,metacopy=on'

/** Mount options of the two sides of a differential run. */
export interface Modes { kernel: string, fuse: string }
export const DEFAULT_MODES: Modes = { kernel: KERNEL_OPTS, fuse: FUSE_OPTS }

export interface Overlay { lowers: string[], upper: string, work: string, mnt: string }
export type Kind = 'kernel' | 'fuse'

const live = new Map<string, Kind>()
const roots = new Set<string>()

/** The FUSE command as argv; throws (the test fails) when the CLI is not built. */
export function fuseCommand (): string[] {
  const env = process.env.OVLFS_CMD
  if (env !== undefined && env.trim() !== '') return env.trim().split(/\s+/)
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} does not exist: build ovlfs first (npx tsc -p tsconfig.json), or set OVLFS_CMD`)
  return [process.execPath, CLI]
}

function lowerOpt (lowers: readonly string[]): string {
  return `lowerdir=${lowers.map(l => l.replace(/\\/g, '\\\\').replace(/:/g, '\\:')).join(':')}`
}

function overlayOpts (o: Overlay): string {
  return `${lowerOpt(o.lowers)},upperdir=${o.upper},workdir=${o.work}`
}

/** `kernelOpts`: KERNEL_OPTS, or KERNEL_USERXATTR_OPTS in a user namespace. */
export function mountKernel (o: Overlay, kernelOpts = KERNEL_OPTS): void {
  const opts = `${overlayOpts(o)},${kernelOpts}`
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', opts, o.mnt], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`kernel overlay mount failed: ${r.stderr || r.error}`)
  remember(o.mnt, 'kernel')
}

/** The kernel's overlayfs of `lowers` (top first) alone: read-only, no upper layer. */
export function mountKernelLowers (lowers: readonly string[], mnt: string): void {
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', lowerOpt(lowers), mnt], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`kernel overlay mount failed: ${r.stderr || r.error}`)
  remember(mnt, 'kernel')
}

/**
 * Run the FUSE command; it returns once the mount is live, which /proc/self/mountinfo must confirm.
 * `command`: another FUSE overlay with the same command line (e.g. ['fuse-overlayfs'], the peer).
 */
export async function mountFuse (o: Overlay, extraOpts = '', command: string[] = fuseCommand()): Promise<void> {
  const [cmd, ...args] = command
  const log = path.join(path.dirname(o.mnt), `fuse-${path.basename(o.mnt)}.log`)
  const fd = fs.openSync(log, 'w') // a file, not a pipe: the daemon may keep it open
  const opts = overlayOpts(o) + (extraOpts ? ',' + extraOpts : '')
  const child = spawn(cmd!, [...args, '-o', opts, o.mnt], { stdio: ['ignore', fd, fd] })
  fs.closeSync(fd)
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve('timeout after 30s') }, 30_000)
    child.on('error', (e) => { clearTimeout(timer); resolve(String(e)) })
    child.on('exit', (c, s) => { clearTimeout(timer); resolve(c ?? String(s)) })
  })
  remember(o.mnt, 'fuse') // even on failure: a half-made mount must still be unmounted
  const output = () => fs.readFileSync(log, 'utf8').trim()
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${output()}`)
  for (let i = 0; i < 50 && !isMounted(o.mnt, 'fuse'); i++) await sleep(100)
  if (!isMounted(o.mnt, 'fuse')) throw new Error(`${cmd} returned but ${o.mnt} is not a FUSE mount: ${output()}`)
}

/**
 * The FUSE command in the foreground (-f, plus `flags` such as '--log-level=debug') with its
 * output in `log`, for tests that read what the daemon logged; `env` is added to this process's
 * environment. Resolves once mounted; stop() unmounts and waits for the daemon to exit (SIGKILL
 * after 15 s); kill() ends the daemon at once (SIGKILL, by the pid spawned here), which aborts
 * the mount's connection so that requests it never answered fail instead of waiting forever.
 */
export async function mountForeground (mnt: string, opts: string, log: string, flags: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stop: () => Promise<void>, kill: () => void, pid: number }> {
  const [cmd, ...args] = fuseCommand()
  const fd = fs.openSync(log, 'w')
  const daemon = spawn(cmd!, [...args, '-f', ...flags, '-o', opts, mnt], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } })
  fs.closeSync(fd)
  remember(mnt, 'fuse')
  const exited = new Promise<void>(resolve => daemon.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (isMounted(mnt)) await unmount(mnt)
    const gone = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)])
    if (!gone) daemon.kill('SIGKILL')
  }
  const kill = (): void => { daemon.kill('SIGKILL') }
  for (let i = 0; i < 300 && !isMounted(mnt, 'fuse'); i++) await sleep(100)
  if (!isMounted(mnt, 'fuse')) {
    await stop()
    throw new Error(`ovlfs did not mount ${mnt}: ${fs.readFileSync(log, 'utf8')}`)
  }
  return { stop, kill, pid: daemon.pid! }
}

/** Mount points (and fs types) of this mount namespace. */
export function mountTable (): Array<{ mnt: string, type: string }> {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [left, right] = line.split(' - ')
    return { mnt: unescape(left!.split(' ')[4]!), type: right!.split(' ')[0]! }
  })
}

export function isMounted (mnt: string, kind?: Kind): boolean {
  return mountTable().some(m => m.mnt === mnt &&
    (kind === undefined || (kind === 'kernel' ? m.type === 'overlay' : m.type.startsWith('fuse'))))
}

/** Unmount for sure: retry the polite way, then lazily. Throws only if the mount is still there. */
export async function unmount (mnt: string): Promise<void> {
  const kind = live.get(mnt) ?? 'kernel'
  for (let i = 0; i < 20 && isMounted(mnt); i++) {
    if (kind === 'fuse') spawnSync('fusermount', ['-u', mnt], { stdio: 'ignore' })
    else spawnSync('umount', [mnt], { stdio: 'ignore' })
    if (isMounted(mnt)) await sleep(50 * (i + 1))
  }
  if (isMounted(mnt)) spawnSync('umount', ['-l', mnt], { stdio: 'ignore' })
  if (isMounted(mnt)) throw new Error(`cannot unmount ${mnt}`)
  live.delete(mnt)
}

/** Unmount everything still mounted by this process and remove its temp dirs (afterAll). */
export async function unmountAll (): Promise<void> {
  for (const mnt of [...live.keys()].reverse()) await unmount(mnt).catch(() => {})
  cleanupSync()
}

export function tempDir (prefix = 'ovlfs-diff-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  roots.add(d)
  return d
}

export function removeTree (p: string): void {
  if (mountTable().some(m => m.mnt === p || m.mnt.startsWith(p + '/'))) {
    throw new Error(`refusing to remove ${p}: something is still mounted below it`)
  }
  fs.rmSync(p, { recursive: true, force: true })
  roots.delete(p)
}

// Last resort when the process ends with mounts still live (a crash, SIGINT/SIGTERM):
// synchronous, lazy if need be, then the temp dirs go too.
let hooked = false
function remember (mnt: string, kind: Kind): void {
  live.set(mnt, kind)
  if (hooked) return
  hooked = true
  process.once('exit', cleanupSync)
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
    process.once(sig, () => { cleanupSync(); process.exit(128 + n) })
  }
}

export function cleanupSync (): void {
  for (const [mnt, kind] of [...live].reverse()) {
    if (isMounted(mnt)) spawnSync(kind === 'fuse' ? 'fusermount' : 'umount', kind === 'fuse' ? ['-u', mnt] : [mnt], { stdio: 'ignore' })
    if (isMounted(mnt)) spawnSync('umount', ['-l', mnt], { stdio: 'ignore' })
    live.delete(mnt)
  }
  for (const r of roots) { try { removeTree(r) } catch { /* still mounted: leave it */ } }
}

/**
 * A fresh copy of the layer set in `base` (made by buildLayers) under `root`, with an empty
 * workdir and a mount point: root/{lower0..,upper,work,mnt}.
 */
export function prepareSide (base: string, root: string, nLowers: number): Overlay {
  cloneTree(base, root)
  const o: Overlay = {
    lowers: Array.from({ length: nLowers }, (_v, i) => path.join(root, `lower${i}`)),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    mnt: path.join(root, 'mnt'),
  }
  fs.mkdirSync(o.work)
  fs.mkdirSync(o.mnt)
  return o
}

export interface Sides { kernel: Overlay, fuse: Overlay }

/**
 * Clone `base` twice, mount the kernel overlay on one copy and the FUSE command on the other,
 * run fn, and always unmount and remove everything afterwards.
 */
export async function withBoth<T> (base: string, nLowers: number, fn: (s: Sides) => Promise<T> | T, modes: Modes = DEFAULT_MODES): Promise<T> {
  const root = tempDir()
  const sides: Sides = {
    kernel: prepareSide(base, path.join(root, 'kernel'), nLowers),
    fuse: prepareSide(base, path.join(root, 'fuse'), nLowers),
  }
  try {
    mountKernel(sides.kernel, modes.kernel)
    await mountFuse(sides.fuse, modes.fuse)
    return await fn(sides)
  } finally {
    await settle([unmount(sides.fuse.mnt), unmount(sides.kernel.mnt)])
    removeTree(root)
  }
}

/** The FUSE mount alone (for the cases the kernel cannot judge). */
export async function withFuse<T> (base: string, nLowers: number, fn: (o: Overlay) => Promise<T> | T): Promise<T> {
  const root = tempDir()
  const o = prepareSide(base, path.join(root, 'fuse'), nLowers)
  try {
    await mountFuse(o)
    return await fn(o)
  } finally {
    await settle([unmount(o.mnt)])
    removeTree(root)
  }
}

async function settle (ps: Array<Promise<void>>): Promise<void> {
  const errs = (await Promise.allSettled(ps)).filter(r => r.status === 'rejected')
  if (errs.length > 0) throw (errs[0] as PromiseRejectedResult).reason
}

function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }
