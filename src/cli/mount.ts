import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import type { Logger } from 'pino'
import { Engine } from '../engine/engine'
import { IdMapping, readKernelOverflowIds, type MappingOptions } from '../engine/mapping'
import { makeOps } from '../fuse/adapter'
import { FuseMount } from '../fuse/binding'
import { FastNames } from '../fuse/fast-names'
import type { MountOptions } from '../fuse/options'
import { CliError } from './errors'
import { sinkOf } from './log'
import { removeStandIn, standInOf } from './stand-in'
import { mountIdsAt, mountIdsAtAsync, type ValidatedLayers } from './validate'

/**
 * Memory bounds of the daemon's caches (peak RSS target 96 MiB; an idle
 * daemon is ~50 MiB). Resolved names: LRU of 20,000 nodes (~0.7 KiB each with
 * their lstat). Lower directory listings: LRU of 300,000 entries over all
 * directories (~50 bytes each). The kernel caches lower-layer names and
 * attributes itself (see LOWER_TIMEOUT), so these need not hold a whole walk.
 */
export const MAX_NODES = 20_000
export const MAX_LISTING_ENTRIES = 300_000

/**
 * V8 flags of the daemon: a 2 MiB young generation (the default 16 MiB
 * semi-spaces add ~30 MiB of RSS under a stream of short-lived per-request
 * objects; the live set is small, so scavenges stay cheap), and an old
 * generation that grows by 10 % before a full collection instead of V8's
 * default factor (up to 2x): a cold find over the benchmark's tree left 14 MiB
 * live but a 56 MiB heap, 30 MiB with this; the walk's time did not change
 * measurably (2.5-3.3 s either way, 3 runs each). The `ovlfs` command's
 * shebang (main.ts) gives the same flags to `ovlfs -f`, which serves in its own process.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=10']

/**
 * The daemon's environment, under what the user's own environment sets: 16
 * libuv pool threads (copy-ups and stalled layers must not queue behind each
 * other), and at most 2 malloc arenas (glibc gives each libfuse thread its own,
 * each keeping freed memory for itself: ~4 MiB less peak RSS on the same walk).
 */
const DAEMON_ENV_DEFAULTS = { UV_THREADPOOL_SIZE: '16', MALLOC_ARENA_MAX: '2' }

/** File descriptor on which a daemon child reports readiness to the command that started it. */
const STATUS_FD = 3
export const DAEMON_FLAG = '--ovlfs-daemon'
const DAEMON_ENV = 'OVLFS_DAEMON_PARENT'

/**
 * Whether this process is a daemon that daemonize() started: the internal flag
 * alone is not enough; its parent set DAEMON_ENV to its pid and gave it a pipe (a socketpair)
 * on STATUS_FD. Given by hand, the flag is refused instead of writing to
 * whatever fd 3 happens to be.
 */
export function startedByDaemonize (): boolean {
  if (process.env[DAEMON_ENV] !== String(process.ppid)) return false
  try {
    const st = fs.fstatSync(STATUS_FD)
    return st.isFIFO() || st.isSocket() // node's stdio "pipe" is a socketpair
  } catch {
    return false
  }
}

/**
 * The daemon's stderr, which has its log, and whatever a crash prints (Node's
 * report of an internal error, glibc's abort message): the --log-file (`logFd`),
 * or else the kernel's log (/dev/kmsg: `dmesg`, `journalctl -k`), where only
 * root may write; for anyone else nowhere. `--log-file /dev/null` keeps the
 * kernel's log out of it. At the default level only warnings reach it (a
 * request answered EIO, an unmount that failed) and a crash.
 */
function daemonStderr (logFd: number | undefined): number | 'ignore' {
  if (logFd !== undefined) return logFd
  let fd: number | undefined
  try {
    // Write-only, never created: where /dev is writable but has no kmsg (a container), no file appears.
    fd = fs.openSync('/dev/kmsg', fs.constants.O_WRONLY | fs.constants.O_NOCTTY)
    if (sinkOf(fd) === 'kmsg') return fd
  } catch {}
  if (fd !== undefined) fs.closeSync(fd)
  return 'ignore'
}

/**
 * Start the daemon as a detached child and return once the mount is live
 * (exit 0), or with the child's one-line error (exit 1). The child has no
 * stdin or stdout of ours, so whoever reads our output sees EOF when we exit;
 * its stderr is the log (daemonStderr).
 */
