// Rootless operation (issue 4): ovlfs mounted by an unprivileged user (nobody, uid 65534) inside
// a user namespace, without CAP_MKNOD in the initial namespace and without the trusted.* xattr
// namespace, compared with the kernel's overlayfs mounted in the same namespace with `userxattr`.
//
// How a run is set up (this process is root; everything after setpriv is not):
//   unshare --mount            a private mount namespace of our own, where
//     mount --bind NODE /dev/fuse   a char device 10,229 owned by nobody stands in for /dev/fuse
//                                   (the host's stays crw------- root: nothing global changes);
//     setpriv --reuid=65534 --regid=65534 --clear-groups
//       unshare --user --map-root-user --mount --pid --fork --kill-child --mount-proc
//         vite-node harness/rootless-worker.ts JOB     mounts, ops, merged snapshots (JSON out)
// libfuse 2 (fuse-native) then mounts /dev/fuse directly with mount(2): FUSE may be mounted in a
// user namespace that owns its mount namespace (Linux >= 4.18); fusermount is not needed, and
// `fusermount -u` (whose setuid bit does not apply there) unmounts as the namespace's root.
// For the id-mapping checks a wider map is needed than one unprivileged user can write itself:
// the worker's namespace is created by nobody and this process writes its uid_map/gid_map, as
// newuidmap/newgidmap do from /etc/subuid for rootless podman.
// The upper layers are read here, as root, on disk: which whiteout form and which opaque marker
// ovlfs wrote, and who owns what it created.
// For xattr_permissions the daemon runs under `setpriv --bounding-set=-chown` (it cannot chown for
// real, as a rootless user without an id range), and Debian's fuse-overlayfs (1.10) is mounted the
// same way, same ops, for comparison.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, symlink, type LayerSet } from './harness/layers'
import { mountFuse, prepareSide, tempDir, unmount, unmountAll, type Overlay } from './harness/mounts'
import { o, type Op } from './harness/ops'
import { diff, readXattrs, snapshotUpper } from './harness/snapshot'
import type { MappingJob, MappingResult, OpsJob, OpsResult, RootlessJob } from './harness/rootless-worker'

afterAll(unmountAll)

const REPO = path.resolve(__dirname, '..')
const WORKER = path.join(__dirname, 'harness', 'rootless-worker.ts')
const VITE_NODE = path.join(REPO, 'node_modules', 'vite-node', 'vite-node.mjs')
const NOBODY = 65534
/** The wider map of the id-mapping checks: namespace id n >= 1 is host id HOST_BASE + n. */
const HOST_BASE = 300000

/** A root dir of this test, traversable by nobody, with nobody's own `ns` dir inside. */
function newRoot (): { root: string, ns: string, node: string } {
  const root = tempDir('ovlfs-rootless-')
  fs.chmodSync(root, 0o755)
  const ns = path.join(root, 'ns')
  fs.mkdirSync(ns)
  fs.chownSync(ns, NOBODY, NOBODY)
  // The stand-in for /dev/fuse, bind-mounted over it in the private mount namespace only.
  const devDir = path.join(root, 'dev')
  fs.mkdirSync(devDir, { mode: 0o711 })
  const node = path.join(devDir, 'fuse')
  spawnSyncChecked('mknod', ['-m', '0600', node, 'c', '10', '229'])
  fs.chownSync(node, NOBODY, NOBODY)
  return { root, ns, node }
}

