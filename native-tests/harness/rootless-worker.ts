// The part of native-tests/rootless.test.ts that runs as an unprivileged user inside a user,
// mount and pid namespace: it mounts ovlfs (and the kernel's overlayfs with `userxattr`), applies
// ops and takes snapshots of the merged views, which only a process of that namespace can see.
// Started through vite-node so that it shares the harness's TypeScript; argv[2] names a job file
// (JSON, a RootlessJob) and the result (JSON) goes to job.out. Every mount made here is
// unmounted before it exits; the pid namespace ends with this process, taking a stray daemon
// with it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { KERNEL_USERXATTR_OPTS, mountFuse, mountKernel, unmount, unmountAll, type Overlay } from './mounts'
import { apply, type Op } from './ops'
import { snapshotMerged, type Snapshot } from './snapshot'

/** What the unprivileged user may do here, found out before any mount. */
export interface Probe {
  /** Ids of this process as the namespace sees them, and its maps. */
  uid: number
  gid: number
  uidMap: string
  gidMap: string
  /** mknod c 0 0 (the kernel's whiteout) in a plain directory: 'ok' or the error. */
  mknodWhiteout: string
  /** setfattr of a trusted.* and a user.* name on a plain directory: 'ok' or the error. */
  trustedXattr: string
  userXattr: string
}

export interface OpsJob {
  kind: 'ops'
  out: string
  /** A directory of the user's own for the probe. */
  scratch: string
  /** ovlfs's side and the kernel's side: identical copies of the same layers. */
  fuse: Overlay
  kernel: Overlay
  /** The kernel mounted over ovlfs's lowers and upper afterwards (its own work and mnt). */
  check: Overlay
  ops: Op[]
  /** A new file made on both mounts after the snapshots, setfacl tried on it, then removed. */
  aclProbe: string
}

export interface OpsResult {
  probe: Probe
  results: { kernel: string[], fuse: string[] }
  merged: { kernel: Snapshot, fuse: Snapshot, kernelOverOvlfsUpper: Snapshot }
  /** `setfacl -m u:0:r` through each mount: 'ok' or its error message. */
  acl: { kernel: string, fuse: string }
}

export interface MappingMount {
  /** Extra ovlfs options, e.g. 'uidmapping=0:0:1'. */
  opts: string
  ops: Op[]
  /** Merged paths to lstat after the ops. */
  stat: string[]
  /** Another overlay than the job's for this mount. */
  overlay?: Overlay
  /** The FUSE command for this mount (OVLFS_CMD's form: words), e.g. fuse-overlayfs or ovlfs under setpriv. */
  cmd?: string
  /** Merged paths whose xattr names (getfattr -d -m -) and override_stat value (getfattr -n) are read after the ops. */
  xattrs?: string[]
}

export interface MappingJob {
  kind: 'mapping'
  out: string
  scratch: string
  /** One overlay mounted once per entry of `mounts`, one after the other (the upper persists). */
  overlay: Overlay
  mounts: MappingMount[]
}

export interface StatSeen { uid: number, gid: number, nlink: number, mode: number }
export interface XattrSeen { names: string, overrideStat: string }
export interface MappingResult {
  probe: Probe
  mounts: Array<{ results: string[], stats: Record<string, StatSeen | string>, xattrs: Record<string, XattrSeen> }>
}

export type RootlessJob = OpsJob | MappingJob

function attempt (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.error !== undefined) return String(r.error)
  return r.status === 0 ? 'ok' : (r.stderr.trim() || `exit ${String(r.status)}`)
}