export async function daemonize (argv: readonly string[], script: string, logFd?: number): Promise<number> {
  const stderr = daemonStderr(logFd)
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, script, ...argv, DAEMON_FLAG], {
    detached: true,
    stdio: ['ignore', 'ignore', stderr, 'pipe'],
    env: { ...DAEMON_ENV_DEFAULTS, ...process.env, [DAEMON_ENV]: String(process.pid) },
  })
  if (typeof stderr === 'number') fs.closeSync(stderr)
  const status = child.stdio[STATUS_FD] as NodeJS.ReadableStream & { destroy: () => void } | null | undefined
  if (status === null || status === undefined) throw new CliError('could not start the daemon (no status pipe)')
  let text = ''
  status.setEncoding('utf8')
  const result = await new Promise<{ ready: boolean, error?: string }>((resolve) => {
    status.on('data', (chunk: string) => {
      text += chunk
      for (const line of text.split('\n').slice(0, -1)) {
        const msg = JSON.parse(line) as { ready?: boolean, error?: string }
        if (msg.ready === true) resolve({ ready: true })
        if (msg.error !== undefined) resolve({ ready: false, error: msg.error })
      }
    })
    status.on('end', () => resolve({ ready: false, error: 'the daemon exited before the mount was live' }))
    child.on('error', (err) => resolve({ ready: false, error: `could not start the daemon: ${err.message}` }))
  })
  status.destroy()
  child.unref()
  if (!result.ready) throw new CliError(result.error ?? 'mount failed')
  return 0
}

export interface ServeRequest {
  layers: ValidatedLayers
  options: MountOptions
  mapping: MappingOptions
  log: Logger
  /** Set when started by daemonize(): report readiness on STATUS_FD. */
  daemon: boolean
}

/**
 * Serve the mount in this process until it is unmounted (umount, fusermount
 * -u) or we get SIGTERM/SIGINT (then we unmount); resolves with exit code 0.
 */
export async function serve (req: ServeRequest): Promise<number> {
  const { layers, options, log } = req
  const report = (msg: object): void => {
    if (req.daemon) fs.writeSync(STATUS_FD, JSON.stringify(msg) + '\n')
  }
  // Signals are handled from the start: one that arrives while mounting unmounts right after.
  let signalled: string | undefined
  let onSignal: (sig: string) => void = (sig) => { signalled = sig }
  process.once('SIGTERM', () => onSignal('SIGTERM'))
  process.once('SIGINT', () => onSignal('SIGINT'))

  let fuse: FuseMount
  let engine: Engine
  let fastNames: FastNames | undefined
  try {
    // Modes arrive from the kernel with the caller's umask applied; ours must not apply twice.
    process.umask(0)
    engine = await Engine.open({
      lowerdirs: layers.lowerdirs, upperdir: layers.upperdir, workdir: layers.workdir, volatile: options.volatile, redirectDir: options.redirectDir,
      index: options.index, metacopy: options.metacopy,
      xattrPermissions: req.mapping.xattrPermissions, maxNodes: MAX_NODES, maxListingEntries: MAX_LISTING_ENTRIES,
    })
    log.debug({ features: engine.features }, 'engine ready')
    const ids = IdMapping.fromOptions(req.mapping, readKernelOverflowIds())
    const timeout = lowerTimeout(options)
    // Fast names (fast-names.ts) answer a lower object as its lstat: only where the adapter would too.
    fastNames = timeout > 0 && ids.identity && engine.lowerAttrsAreLstat && process.env.OVLFS_FAST_NAMES !== '0'
      ? new FastNames(() => fuse, engine, timeout * 1000, log, req.mapping.staticNlink)
      : undefined
    const ops = makeOps(engine, () => fuse.context(), log, { ids, staticNlink: req.mapping.staticNlink, noacl: req.mapping.noacl, lowerTimeout: timeout }, fastNames)
    fuse = new FuseMount(layers.mountpoint, ops, {
      fsname: options.fsname ?? 'ovlfs', subtype: 'ovlfs', extraOptions: fuseOptions(options), nullpathOk: true, timeout: false,
      cacheDirs: cacheDirs(options), noOpendir: process.env.OVLFS_NO_OPENDIR !== '0',
      // Without an upper layer nothing is copied up: reads may go to the layer's file in the kernel.
      passthrough: layers.upperdir === undefined && process.env.OVLFS_PASSTHROUGH !== '0',
      spliceReads: process.env.OVLFS_SPLICE !== '0',
    })
    engine.onAttrsChanged = (ino, listing) => { fuse.invalidateIno(ino, listing === true) }
    await fuse.mount()
  } catch (err) {
    const message = err instanceof CliError ? err.message : `mount failed: ${(err as Error).message}`
    report({ error: message })
    throw new CliError(message)
  }
  const ours = mountIdsAt(layers.mountpoint).filter(m => m.fstype === 'fuse.ovlfs').map(m => m.id)
  const mountId = ours[ours.length - 1]
  const standIn = standInOf(layers.lowerdirs)
  log.info({ mountpoint: layers.mountpoint, mountId }, 'mounted')
  report({ ready: true })
  if (req.daemon) fs.closeSync(STATUS_FD)

  return await new Promise<number>((resolve) => {
    let done = false
    const finish = (why: string): void => {
      if (done) return
      done = true
      clearInterval(timer)
      if (fastNames !== undefined) {
        const [held, answered, absent, opened, setattrs, writes, creates, unlinks, spliced] = fastNames.stats()
        log.info({ held, answered, absent, opened, setattrs, writes, creates, unlinks, spliced }, 'fast names')
      }
      // Threads libfuse started and ended, and how many thread locals that took (patch item 30).
      log.info(fuse.threadStats(), 'libfuse threads')
      // Directories the kernel opened without OPENDIR (patch item 31).
      log.info(fuse.nodirStats(), 'directories without OPENDIR')
      // Opens the kernel reads from the layer's file itself (patch item 32).
      log.info(fuse.ptStats(), 'passthrough')
      engine.close()
      if (standIn !== undefined && !removeStandIn(standIn)) log.warn({ standIn }, 'the empty stand-in lowerdir could not be removed')
      log.info({ why, ...process.memoryUsage() }, 'unmounted')
      resolve(0)
    }
    // The session's end (destroy) tells us about an unmount from outside; polling mountinfo is the
    // safety net, read asynchronously (with many mounts it is a large file; reading it on the JS
    // thread every half second took 1-2 % of the daemon's time from requests).
    let polling = false
    const timer = setInterval(() => {
      if (polling) return
      polling = true
      mountIdsAtAsync(layers.mountpoint).then((ids) => {
        if (!ids.some(m => m.id === mountId)) finish('unmounted from outside')
      }, () => {}).finally(() => { polling = false })
    }, 1000)
    fuse.unmounted.then(() => finish('session ended'), () => {})
    onSignal = (sig: string): void => {
      log.info({ sig }, 'signal: unmounting')
      fuse.unmount().then(() => finish(sig), (err: unknown) => {
        log.error({ err: String(err) }, 'unmount failed')
        finish(sig)
      })
    }
    if (signalled !== undefined) onSignal(signalled)
  })
}