function spawnSyncChecked (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? String(r.status)}): ${r.stderr}`)
  return r.stdout
}

/** chown -R (no dereference) to nobody: the user owns its layers, as in a rootless setup. */
function giveToNobody (p: string): void {
  spawnSyncChecked('chown', ['-R', '-h', `${NOBODY}:${NOBODY}`, p])
}

/**
 * Run one job in the namespaces described at the top and return its result. `maps` given: the
 * user namespace is created without a map and this process writes these maps before the worker
 * starts (newuidmap's part); otherwise unshare maps nobody to root itself.
 */
async function inUserns<R> (base: { ns: string, node: string }, job: RootlessJob, maps?: { uid: string, gid: string }): Promise<R> {
  const jobFile = path.join(base.ns, `job-${job.kind}.json`)
  fs.writeFileSync(jobFile, JSON.stringify(job))
  fs.chmodSync(jobFile, 0o644)
  const worker = [process.execPath, VITE_NODE, WORKER, jobFile]
  const inner = maps === undefined
    ? ['unshare', '--user', '--map-root-user', '--mount', '--pid', '--fork', '--kill-child', '--mount-proc', ...worker]
    : ['unshare', '--user', '--mount', 'sh', '-c', 'echo userns-ready; read go; exec unshare --pid --fork --kill-child --mount-proc "$@"', 'sh', ...worker]
  // Our private mount namespace starts with copies of every mount of the host, other tests'
  // FUSE and overlay mounts included; drop those copies so that they do not outlive the originals.
  const outer = 'set -e; mount --bind "$1" /dev/fuse; shift; ' +
    'for m in $(findmnt -rn -o TARGET -t fuse,fuse.ovlfs,fuse.fuse-overlayfs,overlay); do umount -l "$m" 2>/dev/null || true; done; ' +
    'exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"'
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', outer, 'sh', base.node, ...inner], {
    cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
  })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  let mapped = maps === undefined
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
    if (!mapped && maps !== undefined && stdout.includes('userns-ready\n')) {
      mapped = true
      try {
        // child.pid is the pid of the sh in the new user namespace: every step before it exec'd.
        fs.writeFileSync(`/proc/${child.pid}/uid_map`, maps.uid)
        fs.writeFileSync(`/proc/${child.pid}/gid_map`, maps.gid)
        child.stdin.write('go\n')
      } catch (e) {
        stderr += `writing the id maps failed: ${String(e)}\n`
        child.kill('SIGKILL')
      }
    }
  })
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve('timeout after 100s') }, 100_000)
    child.on('error', (e) => { clearTimeout(timer); resolve(String(e)) })
    child.on('exit', (c, s) => { clearTimeout(timer); resolve(c ?? String(s)) })
  })
  if (code !== 0 || !fs.existsSync(job.out)) {
    throw new Error(`the unprivileged run in a user namespace failed (exit ${code}); the test needs user namespaces, ` +
      `FUSE in them and overlayfs with userxattr.\nstdout: ${stdout}\nstderr: ${stderr}`)
  }
  return JSON.parse(fs.readFileSync(job.out, 'utf8')) as R
}

// ---------------------------------------------------------------- 1 + 2: ops, markers, kernel

const LAYERS: LayerSet = {
  lowers: [
    {
      f: file('lower f\n'),
      'd/a': file('a\n'),
      'd/c': file('c\n'),
      'gone/x': file('x\n'),
      'gone/sub/y': file('y\n'),
      'keep/k': file('k\n'),
      'keep/l': symlink('k'),
      'olddir/q': file('q\n'),
    },
    {
      f: file('bottom f\n'),
      only1: file('from lower1\n'),
      'd/z': file('z\n'),
      'gone/w': file('w\n'),
    },
  ],
}

const OPS: Op[] = [
  o.append('f', 'appended\n'), // copy-up of a lower file
  o.chmod('d/c', 0o600), // copy-up of metadata, under a merged dir
  o.unlink('d/a'), // whiteout of a lower file
  o.unlink('only1'), // whiteout of a file of the second lower
  o.rmdir('d'), // ENOTEMPTY: d/c, d/z are still there
  o.unlink('gone/x'),
  o.unlink('gone/w'),
  o.unlink('gone/sub/y'),
  o.rmdir('gone/sub'),
  o.rmdir('gone'), // whiteout of a lower directory (merged over two lowers)
  o.mkdir('gone'), // a new directory over it: opaque
  o.unlink('olddir/q'),
  o.rmdir('olddir'), // whiteout of a lower directory that stays deleted
  o.create('gone/new', 'new\n'),
  o.rename('keep/k', 'keep/k2'), // rename of a lower file: copy-up and whiteout
  o.rename('f', 'f-renamed'), // rename of a copied-up file
  o.mkdir('newdir'),
  o.create('newdir/n', 'n\n'),
  o.rename('newdir', 'newdir2'), // rename of an upper-only directory
  o.symlink('f-renamed', 'ln'),
  o.setxattr('d/c', 'user.note', 'v'), // a user.* xattr of the caller's own, beside user.overlay.*
  o.link('gone/new', 'gone/new-link'),
  o.truncate('keep/k2', 1),
  o.read('f-renamed'),
]

function side (root: string, base: string, name: string): Overlay {
  const s = prepareSide(base, path.join(root, name), LAYERS.lowers.length)
  giveToNobody(path.join(root, name))
  return s
}

describe('rootless: ovlfs as an unprivileged user in a user namespace', () => {
  it('copy-up, whiteouts, opaque dir, rename: same merged view and upper as the kernel (userxattr); markers in user.*; the kernel reads ovlfs\'s upper', async () => {
    const base = newRoot()
    const layers = path.join(base.root, 'layers')
    buildLayers(layers, LAYERS)
    const fuse = side(base.ns, layers, 'fuse')
    const kernel = side(base.ns, layers, 'kernel')
    const check: Overlay = { lowers: fuse.lowers, upper: fuse.upper, work: path.join(base.ns, 'check-work'), mnt: path.join(base.ns, 'check-mnt') }
    const scratch = path.join(base.ns, 'scratch')
    for (const d of [check.work, check.mnt, scratch]) { fs.mkdirSync(d); fs.chownSync(d, NOBODY, NOBODY) }
    const job: OpsJob = { kind: 'ops', out: path.join(base.ns, 'out-ops.json'), scratch, fuse, kernel, check, ops: OPS, aclProbe: 'acl-probe' }
    const r = await inUserns<OpsResult>(base, job)

    // Who we were: root of a namespace whose only id is nobody; trusted.* out of reach.
    expect(r.probe.uid).toBe(0)
    expect(r.probe.uidMap.trim().split(/\s+/)).toEqual(['0', String(NOBODY), '1'])
    expect(r.probe.trustedXattr).not.toBe('ok')
    expect(r.probe.userXattr).toBe('ok')

    // Same results, same merged view, same upper as the kernel.
    expect(r.results.fuse).toEqual(r.results.kernel)
    expect(r.results.kernel[4]).toBe('ENOTEMPTY')
    expect(r.results.fuse.filter(x => !x.startsWith('ok'))).toEqual(['ENOTEMPTY'])
    expect(diff(r.merged.kernel, r.merged.fuse)).toEqual([])
    expect(r.merged.fuse.problems).toEqual([])
    const merged = Object.keys(r.merged.fuse.entries).sort()
    expect(merged).toEqual(['.', 'd', 'd/c', 'd/z', 'f-renamed', 'gone', 'gone/new', 'gone/new-link', 'keep', 'keep/k2', 'keep/l', 'ln', 'newdir2', 'newdir2/n'])
    // In the namespace everything is root's; the mount shows it so.
    expect(r.merged.fuse.entries['gone/new']).toMatchObject({ uid: 0, gid: 0, nlink: 2, sameInode: ['gone/new-link'] })
    expect(r.merged.fuse.entries['d/c']?.xattrs).toEqual({ 'user.note': '0x76' })
    const upperFuse = snapshotUpper(fuse.upper)
    const upperKernel = snapshotUpper(kernel.upper)
    expect(diff(upperKernel, upperFuse)).toEqual([])

    // The markers ovlfs wrote, on disk. Whiteouts: the kernel's char 0/0 when the user may
    // mknod it (Linux >= 5.8 lets anyone create a whiteout), else the `.wh.` files.
    const whiteouts = ['d/a', 'only1', 'olddir', 'keep/k', 'f']
    if (r.probe.mknodWhiteout === 'ok') {
      for (const w of whiteouts) expect(upperFuse.entries[w], w).toEqual({ type: 'whiteout' })
    } else {
      for (const w of whiteouts) {
        expect(upperFuse.entries[path.join(path.dirname(w), '.wh.' + path.basename(w))], w).toMatchObject({ type: 'file', size: 0 })
      }
    }
    // gone: deleted then made again: opaque, with the user.* marker (trusted.* is not writable).
    expect(upperFuse.entries.gone).toMatchObject({ type: 'dir', xattrs: { 'user.overlay.opaque': '0x79' } })
    const allXattrs = [...readXattrs(fuse.upper).values()].flatMap(x => Object.keys(x))
    expect(allXattrs.filter(n => n.startsWith('trusted.'))).toEqual([])
    // What the unprivileged daemon created is nobody's on the host.
    for (const p of ['gone', 'gone/new', 'newdir2/n', 'f-renamed']) {
      expect(fs.lstatSync(path.join(fuse.upper, p)).uid, p).toBe(NOBODY)
    }

    // The kernel (userxattr) over ovlfs's upper shows what ovlfs showed.
    expect(diff(r.merged.fuse, r.merged.kernelOverOvlfsUpper, ['ovlfs', 'kernel over ovlfs upper'])).toEqual([])

    // POSIX ACLs through the mount in a user namespace: libfuse 2 cannot ask for FUSE_POSIX_ACL,
    // and without it the kernel refuses ACL xattrs on a FUSE mount of a user namespace itself
    // (as for fuse-overlayfs with noacl there); the kernel's overlayfs passes them on.
    expect(r.acl.kernel).toBe('ok')
    expect(r.acl.fuse).toMatch(/Operation not supported/)
  })

  // ---------------------------------------------------------------- 3: id mapping

  it('uidmapping=/gidmapping=, squash_to_root, squash_to_uid=/gid=, static_nlink seen by the unprivileged user', async () => {
    const base = newRoot()
    const host = (nsId: number): number => nsId === 0 ? NOBODY : HOST_BASE + nsId
    const own = (nsId: number) => ({ uid: host(nsId), gid: host(nsId) })
    const ov = path.join(base.ns, 'ov')
    buildLayers(ov, {
      lowers: [{
        a0: file('0\n', own(0)),
        a1000: file('1000\n', own(1000)),
        a2000: file('2000\n', own(2000)),
        'dd/sub1': dir(own(0)),
        'dd/sub2': dir(own(0)),
        dd: dir(own(0)),
      }],
    })
    const overlay: Overlay = { lowers: [path.join(ov, 'lower0')], upper: path.join(ov, 'upper'), work: path.join(ov, 'work'), mnt: path.join(ov, 'mnt') }
    const scratch = path.join(base.ns, 'scratch')
    for (const d of [overlay.work, overlay.mnt, scratch]) fs.mkdirSync(d)
    for (const d of [ov, overlay.upper, overlay.work, overlay.mnt, scratch]) fs.chownSync(d, NOBODY, NOBODY)
    fs.lchownSync(path.join(ov, 'lower0'), NOBODY, NOBODY)
    const stat = ['a0', 'a1000', 'a2000', 'dd']
    const MAP = 'uidmapping=0:0:1:1000:1500:10,gidmapping=0:0:1:1000:1500:10'
    const job: MappingJob = {
      kind: 'mapping',
      out: path.join(base.ns, 'out-mapping.json'),
      scratch,
      overlay,
      mounts: [
        { opts: '', ops: [], stat },
        { opts: MAP, ops: [o.create('made', 'm\n'), o.chown('a0', 1505, 1505)], stat: [...stat, 'made'] },
        { opts: 'squash_to_root', ops: [], stat },
        { opts: 'squash_to_uid=7,squash_to_gid=8,static_nlink', ops: [], stat },
      ],
    }
    const maps = { uid: `0 ${NOBODY} 1\n1 ${HOST_BASE + 1} 65535\n`, gid: `0 ${NOBODY} 1\n1 ${HOST_BASE + 1} 65535\n` }
    const r = await inUserns<MappingResult>(base, job, maps)
    expect(r.probe.uid).toBe(0)
    expect(r.probe.uidMap.trim().split(/\s+/)).toEqual(['0', String(NOBODY), '1', '1', String(HOST_BASE + 1), '65535'])
    const [plain, mapped, squashRoot, squashIds] = r.mounts
    const ids = (s: MappingResult['mounts'][number] | undefined, p: string): string => {
      const st = s?.stats[p]
      return typeof st === 'object' ? `${st.uid}:${st.gid}` : String(st)
    }
    // No options: the layer's owners as the namespace sees them.
    expect(stat.map(p => ids(plain, p))).toEqual(['0:0', '1000:1000', '2000:2000', '0:0'])
    // host 0 -> 0, host 1000.. -> 1500..; 2000 is outside every range: the overflow id.
    expect(mapped?.results).toEqual(['ok', 'ok'])
    expect(['a0', 'a1000', 'a2000', 'made'].map(p => ids(mapped, p))).toEqual(['1505:1505', '1500:1500', '65534:65534', '0:0'])
    // Written through the map: merged 1505 is namespace id 1005, host HOST_BASE + 1005 on disk;
    // the new file belongs to the caller (namespace root = nobody on the host).
    expect(fs.lstatSync(path.join(overlay.upper, 'a0'))).toMatchObject({ uid: host(1005), gid: host(1005) })
    expect(fs.lstatSync(path.join(overlay.upper, 'made'))).toMatchObject({ uid: NOBODY, gid: NOBODY })
    // squash_to_root: everything 0:0; squash_to_uid/gid win; static_nlink: directories 1.
    expect(stat.map(p => ids(squashRoot, p))).toEqual(['0:0', '0:0', '0:0', '0:0'])
    expect(stat.map(p => ids(squashIds, p))).toEqual(['7:8', '7:8', '7:8', '7:8'])
    const nlink = (s: MappingResult['mounts'][number] | undefined): unknown => (s?.stats.dd as { nlink?: number } | undefined)?.nlink
    expect(nlink(plain)).toBe(4)
    expect(nlink(squashIds)).toBe(1)
  })
})

// ---------------------------------------------------------------- 4: xattr_permissions

/** The layers of the xattr_permissions checks: everything nobody's on the host, root's in the namespace. */
const XPERM_LAYERS: LayerSet = { lowers: [{ lf: file('lf\n'), lg: file('lg\n'), lh: file('lh\n'), 'ld/x': file('x\n'), ld: dir() }] }
const XPERM = 'xattr_permissions=2'
const OVERRIDE = 'user.fuseoverlayfs.override_stat'
/** The daemon without CAP_CHOWN: it cannot chown for real, as a rootless user without a full id range. */
const NO_CHOWN = 'setpriv --bounding-set=-chown --'
const XPERM_OPS: Op[] = [
  o.chown('lf', 1000, 1000), o.chmod('lf', 0o640), // a lower file: copy-up, then chown, then chmod
  o.chmod('lg', 0o600), o.chown('lg', 1001, 1002), // the other order
  o.create('new', 'n\n'), o.chown('new', 1003, 1003), o.chmod('new', 0o750), // made through the mount
  o.mkdir('nd'), o.chown('nd', 1004, 1005),
  o.chown('ld', 1006, 1006), o.chown('ld/x', 1007, 1007), // a lower directory and a file in it
]
const XPERM_STAT = ['', 'lf', 'lg', 'new', 'nd', 'ld', 'ld/x']
/** The override xattr through the mount: not the caller's to set or remove. */
const HIDDEN_OPS: Op[] = [o.chown('lh', 1010, 1010), o.setxattr('lh', OVERRIDE, '0:0:777'), o.removexattr('lh', OVERRIDE), o.setxattr('lh', 'user.mine', 'v')]
/** On the stacked mount: the first mount's upper is now a lower layer; a write and a chmod copy its objects up. */
const STACKED_OPS: Op[] = [o.append('lf', 'more\n'), o.chmod('lg', 0o604), o.append('ld/x', 'y\n')]

/** The on-disk override of `p`, read here as root; the error text when there is none. */
function diskOverride (p: string): string {
  return tryRun('getfattr', ['--absolute-names', '-h', '--only-values', '-n', OVERRIDE, p])
}

describe('rootless: xattr_permissions=2', () => {
  it('chown/chmod through the mount succeed where the daemon cannot chown, show in stat, persist across remount and copy-up; fuse-overlayfs 1.10 in the same setup', async () => {
    const base = newRoot()
    const layers = path.join(base.root, 'xlayers')
    buildLayers(layers, XPERM_LAYERS)
    const side = (name: string): Overlay => {
      const s = prepareSide(layers, path.join(base.ns, name), 1)
      giveToNobody(path.join(base.ns, name))
      return s
    }
    /** A new overlay whose only lower layer is `under`'s upper and lower stacked. */
    const stacked = (name: string, under: Overlay): Overlay => {
      const root = path.join(base.ns, name)
      const s: Overlay = { lowers: [under.upper, ...under.lowers], upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt') }
      for (const d of [root, s.upper, s.work, s.mnt]) { fs.mkdirSync(d); fs.chownSync(d, NOBODY, NOBODY) }
      return s
    }
    const control = side('control')
    const ovl = side('ovlfs')
    const fo = side('fuse-overlayfs')
    const ovlStack = stacked('ovlfs-stacked', ovl)
    const foStack = stacked('fo-stacked', fo)
    const scratch = path.join(base.ns, 'scratch')
    fs.mkdirSync(scratch)
    fs.chownSync(scratch, NOBODY, NOBODY)
    const ovlfsCmd = `${NO_CHOWN} ${process.execPath} ${path.join(REPO, 'dist', 'cli', 'main.js')}`
    const foCmd = `${NO_CHOWN} fuse-overlayfs`
    const job: MappingJob = {
      kind: 'mapping',
      out: path.join(base.ns, 'out-xperm.json'),
      scratch,
      overlay: control,
      mounts: [
        { opts: '', cmd: ovlfsCmd, ops: [o.chown('lf', 1000, 1000), o.chmod('lg', 0o600)], stat: ['lf', 'lg'] },
        { overlay: ovl, opts: XPERM, cmd: ovlfsCmd, ops: [...XPERM_OPS, ...HIDDEN_OPS], stat: [...XPERM_STAT, 'lh'], xattrs: ['lh', ''] },
        { overlay: ovl, opts: XPERM, cmd: ovlfsCmd, ops: [], stat: XPERM_STAT },
        { overlay: ovlStack, opts: XPERM, cmd: ovlfsCmd, ops: STACKED_OPS, stat: XPERM_STAT },
        { overlay: fo, opts: XPERM, cmd: foCmd, ops: [...XPERM_OPS, ...HIDDEN_OPS], stat: [...XPERM_STAT, 'lh'], xattrs: ['lh', ''] },
        { overlay: fo, opts: XPERM, cmd: foCmd, ops: [], stat: XPERM_STAT },
        { overlay: foStack, opts: XPERM, cmd: foCmd, ops: STACKED_OPS, stat: XPERM_STAT },
      ],
    }
    const maps = { uid: `0 ${NOBODY} 1\n1 ${HOST_BASE + 1} 65535\n`, gid: `0 ${NOBODY} 1\n1 ${HOST_BASE + 1} 65535\n` }
    const r = await inUserns<MappingResult>(base, job, maps)
    const [plain, first, remount, onTop, foFirst, foRemount, foOnTop] = r.mounts
    const seen = (m: MappingResult['mounts'][number] | undefined): Record<string, string> =>
      Object.fromEntries(XPERM_STAT.map(p => {
        const st = m?.stats[p]
        return [p, typeof st === 'object' ? `${st.uid}:${st.gid}:${st.mode.toString(8)}` : String(st)]
      }))

    // Without the option the daemon's chown fails (EPERM); chmod of its own copy works.
    expect(plain?.results).toEqual(['EPERM', 'ok'])

    // With it: every op succeeds and stat shows what was asked; the root shows 0:0 and the upper root's mode.
    const want = {
      '': '0:0:40755', lf: '1000:1000:100640', lg: '1001:1002:100600', new: '1003:1003:100750',
      nd: '1004:1005:40755', ld: '1006:1006:40755', 'ld/x': '1007:1007:100644',
    }
    expect(first?.results).toEqual([...XPERM_OPS.map(() => 'ok'), 'ok', 'EPERM', 'EPERM', 'ok'])
    expect(seen(first)).toEqual(want)
    // The override xattr is hidden through the mount (the caller's own xattr is listed), and
    // not the caller's to set or remove: lh keeps its chown.
    expect(first?.xattrs.lh?.names).toBe('user.mine')
    expect(first?.xattrs.lh?.overrideStat).toMatch(/No such attribute/)
    expect(first?.xattrs['']?.names).toBe('')
    expect(first?.stats.lh).toMatchObject({ uid: 1010, gid: 1010 })
    // On disk: the objects stay the daemon's (nobody on the host); the xattr holds ids as the daemon sees them.
    expect(fs.lstatSync(path.join(ovl.upper, 'lf')).uid).toBe(NOBODY)
    expect(diskOverride(path.join(ovl.upper, 'lf'))).toBe('1000:1000:100640')
    expect(diskOverride(path.join(ovl.upper, 'new'))).toBe('1003:1003:100750')
    expect(diskOverride(ovl.upper)).toBe('0:0:40755')

    // A remount shows the same.
    expect(seen(remount)).toEqual(want)
    // Stacked: the upper (its root carries the xattr) is now a lower layer, whose values count, and
    // the copy-ups of lf, lg and ld/x carry them (lg with its new mode); the new upper root copies its root's.
    expect(onTop?.results).toEqual(STACKED_OPS.map(() => 'ok'))
    expect(seen(onTop)).toEqual({ ...want, lg: '1001:1002:100604' })
    expect(diskOverride(path.join(ovlStack.upper, 'lf'))).toBe('1000:1000:100640')
    expect(diskOverride(path.join(ovlStack.upper, 'ld', 'x'))).toBe('1007:1007:100644')
    expect(diskOverride(ovlStack.upper)).toBe('0:0:40755')

    // fuse-overlayfs 1.10 (Debian) in the same setup, same ops: every op succeeds, and it agrees except
    // where 1.10 has the bugs 1.14 fixed. Its chmod rewrites the owner from the real one (0:0 here),
    // so a chown followed by a chmod (lf, new) loses the chown; chmod then chown (lg) is kept.
    // 1.10 hides the name as ovlfs does, but lets removexattr through, which drops lh's chown from
    // the upper layer (stat goes on showing it from the kernel's cache: 1.10's attribute timeout is long).
    expect(foFirst?.results).toEqual([...XPERM_OPS.map(() => 'ok'), 'ok', 'EPERM', 'ok', 'ok'])
    expect(foFirst?.xattrs.lh?.names).toBe('user.mine')
    expect(foFirst?.xattrs.lh?.overrideStat).toMatch(/No such attribute/)
    expect(diskOverride(path.join(fo.upper, 'lh'))).toMatch(/No such attribute/)
    expect(diskOverride(path.join(ovl.upper, 'lh'))).toBe('1010:1010:100644')
    const foWant = { ...want, lf: '0:0:100640', new: '0:0:100750' }
    expect(seen(foFirst)).toEqual(foWant)
    expect(diskOverride(path.join(fo.upper, 'lf'))).toBe('0:0:100640')
    expect(diskOverride(fo.upper)).toBe('0:0:40755')
    expect(seen(foRemount)).toEqual(foWant)
    // Stacked, 1.10 honours the lower layer's values too (new and nd, not copied up, show theirs), but
    // its copy-up keeps the ids and records the real mode|0755 (lf, ld/x: 100755), and its chmod of lg
    // rewrites the owner from the real one again.
    expect(foOnTop?.results).toEqual(STACKED_OPS.map(() => 'ok'))
    expect(seen(foOnTop)).toEqual({ ...foWant, lf: '0:0:100755', lg: '0:0:100604', 'ld/x': '1007:1007:100755' })
  })
})

// ---------------------------------------------------------------- 5: noacl on a host mount

describe('noacl (host mount, as root)', () => {
  it('POSIX ACLs pass through without noacl; with noacl getxattr/setfacl of them get EOPNOTSUPP and the layer keeps its ACL', async () => {
    const root = tempDir('ovlfs-noacl-')
    const layers = path.join(root, 'layers')
    buildLayers(layers, { lowers: [{ f: file('f\n'), g: file('g\n') }] })
    spawnSyncChecked('setfacl', ['-m', 'u:1234:r', path.join(layers, 'lower0', 'f')])
    for (const [name, opts] of [['plain', ''], ['noacl', 'noacl']] as const) {
      const s = prepareSide(layers, path.join(root, name), 1)
      await mountFuse(s, opts)
      try {
        const get = tryRun('getfattr', ['-n', 'system.posix_acl_access', path.join(s.mnt, 'f')])
        const set = tryRun('setfacl', ['-m', 'u:4321:r', path.join(s.mnt, 'g')])
        if (name === 'plain') {
          expect(get).toContain('system.posix_acl_access=')
          expect(set).toBe('ok')
        } else {
          expect(get).toMatch(/Operation not supported/)
          expect(set).toMatch(/Operation not supported/)
        }
      } finally {
        await unmount(s.mnt)
      }
      if (name === 'noacl') {
        expect(fs.existsSync(path.join(s.upper, 'g')), 'a refused setfacl copies nothing up').toBe(false)
        expect(tryRun('getfacl', ['-c', path.join(s.lowers[0]!, 'f')])).toContain('user:1234:r--')
      }
    }
  })
})

function tryRun (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return r.status === 0 ? (r.stdout === '' ? 'ok' : r.stdout) : r.stderr
}
