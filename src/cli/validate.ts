import * as fs from 'node:fs'
import * as path from 'node:path'
import { CliError } from './errors'
import type { MountOptions } from '../fuse/options'

export interface ValidatedLayers {
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  mountpoint: string
}

/**
 * Check the directories of a mount before anything is mounted, each failure
 * one sentence: missing or unreadable lowerdir, upperdir without workdir,
 * workdir on another filesystem, overlapping layers, mountpoint missing or busy.
 */
export function validateLayers (o: MountOptions, mountpoint: string): ValidatedLayers {
  if (o.lowerdirs.length === 0) throw new CliError('no lowerdir given: use -o lowerdir=DIR[:DIR…]')
  const lowerdirs = o.lowerdirs.map(d => realDir(d, 'lowerdir', fs.constants.R_OK | fs.constants.X_OK))
  let upperdir: string | undefined
  let workdir: string | undefined
  if (o.upperdir !== undefined) {
    if (o.workdir === undefined) throw new CliError('upperdir needs a workdir: add -o workdir=DIR on the same filesystem as the upperdir')
    upperdir = realDir(o.upperdir, 'upperdir', fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK)
    workdir = realDir(o.workdir, 'workdir', fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK)
    if (fs.statSync(upperdir).dev !== fs.statSync(workdir).dev) {
      throw new CliError(`workdir ${workdir} is on another filesystem than upperdir ${upperdir}; they must share one`)
    }
    if (overlaps(upperdir, workdir)) throw new CliError(`upperdir ${upperdir} and workdir ${workdir} overlap; they must be separate directories`)
    for (const l of lowerdirs) {
      if (overlaps(l, upperdir)) throw new CliError(`lowerdir ${l} and upperdir ${upperdir} overlap`)
      if (overlaps(l, workdir)) throw new CliError(`lowerdir ${l} and workdir ${workdir} overlap`)
    }
  } else if (o.workdir !== undefined) {
    throw new CliError('workdir given without upperdir')
  }
  const mnt = checkMountpoint(mountpoint)
  // A mount point strictly inside a layer would put the mount in the daemon's own path
  // walks (the kernel's never cross mounts; ours would, and wait on themselves).
  // On a layer itself is fine: the layers are held open before the mount is made.
  for (const [what, dir] of [...lowerdirs.map(l => ['lowerdir', l] as const), ['upperdir', upperdir] as const, ['workdir', workdir] as const]) {
    if (dir !== undefined && (mnt.startsWith(dir + '/') || (dir === '/' && mnt !== '/'))) {
      throw new CliError(`mountpoint ${mnt} is inside ${what} ${dir}; mount on the layer itself or outside it`)
    }
  }
  return { lowerdirs, upperdir, workdir, mountpoint: mnt }
}

function realDir (p: string, what: string, mode: number): string {
  let real: string
  try {
    real = fs.realpathSync(p)
  } catch (err) {
    throw new CliError(`${what} ${p} does not exist or cannot be reached (${codeOf(err)})`)
  }
  const st = fs.statSync(real)
  if (!st.isDirectory()) throw new CliError(`${what} ${p} is not a directory`)
  try {
    fs.accessSync(real, mode)
  } catch {
    throw new CliError(`${what} ${p} is not ${mode & fs.constants.W_OK ? 'writable' : 'readable'}`)
  }
  return real
}

function overlaps (a: string, b: string): boolean {
  return a === b || a.startsWith(b + '/') || b.startsWith(a + '/') || b === '/' || a === '/'
}

function checkMountpoint (p: string): string {
  const abs = path.resolve(p)
  let st: fs.Stats
  try {
    st = fs.statSync(abs)
  } catch (err) {
    // Right after a daemon dies the first stat can also give ECONNABORTED.
    if (codeOf(err) === 'ENOTCONN' || codeOf(err) === 'ECONNABORTED') {
      throw new CliError(`mountpoint ${abs} has a stale FUSE mount (transport endpoint is not connected); clear it with: fusermount -uz ${abs}`)
    }
    throw new CliError(`mountpoint ${abs} does not exist`)
  }
  if (!st.isDirectory()) throw new CliError(`mountpoint ${abs} is not a directory`)
  const real = fs.realpathSync(abs)
  if (isMountpoint(real)) throw new CliError(`mountpoint ${real} is busy: something is already mounted there`)
  return real
}

/** Whether `dir` is the mount point of a live mount, per /proc/self/mountinfo. */
export function isMountpoint (dir: string): boolean {
  return mountIdsAt(dir).length > 0
}

/** Mount IDs of the mounts at `dir` (mountinfo field 1), with their fs type. */
export function mountIdsAt (dir: string): Array<{ id: number, fstype: string }> {
  return mountIdsIn(fs.readFileSync('/proc/self/mountinfo', 'utf8'), dir)
}

/** mountIdsAt without blocking the event loop (the daemon's watch for an unmount from outside). */
export async function mountIdsAtAsync (dir: string): Promise<Array<{ id: number, fstype: string }>> {
  return mountIdsIn(await fs.promises.readFile('/proc/self/mountinfo', 'utf8'), dir)
}

function mountIdsIn (mountinfo: string, dir: string): Array<{ id: number, fstype: string }> {
  const out: Array<{ id: number, fstype: string }> = []
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ')
    if (f.length < 10) continue
    const sep = f.indexOf('-')
    if (unescapeMountinfo(f[4] as string) === dir) out.push({ id: Number(f[0]), fstype: f[sep + 1] as string })
  }
  return out
}

function unescapeMountinfo (s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

function codeOf (err: unknown): string {
  return (err as { code?: string }).code ?? 'error'
}