/** Seconds the kernel may cache lower-layer names, attributes and pages (see Presentation.lowerTimeout). */
export const LOWER_TIMEOUT = 86400

/** LOWER_TIMEOUT, or 0 when the user set the kernel's cache timeouts explicitly (then those apply to everything). */
function lowerTimeout (options: MountOptions): number {
  return options.fuseOptions.some(o => /^(entry|attr)_timeout=/.test(o)) ? 0 : LOWER_TIMEOUT
}

/**
 * Whether the kernel caches directory listings (patch item 16), writable
 * mounts included: the kernel drops a directory's cached listing when it
 * changes through the mount, and the engine when a copy-up goes into it
 * (onAttrsChanged). A listing read while another process changes the
 * directory is served partly from the cache, then, the cache being stale,
 * from the daemon at the position reached; the binding's offsets carry a
 * stable position made from each name (patch item 27), so that continues
 * where it left off (libfuse 2's own offsets, byte positions in a fresh
 * snapshot, showed unchanged names twice: scripts/stress.js, seed 1), and
 * the id of the snapshot they come from, so that the kernel's cache never
 * joins listings made before and after a change (without it a process
 * listed a name right after unlinking it: native-tests/readdir-cache).
 * Off, like the per-object timeouts, when the user sets the kernel's cache
 * timeouts explicitly.
 */
function cacheDirs (options: MountOptions): boolean {
  return lowerTimeout(options) > 0
}

/**
 * The FUSE options of a mount. Attributes are never cached by the kernel:
 * libfuse 2's path API gives each name of a hard-linked file its own kernel
 * inode, so a cached size or mtime under one name would go stale after a
 * write through another. Entries and negative lookups may be cached. Objects
 * whose top is in a lower layer get long timeouts per reply instead (see
 * lowerTimeout and the adapter's Presentation).
 * nonempty: like the kernel's overlayfs (and libfuse 3), a non-empty mount point is fine.
 * hard_remove (with nullpathOk): unlinking an open file removes it at once,
 * no .fuse_hidden files in the upper layer; its handles keep working by fd.
 */
function fuseOptions (options: MountOptions): string[] {
  const t = String(options.timeout)
  // nonempty: a mount over a non-empty directory is allowed, as with the kernel's overlayfs and libfuse 3.
  const extra = ['use_ino', 'big_writes', 'nonempty', `entry_timeout=${t}`, 'attr_timeout=0', `negative_timeout=${t}`, 'hard_remove', ...options.fuseOptions]
  if (!extra.includes('default_permissions')) extra.push('default_permissions')
  return extra
}