function probe (scratch: string): Probe {
  const wh = path.join(scratch, 'probe-whiteout')
  const d = path.join(scratch, 'probe-dir')
  fs.mkdirSync(d)
  const p: Probe = {
    uid: process.getuid?.() ?? -1,
    gid: process.getgid?.() ?? -1,
    uidMap: fs.readFileSync('/proc/self/uid_map', 'utf8'),
    gidMap: fs.readFileSync('/proc/self/gid_map', 'utf8'),
    mknodWhiteout: attempt('mknod', [wh, 'c', '0', '0']),
    trustedXattr: attempt('setfattr', ['-n', 'trusted.overlay.rootless-probe', '-v', 'y', d]),
    userXattr: attempt('setfattr', ['-n', 'user.overlay.rootless-probe', '-v', 'y', d]),
  }
  fs.rmSync(wh, { force: true })
  fs.rmSync(d, { recursive: true, force: true })
  return p
}

async function runOps (job: OpsJob): Promise<OpsResult> {
  const p = probe(job.scratch)
  await mountFuse(job.fuse)
  mountKernel(job.kernel, KERNEL_USERXATTR_OPTS)
  const results = { kernel: [] as string[], fuse: [] as string[] }
  for (const op of job.ops) {
    results.kernel.push(apply(job.kernel.mnt, op))
    results.fuse.push(apply(job.fuse.mnt, op))
  }
  const kernel = snapshotMerged(job.kernel.mnt)
  const fuse = snapshotMerged(job.fuse.mnt)
  const setfacl = (mnt: string): string => {
    const f = path.join(mnt, job.aclProbe)
    fs.writeFileSync(f, '')
    try { return attempt('setfacl', ['-m', 'u:0:r', f]) } finally { fs.unlinkSync(f) }
  }
  const acl = { kernel: setfacl(job.kernel.mnt), fuse: setfacl(job.fuse.mnt) }
  await unmount(job.fuse.mnt)
  await unmount(job.kernel.mnt)
  mountKernel(job.check, KERNEL_USERXATTR_OPTS)
  const kernelOverOvlfsUpper = snapshotMerged(job.check.mnt)
  await unmount(job.check.mnt)
  return { probe: p, results, merged: { kernel, fuse, kernelOverOvlfsUpper }, acl }
}

async function runMapping (job: MappingJob): Promise<MappingResult> {
  const p = probe(job.scratch)
  const mounts: MappingResult['mounts'] = []
  for (const m of job.mounts) {
    const ov = m.overlay ?? job.overlay
    if (m.cmd !== undefined) process.env.OVLFS_CMD = m.cmd
    else delete process.env.OVLFS_CMD
    await mountFuse(ov, m.opts)
    try {
      const results = m.ops.map(op => apply(ov.mnt, op))
      const stats: Record<string, StatSeen | string> = {}
      for (const s of m.stat) {
        try {
          const st = fs.lstatSync(path.join(ov.mnt, s))
          stats[s] = { uid: st.uid, gid: st.gid, nlink: st.nlink, mode: st.mode }
        } catch (e) { stats[s] = (e as { code?: string }).code ?? String(e) }
      }
      const xattrs: Record<string, XattrSeen> = {}
      for (const x of m.xattrs ?? []) {
        const p = path.join(ov.mnt, x)
        const names = spawnSync('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', p], { encoding: 'utf8' })
        xattrs[x] = {
          names: names.status === 0 ? names.stdout.split('\n').filter(l => l !== '' && !l.startsWith('#')).map(l => l.split('=')[0]).join(',') : names.stderr.trim(),
          overrideStat: attempt('getfattr', ['--absolute-names', '-h', '-n', 'user.fuseoverlayfs.override_stat', p]),
        }
      }
      mounts.push({ results, stats, xattrs })
    } finally {
      await unmount(ov.mnt)
    }
  }
  return { probe: p, mounts }
}

async function main (): Promise<void> {
  const jobFile = process.argv[2]
  if (jobFile === undefined) throw new Error('usage: rootless-worker JOB.json')
  const job = JSON.parse(fs.readFileSync(jobFile, 'utf8')) as RootlessJob
  try {
    const result = job.kind === 'ops' ? await runOps(job) : await runMapping(job)
    fs.writeFileSync(job.out, JSON.stringify(result))
  } finally {
    await unmountAll()
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`rootless-worker: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
