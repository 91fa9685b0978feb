// `ovlfs layers` and `ovlfs mount-image` against a real Docker engine (issue 3, "How it is tested").
//
// beforeAll starts a private, offline dockerd (Debian's docker.io 20.10, overlay2; see
// harness/dockerd.ts and scripts/dockerd-env.sh), imports a busybox rootfs, builds images whose
// layers exercise overlay semantics, and makes containers. Then, for every image and container:
//   - `ovlfs layers --json REF`, by each name, the full ID (with and without sha256:) and ID
//     prefixes, equals `docker inspect` (GraphDriver.Data, Id, RootFS.Layers) and `docker history`
//     (sizes and instructions); the table has one row per layer and the total;
//   - the tree `ovlfs mount-image REF` mounts equals a read-only kernel overlayfs mount of the
//     same directories (harness/snapshot.ts: type, mode, owner, size, content hash, link target,
//     rdev, xattrs, hard-link groups, old mtimes);
//   - for containers also what `docker export` produces, with the exceptions listed at
//     exportDiff, and the container's upper dir is left exactly as it was;
//   - what each Dockerfile step and container script did is visible (EXPECTED), overlay-private
//     xattrs are not, and images mount read-only;
//   - a running container is refused without --force and mounted with it;
//   - refs docker cannot resolve make `ovlfs layers` exit 1 with one line.
// Docker's own facts here (20.10, kernel without redirect_dir): a directory rename in a RUN step
// is a copy plus a whiteout of the old name (EXDEV), rm + mkdir of a lower directory gives an
// opaque directory, and layer tars keep whole-second mtimes and only security.capability xattrs.
// No image registry is reachable and none is needed. A missing docker.io, or a dockerd that
// does not come up, fails every test here with a message saying so (nothing is skipped).
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliCommand, errnoOf, expectedFstype, killAllRuns, mountAt, runCli, waitForMount, type Run } from './harness/cli'
import { startDockerd, type PrivateDockerd } from './harness/dockerd'
import { KERNEL_OPTS, unmount } from './harness/mounts'
import { diff, readXattrs, snapshotMerged, type Entry, type Snapshot } from './harness/snapshot'

// ------------------------------------------------------------------ what docker says

interface ImageInspect {
  Id: string
  RepoTags: string[]
  RepoDigests: string[]
  Size: number
  GraphDriver: { Name: string, Data: null | { LowerDir?: string, UpperDir: string, WorkDir: string, MergedDir: string } }
  RootFS: { Type: string, Layers?: string[] }
}

interface ContainerInspect {
  Id: string
  Name: string
  Image: string
  State: { Running: boolean, Status: string }
  GraphDriver: { Name: string, Data: { LowerDir: string, UpperDir: string, WorkDir: string, MergedDir: string } }
}

interface HistoryEntry { ID: string, CreatedBy: string, Size: string, Comment: string }

interface LayersJson {
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  image: { id: string, refs: string[] }
  layers: Array<{ chainId: string, diffId: string, cacheId: string, size: number, createdBy: string }>
}

// ------------------------------------------------------------------ the images and containers

interface ImageCase {
  key: string
  /** The name it is built/imported as. */
  name: string
  /** More names given with `docker tag`. */
  tags?: string[]
  /** Other spellings of those names that must resolve to it (normalisation). */
  aliases?: string[]
  expectLayers: number
  /** Its tree is empty (only the root directory). */
  emptyTree?: boolean
}

const IMAGES: ImageCase[] = [
  { key: 'base', name: 'ovlfs-test/base:1', tags: ['busybox-local'], aliases: ['busybox-local:latest', 'library/busybox-local', 'docker.io/library/busybox-local:latest', 'index.docker.io/library/busybox-local'], expectLayers: 1 },
  { key: 'labels', name: 'ovlfs-test/labels:1', expectLayers: 1 },
  { key: 'empty-import', name: 'ovlfs-test/empty-import:1', expectLayers: 1, emptyTree: true },
  { key: 'zero', name: 'ovlfs-test/zero:1', expectLayers: 0, emptyTree: true },
  { key: 'app', name: 'ovlfs-test/app:1', tags: ['registry.example.com:5000/team/app:1.2', 'user/app'], aliases: ['user/app:latest', 'docker.io/user/app', 'docker.io/user/app:latest'], expectLayers: 13 },
  { key: 'app2', name: 'ovlfs-test/app2:1', expectLayers: 14 },
  { key: 'many', name: 'ovlfs-test/many:20', expectLayers: 21 },
  // `docker commit` of the container "changed": its upper dir, whiteouts and all, becomes a layer
  { key: 'committed', name: 'ovlfs-test/committed:1', expectLayers: 14 },
]

interface ContainerCase {
  name: string
  image: string
  /** Never started (docker create) when absent; otherwise the command `docker run` runs to completion. */
  script?: string
  cmd?: string[]
}

const CHANGED_SCRIPT = [
  'set -e',
  'echo hello > /new-file',
  'echo more >> /data/one.txt',
  'rm /opt/app/a.txt',
  'rm -r /opt/app/newdir',
  'mkdir -p /var/made/deep/dir && echo deep > /var/made/deep/dir/f',
  'chmod 700 /opt/app/recreate',
  'chown 1000:1000 /etc/passwd',
  'ln -s /data /data-link',
  'rm -rf /opt/base && mkdir /opt/base && echo fresh > /opt/base/f',
  'mv /opt/app/keep /opt/app/kept',
  "touch -d '2004-01-02 03:04:05' /opt/app/mode.txt",
  'rm /data/big.bin',
  'mkfifo /made-fifo',
].join('\n')

const STOPPED: ContainerCase[] = [
  { name: 'fresh', image: 'ovlfs-test/app:1' },
  { name: 'changed', image: 'ovlfs-test/app:1', script: CHANGED_SCRIPT },
  // a name hard-linked twice in the base layer loses one name: the other keeps the lower inode's nlink
  { name: 'changed-base', image: 'ovlfs-test/labels:1', script: 'set -e\nrm /opt/base/hl-b\necho x >> /opt/base/keep.txt\nrm /etc/old-dir/old.txt\nchmod 0751 /opt/base\n' },
  { name: 'changed-many', image: 'ovlfs-test/many:20', script: 'set -e\nrm -r /layers/dir\nrm /layers/f20\necho 21 > /layers/f21\n' },
  { name: 'zero-c', image: 'ovlfs-test/zero:1', cmd: ['/nothing-to-run'] },
  // its image is deleted afterwards (docker rmi -f): the layers stay, the image config is gone
  { name: 'orphan', image: 'ovlfs-test/doomed:1', script: 'echo orphan > /orphan' },
]

/** docker inspect of ovlfs-test/doomed:1, taken before it was deleted. */
let doomedImage: ImageInspect | undefined

const RUNNING = { name: 'running', image: 'ovlfs-test/app:1' }

/** A stopped container that the test edits through `ovlfs mount-image` (read-write), for docker to see. */
const EDITED = {
  name: 'edited',
  image: 'ovlfs-test/app:1',
  // what `docker start -a` prints afterwards: docker's kernel overlay on the upper dir ovlfs wrote
  script: 'cat /edited-new /data/one.txt /opt/base/owned-1000 && ls /opt/app/recreate && ls /var/edited && stat -c "%u:%g %a" /opt/base/owned-1000 && ' +
    // newdir was renamed to moved through ovlfs (a redirect); docker's kernel overlay follows it
    '[ ! -e /opt/app/a.txt ] && [ ! -e /opt/app/suid.sh ] && [ ! -e /opt/app/newdir ] && [ -L /opt/app/moved/link ] && [ -f /opt/app/moved/sub/f2 ] && echo done',
}

/**
 * Where a `docker export` tree legitimately differs from the merged view of the container's
 * layers, and why (every other field of every path must be equal):
 *   - the root directory itself ('.'): docker export writes no entry for it, so the extracted
 *     root has the metadata of the temp dir it was extracted into;
 *   - nlink, only where the export's count is lower: overlayfs (the kernel's, and ovlfs) reports
 *     the link count of the layer inode a name comes from, which still counts names that a layer
 *     above has deleted (changed: a.txt removed, a-hardlink keeps nlink 2; changed-base: hl-b
 *     removed, hl-a keeps 2), while tar counts only the names it extracted. Which names share an
 *     inode (sameInode) is still compared, and nlink is compared exactly with the kernel's mount.
 *   - xattrs other than security.capability: docker's tar writer (pkg/archive) records only that
 *     one, so user.test on opt/base/xattrs (from the imported base layer) is not exported.
 * Nothing else is excluded: /.dockerenv, /etc/hosts, /etc/hostname, /etc/resolv.conf, /etc/mtab,
 * /dev, /proc and /sys come from the init layer and are in both (a stopped container has nothing
 * mounted over them).
 */
function exportDiff (exported: Snapshot, ovl: Snapshot): string[] {
  const adjust = (s: Snapshot, other: Snapshot, isExport: boolean): Snapshot => {
    const entries: Record<string, Entry> = {}
    for (const [p, e] of Object.entries(s.entries)) {
      if (p === '.') continue
      const o = other.entries[p]
      const exportNlink = isExport ? e.nlink : o?.nlink
      const mountNlink = isExport ? o?.nlink : e.nlink
      let kept: Entry = e
      if (exportNlink !== undefined && mountNlink !== undefined && exportNlink < mountNlink) {
        const { nlink: _nlink, ...rest } = kept
        kept = rest
      }
      const cap = kept.xattrs?.['security.capability']
      const { xattrs: _xattrs, ...rest } = kept
      entries[p] = cap === undefined ? rest : { ...rest, xattrs: { 'security.capability': cap } }
    }
    return { entries, problems: s.problems }
  }
  return diff(adjust(exported, ovl, true), adjust(ovl, exported, false), ['docker export', 'ovlfs'])
}

/**
 * What the Dockerfiles and container scripts must have produced, checked on the ovlfs mount (the
 * comparisons with the kernel and docker export then cover everything else). null: absent.
 */
const OLD = new Date('2005-03-04T05:06:07Z')
/** security.capability v2: cap_net_raw permitted and effective. */
const CAP_NET_RAW = '0x0100000200200000000000000000000000000000'
type Expected = Record<string, Partial<Entry> | null>
const secs = (iso: string): string => String(BigInt(Date.parse(iso) / 1000) * 1_000_000_000n)

const EXPECTED: Record<string, Expected> = {
  base: {
    'opt/base/hl2': { type: 'file', nlink: 2, sameInode: ['opt/base/hl1'] },
    'opt/base/null': { type: 'chr', rdev: '1:3' },
    'opt/base/fifo': { type: 'fifo' },
    'opt/base/setuid': { mode: '4755' },
    'opt/base/setgid-dir': { type: 'dir', mode: '2775' },
    'opt/base/sticky': { type: 'dir', mode: '1777' },
    'opt/base/owned-1234': { uid: 1234, gid: 5678, mode: '0640' },
    'opt/base/sym-rel': { type: 'symlink', target: 'keep.txt', mtime: secs('2005-03-04T05:06:07Z') },
    'opt/base/sym-dangling': { type: 'symlink', target: 'does/not/exist' },
    'opt/base/sp ace & ünï:code,x.txt': { type: 'file', size: 9 },
    'etc/old-dir': { type: 'dir', mtime: secs('2005-03-04T05:06:07Z') },
    'bin/busybox': { type: 'file', mode: '0755' },
    tmp: { mode: '1777' },
    'opt/base/xattrs': { xattrs: { 'security.capability': CAP_NET_RAW, 'user.test': '0x68656c6c6f' } },
    'opt/base': { xattrs: { 'user.dir': '0x62617365' } },
    etc: { xattrs: { 'user.dir': '0x657463' } },
  },
  app: {
    'opt/app/remove-me.txt': null,
    'opt/app/gone-dir': null,
    'opt/base/delete-me': null,
    'opt/base/gone-base-dir': null,
    'opt/app/recreate/new.txt': { type: 'file', size: 4 },
    'opt/app/recreate/old1': null,
    'opt/app/recreate/sub': null,
    'opt/app/mode.txt': { mode: '0600' },
    'opt/app/owned.txt': { uid: 1234, gid: 5678 },
    'opt/app/suid.sh': { mode: '4755' },
    'opt/base/empty-dir': { type: 'dir', mode: '0700' },
    'etc/old-dir/old.txt': { uid: 1000, gid: 1000, mtime: secs('2005-03-04T05:06:07Z') },
    'etc/old-dir': { mode: '0755', mtime: secs('2005-03-04T05:06:07Z') },
    'opt/app/olddir': null,
    'opt/app/newdir/sub/f2': { type: 'file', mode: '0600' },
    'opt/app/newdir/link': { type: 'symlink', target: 'f1' },
    'opt/base/rename-me': null,
    'opt/base/renamed/sub/y.txt': { uid: 1000, gid: 1000, mode: '0600' },
    'data/big.bin': { type: 'file', size: 64 << 20 },
    'opt/app/a-hardlink': { nlink: 2, sameInode: ['opt/app/a.txt'] },
    'opt/app/a-symlink': { target: 'a.txt' },
    'opt/app/dangling': { target: '/nonexistent' },
    'opt/base/hl3': { nlink: 2, sameInode: ['opt/base/hl1'] },
    'opt/base/hl2': null,
    'opt/app/empty-me.txt': { size: 0 },
    'opt/app/touched.txt': { mtime: secs('2005-06-07T08:09:10Z') },
    'opt/app/copied-old.txt': { mtime: secs('2005-03-04T05:06:07Z') },
    'opt/app/fifo': { type: 'fifo' },
    'opt/app/zero': { type: 'chr', rdev: '1:5' },
    'tmp/scratch': null,
    'tmp/kept': { type: 'file' },
    'opt/base/keep.txt': { size: 23 },
    'data/one.txt': { size: 13 },
    'opt/app/work': { type: 'dir' },
    'opt/base/xattrs': { xattrs: { 'security.capability': CAP_NET_RAW, 'user.test': '0x68656c6c6f' } },
    'opt/base': { xattrs: undefined },
  },
  app2: {
    'data/big.bin': null,
    'data/one.txt': null,
    'data/only.txt': { size: 5 },
    'opt/base': null,
    'opt/app/newdir': { type: 'dir' },
    'opt/app/newdir/sub': null,
  },
  many: {
    'layers/f1': { size: 2 },
    'layers/f2': null,
    'layers/f17': null,
    'layers/f19': { size: 3 },
    'layers/f16': { mode: '0755' },
    'layers/f20': { mode: '0700' },
    'layers/dir/in15': null,
    'layers/dir/in20': { size: 3 },
  },
  changed: {
    'new-file': { size: 6 },
    'data/one.txt': { size: 18 },
    'opt/app/a.txt': null,
    'opt/app/a-hardlink': { sameInode: undefined },
    'opt/app/newdir': null,
    'var/made/deep/dir/f': { size: 5 },
    'opt/app/recreate': { mode: '0700' },
    'etc/passwd': { uid: 1000, gid: 1000 },
    'data-link': { target: '/data' },
    'opt/base/f': { size: 6 },
    'opt/base/keep.txt': null,
    'opt/app/keep': null,
    'opt/app/kept/k.txt': { size: 2 },
    'opt/app/mode.txt': { mode: '0600', mtime: secs('2004-01-02T03:04:05Z') },
    'data/big.bin': null,
    'made-fifo': { type: 'fifo' },
    '.dockerenv': { type: 'file' },
    'etc/hostname': { type: 'file', size: 0 },
    'etc/mtab': { target: '/proc/mounts' },
  },
  'changed-base': {
    'opt/base/hl-b': null,
    'opt/base/hl-a': { nlink: 2, sameInode: undefined, mtime: secs('2005-03-04T05:06:07Z') },
    'opt/base/keep.txt': { size: 7 },
    'etc/old-dir/old.txt': null,
    'opt/base': { mode: '0751' },
  },
  committed: {
    'new-file': { size: 6 },
    'opt/app/a.txt': null,
    'opt/app/newdir': null,
    'opt/base/f': { size: 6 },
    'opt/base/keep.txt': null,
    'data/big.bin': null,
    'etc/passwd': { uid: 1000, gid: 1000 },
    'opt/app/mode.txt': { mode: '0600', mtime: secs('2004-01-02T03:04:05Z') },
  },
  orphan: {
    orphan: { size: 7 },
    doomed: { size: 7 },
  },
  'changed-many': {
    'layers/dir': null,
    'layers/f20': null,
    'layers/f21': { size: 3 },
  },
}

/** Overlay-private xattrs must never show through a mount (the snapshot hides them, so look here). */
function expectNoPrivateXattrs (mnt: string): void {
  const leaked = [...readXattrs(mnt)].flatMap(([p, x]) => Object.keys(x).filter(k => k.startsWith('trusted.overlay.') || k.startsWith('user.overlay.')).map(k => `${p || '.'}: ${k}`))
  expect(leaked, `overlay-private xattrs visible in ${mnt}`).toEqual([])
}

function expectEntries (s: Snapshot, key: string): void {
  const spec = EXPECTED[key]
  if (spec === undefined) return
  const wrong: string[] = []
  for (const [p, want] of Object.entries(spec)) {
    const got = s.entries[p]
    if (want === null) {
      if (got !== undefined) wrong.push(`${p}: present (${JSON.stringify(got)}), expected absent`)
      continue
    }
    if (got === undefined) { wrong.push(`${p}: absent`); continue }
    for (const [k, v] of Object.entries(want)) {
      if (JSON.stringify(got[k as keyof Entry]) !== JSON.stringify(v)) wrong.push(`${p}: ${k} is ${JSON.stringify(got[k as keyof Entry])}, expected ${JSON.stringify(v)}`)
    }
  }
  expect(wrong, `${key}: what its Dockerfile/script made, seen through ovlfs`).toEqual([])
}

// ------------------------------------------------------------------ the rootfs and the builds


function run (cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, maxBuffer: 64 << 20 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.error ? String(r.error) : ''}`)
  return r.stdout
}

function write (root: string, rel: string, data: string, mode = 0o644, owner?: [number, number]): void {
  const p = path.join(root, rel)
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
  fs.chmodSync(p, mode)
  if (owner) fs.lchownSync(p, owner[0], owner[1])
}

/** True for an ELF executable without a program interpreter (PT_INTERP), i.e. statically linked. */
function isStaticElf (file: string): boolean {
  const b = fs.readFileSync(file)
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false // ELF64 only
  const phoff = Number(b.readBigUInt64LE(0x20))
  const phentsize = b.readUInt16LE(0x36)
  const phnum = b.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false
  return true
}

function findBusybox (): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (fs.existsSync(p) && isStaticElf(p)) return p
  }
  throw new Error('busybox-static is not installed (a statically linked /bin/busybox is needed for the image rootfs): run scripts/setup.sh')
}

/** A tiny root file system: static busybox and its applet links, /etc, and a zoo of file types and metadata. */
function makeRootfs (root: string): void {
  const busybox = findBusybox()
  for (const d of ['bin', 'etc', 'root', 'tmp', 'opt/base', 'var', 'usr/bin', 'sbin']) fs.mkdirSync(path.join(root, d), { recursive: true })
  fs.chmodSync(path.join(root, 'root'), 0o700)
  fs.chmodSync(path.join(root, 'tmp'), 0o1777)
  fs.copyFileSync(busybox, path.join(root, 'bin/busybox'))
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755)
  for (const applet of run(busybox, ['--list']).split('\n').filter(Boolean)) {
    if (applet !== 'busybox') fs.symlinkSync('busybox', path.join(root, 'bin', applet))
  }
  write(root, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n')
  write(root, 'etc/group', 'root:x:0:\napp:x:1000:\n')
  write(root, 'etc/old-dir/old.txt', 'an old file\n')
  write(root, 'etc/old-dir/old2.txt', 'another old file\n')
  const b = 'opt/base'
  write(root, `${b}/keep.txt`, 'keep\n')
  write(root, `${b}/delete-me`, 'delete me\n')
  write(root, `${b}/gone-base-dir/a`, 'a\n')
  write(root, `${b}/gone-base-dir/b/c`, 'c\n')
  write(root, `${b}/rename-me/x.txt`, 'x\n')
  write(root, `${b}/rename-me/sub/y.txt`, 'y\n', 0o600, [1000, 1000])
  write(root, `${b}/hl1`, 'hard link one\n')
  fs.linkSync(path.join(root, `${b}/hl1`), path.join(root, `${b}/hl2`))
  write(root, `${b}/hl-a`, 'hard link a\n')
  fs.linkSync(path.join(root, `${b}/hl-a`), path.join(root, `${b}/hl-b`))
  fs.symlinkSync('keep.txt', path.join(root, `${b}/sym-rel`))
  fs.symlinkSync('/opt/base/keep.txt', path.join(root, `${b}/sym-abs`))
  fs.symlinkSync('does/not/exist', path.join(root, `${b}/sym-dangling`))
  fs.symlinkSync('../base', path.join(root, `${b}/sym-dir`))
  write(root, `${b}/setuid`, '#!/bin/sh\n', 0o4755)
  fs.mkdirSync(path.join(root, `${b}/setgid-dir`))
  fs.chmodSync(path.join(root, `${b}/setgid-dir`), 0o2775)
  fs.mkdirSync(path.join(root, `${b}/sticky`))
  fs.chmodSync(path.join(root, `${b}/sticky`), 0o1777)
  write(root, `${b}/owned-1000`, 'mine\n', 0o644, [1000, 1000])
  write(root, `${b}/owned-1234`, 'odd owner\n', 0o640, [1234, 5678])
  run('mkfifo', [path.join(root, `${b}/fifo`)])
  run('mknod', [path.join(root, `${b}/null`), 'c', '1', '3'])
  fs.mkdirSync(path.join(root, `${b}/empty-dir`))
  write(root, `${b}/empty-file`, '')
  write(root, `${b}/sp ace & ünï:code,x.txt`, 'odd name\n')
  write(root, `${b}/zeros`, '\0'.repeat(100_000))
  // xattrs: docker import keeps them all; docker's own layer tars (commits, export) carry only
  // security.capability, so the later copy-up of opt/base drops user.dir from that layer
  write(root, `${b}/xattrs`, 'xattrs\n')
  run('setfattr', ['-n', 'user.test', '-v', 'hello', path.join(root, `${b}/xattrs`)])
  run('setfattr', ['-n', 'security.capability', '-v', CAP_NET_RAW, path.join(root, `${b}/xattrs`)])
  run('setfattr', ['-n', 'user.dir', '-v', 'base', path.join(root, b)])
  run('setfattr', ['-n', 'user.dir', '-v', 'etc', path.join(root, 'etc')])
  // old mtimes (whole seconds: docker's tars keep seconds only), children before parents
  for (const rel of ['etc/old-dir/old.txt', 'etc/old-dir/old2.txt', 'etc/old-dir', `${b}/keep.txt`, `${b}/hl-a`]) fs.utimesSync(path.join(root, rel), OLD, OLD)
  fs.lutimesSync(path.join(root, `${b}/sym-rel`), OLD, OLD)
}

function makeContext (ctx: string): void {
  const f = 'files'
  write(ctx, `${f}/a.txt`, 'alpha\n')
  write(ctx, `${f}/mode.txt`, 'mode\n')
  write(ctx, `${f}/owned.txt`, 'owned\n')
  write(ctx, `${f}/suid.sh`, '#!/bin/sh\necho suid\n', 0o755)
  write(ctx, `${f}/remove-me.txt`, 'remove me\n')
  write(ctx, `${f}/gone-dir/x`, 'x\n')
  write(ctx, `${f}/gone-dir/y/z`, 'z\n')
  write(ctx, `${f}/recreate/old1`, 'old1\n')
  write(ctx, `${f}/recreate/old2`, 'old2\n')
  write(ctx, `${f}/recreate/sub/old3`, 'old3\n')
  write(ctx, `${f}/olddir/f1`, 'f1\n')
  write(ctx, `${f}/olddir/sub/f2`, 'f2\n', 0o600)
  fs.symlinkSync('f1', path.join(ctx, `${f}/olddir/link`))
  write(ctx, `${f}/keep/k.txt`, 'k\n')
  write(ctx, `${f}/empty-me.txt`, 'not empty yet\n')
  write(ctx, `${f}/touched.txt`, 'touched\n')
  write(ctx, `${f}/copied-old.txt`, 'copied with an old mtime\n')
  fs.utimesSync(path.join(ctx, `${f}/copied-old.txt`), OLD, OLD)
  write(ctx, 'one.txt', 'one\n')
  write(ctx, 'empty.tar', '')
}

const DOCKERFILES: Record<string, string> = {
  labels: `FROM ovlfs-test/base:1
LABEL org.example.only=metadata
ENV ONLY=metadata
`,
  zero: `FROM scratch
LABEL org.example.zero=layers
ENV ZERO=1
`,
  app: `FROM ovlfs-test/base:1
COPY files/ /opt/app/
COPY one.txt /data/one.txt
RUN rm /opt/app/remove-me.txt /opt/base/delete-me && rm -r /opt/app/gone-dir /opt/base/gone-base-dir
RUN rm -rf /opt/app/recreate && mkdir /opt/app/recreate && echo new > /opt/app/recreate/new.txt
RUN chmod 0600 /opt/app/mode.txt && chown 1234:5678 /opt/app/owned.txt && chmod 4755 /opt/app/suid.sh && chmod 0700 /opt/base/empty-dir && chown 1000:1000 /etc/old-dir/old.txt
RUN mv /opt/app/olddir /opt/app/newdir && mv /opt/base/rename-me /opt/base/renamed
RUN dd if=/dev/urandom of=/data/big.bin bs=1M count=64 2>/dev/null
RUN ln /opt/app/a.txt /opt/app/a-hardlink && ln -s a.txt /opt/app/a-symlink && ln -s /nonexistent /opt/app/dangling && ln /opt/base/hl1 /opt/base/hl3 && rm /opt/base/hl2
ENV FOO=bar
LABEL org.example.test=docker-real
RUN echo appended >> /data/one.txt && : > /opt/app/empty-me.txt && touch -d '2005-06-07 08:09:10' /opt/app/touched.txt && mkfifo /opt/app/fifo && mknod /opt/app/zero c 1 5
RUN mkdir -p /tmp/scratch/a/b && touch /tmp/scratch/a/b/f && rm -rf /tmp/scratch && echo tmp > /tmp/kept
RUN rm /opt/base/keep.txt && echo 'same name, new content' > /opt/base/keep.txt && chmod 0755 /etc/old-dir
WORKDIR /opt/app/work
CMD ["/bin/sh"]
`,
  app2: `FROM ovlfs-test/app:1
RUN rm -rf /data && mkdir /data && echo only > /data/only.txt && rm -rf /opt/app/newdir && mkdir /opt/app/newdir && rm -rf /opt/base
`,
  doomed: `FROM ovlfs-test/base:1
RUN echo doomed > /doomed
`,
  many: `FROM ovlfs-test/base:1
${Array.from({ length: 20 }, (_v, k) => {
  const i = k + 1
  const steps = [`mkdir -p /layers/dir`, `echo ${i} > /layers/f${i}`, `echo ${i} >> /layers/log`]
  if (i % 3 === 0) steps.push(`rm /layers/f${i - 1}`)
  if (i % 5 === 0) steps.push('rm -rf /layers/dir && mkdir /layers/dir', `echo ${i} > /layers/dir/in${i}`)
  if (i % 4 === 0) steps.push(`chmod ${['0640', '0604', '0444', '0755', '0700'][i / 4 - 1]} /layers/f${i}`)
  return `RUN ${steps.join(' && ')}`
}).join('\n')}
`,
}

// ------------------------------------------------------------------ state and helpers

let d: PrivateDockerd | undefined
let setupError: unknown
let emptyLower = ''
const allImageIds: string[] = []
const allContainerIds: string[] = []
let mountSeq = 0

/** The daemon, or the reason there is none (every test fails with it). */
function env (): PrivateDockerd {
  if (setupError !== undefined) throw setupError instanceof Error ? setupError : new Error(String(setupError))
  if (d === undefined) throw new Error('the private dockerd was not started')
  return d
}

function dockerRoot (): string { return env().dataRoot }

/** `ovlfs ARGS` (no daemon involved), synchronously. */
function ovlfs (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const [cmd, ...pre] = cliCommand()
  const r = spawnSync(cmd!, [...pre, ...args], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 })
  return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
}

function layersJson (ref: string): LayersJson {
  const r = ovlfs(['layers', '--docker-root', dockerRoot(), '--json', ref])
  if (r.status !== 0) throw new Error(`ovlfs layers --json ${ref} exited with ${r.status}: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout) as LayersJson
}

function chainIdsOf (diffIds: string[]): string[] {
  const out: string[] = []
  for (const id of diffIds) {
    const prev = out.at(-1)
    out.push(prev === undefined ? id : 'sha256:' + createHash('sha256').update(`${prev} ${id}`).digest('hex'))
  }
  return out
}

function short (id: string): string { return id.replace(/^sha256:/, '').slice(0, 12) }

/** The shortest prefix of `id` that no other image or container ID shares (as `docker inspect` needs it). */
function uniquePrefix (id: string): string {
  const hex = id.replace(/^sha256:/, '')
  const others = [...allImageIds, ...allContainerIds].map(x => x.replace(/^sha256:/, '')).filter(x => x !== hex)
  for (let n = 1; n <= 64; n++) {
    const p = hex.slice(0, n)
    if (!others.some(o => o.startsWith(p))) return p
  }
  return hex
}

function history (ref: string, human: boolean): HistoryEntry[] {
  return env().docker(['history', '--no-trunc', `-H=${human}`, '--format', '{{json .}}', ref]).trim().split('\n').filter(Boolean).map(l => JSON.parse(l) as HistoryEntry)
}

/**
 * Which history entries made a layer (docker history does not say: it prints size 0 for empty
 * ones). Here, by construction of the Dockerfiles: an import (no instruction), RUN (every RUN here
 * changes something), COPY/ADD, and WORKDIR (of a new directory); metadata-only instructions
 * (`#(nop)` ENV, LABEL, CMD) never do. The callers check the count against RootFS.Layers.
 */
function makesLayer (h: HistoryEntry): boolean {
  const nop = /^\/bin\/sh -c #\(nop\)\s*(\S+)/.exec(h.CreatedBy)
  return nop === null || ['COPY', 'ADD', 'WORKDIR'].includes(nop[1]!)
}

/** What ovlfs's table shows for an instruction: the documented shortening (render.ts). */
function tableInstruction (createdBy: string): string {
  const text = createdBy.replace(/^\/bin\/sh -c #\(nop\)\s*/, '').replace(/\s+/g, ' ').trim()
  return text === '' ? '-' : text
}

function escapeLower (p: string): string { return p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,') }

function freshDir (what: string): string {
  return env().scratch(`${String(++mountSeq).padStart(3, '0')}-${what}`)
}

/** A read-only kernel overlayfs mount of `lowers` (top first); the kernel needs two, so a lone one gets an empty dir below it. */
async function withKernel<T> (lowers: string[], fn: (mnt: string) => T): Promise<T> {
  const mnt = freshDir('kernel')
  const all = lowers.length === 1 ? [...lowers, emptyLower] : lowers
  if (all.length === 0) return fn(emptyLower)
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${all.map(escapeLower).join(':')},${KERNEL_OPTS}`, mnt], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`kernel overlay mount of ${all.length} lowerdirs failed: ${r.stderr}`)
  try {
    return fn(mnt)
  } finally {
    await unmount(mnt)
  }
}

/** Start `ovlfs mount-image [extra] REF MNT` and wait for the command to return. */
async function startMountImage (ref: string, mnt: string, extra: string[] = []): Promise<{ run: Run, code: number | null }> {
  const r = runCli(['mount-image', '--docker-root', dockerRoot(), ...extra, ref, mnt])
  const e = await r.waitMain(60_000)
  return { run: r, code: e.code }
}

/** ovlfs mount-image REF on a fresh mount point, run fn, unmount, and wait until the ovlfs daemon is gone. */
async function withOvlfs<T> (ref: string, fn: (mnt: string) => T, extra: string[] = []): Promise<T> {
  const mnt = freshDir('ovlfs')
  const { run: r, code } = await startMountImage(ref, mnt, extra)
  try {
    if (code !== 0) throw new Error(`ovlfs mount-image ${extra.join(' ')} ${ref} exited with ${code}: ${r.stderr.trim()}`)
    const m = await waitForMount(mnt, 10_000)
    expect(m.fstype, `fstype of ${mnt}`).toBe(expectedFstype())
    return fn(mnt)
  } finally {
    if (mountAt(mnt)) await unmount(mnt)
    await r.waitClosed(20_000)
  }
}

/**
 * An exact picture of a directory as stored: every lstat field that a change would touch, and all
 * xattrs. Without `times`, directories' mtime/ctime are left out: a mount (the kernel's, and
 * ovlfs's) probes what the upper fs supports by creating and removing temporary entries in
 * WORKDIR/work, which leaves nothing behind but touches that directory's times.
 */
function fingerprint (root: string, times = true): Record<string, string> {
  const out: Record<string, string> = {}
  const xattrs = readXattrs(root)
  const visit = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel)
    const st = fs.lstatSync(abs, { bigint: true })
    out[rel || '.'] = `mode=${st.mode.toString(8)} owner=${st.uid}:${st.gid} size=${st.isDirectory() ? '-' : st.size} rdev=${st.rdev} nlink=${st.isDirectory() ? '-' : st.nlink} ` +
      (times || !st.isDirectory() ? `mtime=${st.mtimeNs} ctime=${st.ctimeNs} ` : '') + `ino=${st.ino} xattrs=${JSON.stringify(xattrs.get(rel) ?? {})}`
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) visit(rel === '' ? n : `${rel}/${n}`)
  }
  visit('')
  return out
}

function fingerprintDiff (a: Record<string, string>, b: Record<string, string>): string[] {
  const lines: string[] = []
  for (const p of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (a[p] !== b[p]) lines.push(`${p}: before ${a[p] ?? '(absent)'} / after ${b[p] ?? '(absent)'}`)
  }
  return lines
}

/** `docker export ID | tar -x` into a fresh dir (numeric owners, modes and times as recorded). */
function exportTree (id: string, what: string): string {
  const dir = freshDir(`export-${what}`)
  const tar = `${dir}.tar`
  env().docker(['export', '-o', tar, id])
  run('tar', ['-x', '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', tar, '-C', dir])
  fs.rmSync(tar)
  return dir
}

function expectNoDiff (lines: string[], what: string): void {
  expect(lines.slice(0, 60), `${what}: ${lines.length} difference(s)`).toEqual([])
}

// ------------------------------------------------------------------ setup and teardown

async function setup (): Promise<void> {
  d = await startDockerd()
  const build = d.scratch('build')
  emptyLower = d.scratch('empty-lower')
  const rootfs = path.join(build, 'rootfs')
  fs.mkdirSync(rootfs)
  makeRootfs(rootfs)
  const tar = path.join(build, 'rootfs.tar')
  run('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', rootfs, '-cf', tar, '.'])
  d.docker(['import', '--change', 'CMD ["/bin/sh"]', tar, 'ovlfs-test/base:1'])
  const ctx = path.join(build, 'ctx')
  makeContext(ctx)
  d.docker(['import', path.join(ctx, 'empty.tar'), 'ovlfs-test/empty-import:1'])
  const buildImage = (key: string, tag: string): void => {
    const file = path.join(build, `Dockerfile.${key}`)
    fs.writeFileSync(file, DOCKERFILES[key]!)
    d!.docker(['build', '--network', 'none', '-f', file, '-t', tag, ctx], { timeoutMs: 240_000 })
  }
  buildImage('labels', 'ovlfs-test/labels:1')
  buildImage('zero', 'ovlfs-test/zero:1')
  buildImage('app', 'ovlfs-test/app:1')
  buildImage('app2', 'ovlfs-test/app2:1')
  buildImage('many', 'ovlfs-test/many:20')
  buildImage('doomed', 'ovlfs-test/doomed:1')
  for (const img of IMAGES) for (const t of img.tags ?? []) d.docker(['tag', img.name, t])

  for (const c of STOPPED) {
    if (c.script !== undefined) {
      d.docker(['run', '--name', c.name, '--network', 'none', c.image, 'sh', '-c', c.script])
      const changes = d.docker(['diff', c.name]).trim()
      if (changes === '') throw new Error(`container ${c.name} changed nothing (docker diff is empty)`)
    } else {
      d.docker(['create', '--name', c.name, '--network', 'none', c.image, ...(c.cmd ?? [])])
    }
  }
  d.docker(['commit', 'changed', 'ovlfs-test/committed:1'])
  d.docker(['create', '--name', EDITED.name, '--network', 'none', EDITED.image, 'sh', '-c', EDITED.script])
  doomedImage = d.inspect<ImageInspect>('ovlfs-test/doomed:1', 'image')
  d.docker(['rmi', '-f', 'ovlfs-test/doomed:1'])
  if (d.tryDocker(['inspect', '--type', 'image', doomedImage.Id]).status === 0) throw new Error('docker rmi -f did not delete ovlfs-test/doomed:1')
  d.docker(['run', '-d', '--name', RUNNING.name, '--network', 'none', RUNNING.image, 'sh', '-c', 'echo running > /running-marker && exec sleep 3600'])
  for (let i = 0; ; i++) {
    const r = d.tryDocker(['exec', RUNNING.name, 'cat', '/running-marker'])
    if (r.status === 0 && r.stdout === 'running\n') break
    if (i > 100) throw new Error(`container ${RUNNING.name} did not write its marker: ${r.stderr}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  allImageIds.push(...d.docker(['images', '-a', '-q', '--no-trunc']).trim().split('\n').filter(Boolean))
  allContainerIds.push(...d.docker(['ps', '-a', '-q', '--no-trunc']).trim().split('\n').filter(Boolean))
}

beforeAll(async () => {
  const t0 = Date.now()
  try {
    await setup()
  } catch (e) {
    setupError = e
  }
  console.log(`docker-real: setup took ${((Date.now() - t0) / 1000).toFixed(1)} s${setupError === undefined ? '' : ' and failed'}`)
}, 300_000)

afterAll(async () => {
  const problems: string[] = []
  if (d !== undefined) {
    // unmount ovlfs mounts first (their daemons then exit on their own), then the daemon goes
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const mnt = line.split(' ')[4]
      if (mnt !== undefined && mnt.startsWith(path.join(d.dir, 'scratch') + '/')) {
        problems.push(`left mounted: ${mnt}`)
        await unmount(mnt).catch(() => {})
      }
    }
  }
  await killAllRuns()
  d?.stop()
  if (problems.length > 0) throw new Error(`docker-real: tests left mounts behind: ${problems.join(', ')}`)
}, 180_000)

// ------------------------------------------------------------------ the tests

describe('real dockerd (docker.io 20.10, overlay2, private and offline)', () => {
  it('is up with its own data root, and every image and container was made', () => {
    const dk = env()
    const info = dk.docker(['info', '--format', '{{.DockerRootDir}} {{.Driver}} {{.Containers}} {{.ContainersRunning}}']).trim()
    expect(info).toBe(`${dk.dataRoot} overlay2 ${STOPPED.length + 2} 1`)
    for (const img of IMAGES) {
      const ins = dk.inspect<ImageInspect>(img.name, 'image')
      expect(ins.RootFS.Layers ?? [], `layers of ${img.name}`).toHaveLength(img.expectLayers)
      expect(ins.GraphDriver.Name).toBe('overlay2')
    }
  })

  describe('images: ovlfs layers --json equals docker inspect and docker history', () => {
    for (const img of IMAGES) {
      it(img.key, () => {
        const dk = env()
        const ins = dk.inspect<ImageInspect>(img.name, 'image')
        const data = ins.GraphDriver.Data
        // docker: UpperDir is the top layer's diff, LowerDir the rest, top-most first
        const expectedLowers = data === null ? [] : [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])]
        const diffIds = ins.RootFS.Layers ?? []
        const chains = chainIdsOf(diffIds)
        const hex = ins.Id.replace(/^sha256:/, '')
        const refs = [img.name, ...(img.tags ?? []), ...(img.aliases ?? []), ins.Id, hex, short(ins.Id), uniquePrefix(ins.Id)]
        for (const ref of refs) {
          // docker itself takes every one of these refs to this image
          expect(dk.inspect<ImageInspect>(ref, 'image').Id, `docker inspect ${ref}`).toBe(ins.Id)
          const j = layersJson(ref)
          expect(j.lowerdirs, `lowerdirs of ${ref}`).toEqual(expectedLowers)
          expect(j.upperdir, `upperdir of ${ref}`).toBeUndefined()
          expect(j.workdir, `workdir of ${ref}`).toBeUndefined()
          expect(j.image.id, `image.id of ${ref}`).toBe(ins.Id)
          expect([...j.image.refs].sort(), `image.refs of ${ref}`).toEqual([...ins.RepoTags].sort())
          expect(j.layers.map(l => l.diffId), `diffIds of ${ref}`).toEqual([...diffIds].reverse())
          expect(j.layers.map(l => l.chainId), `chainIds of ${ref}`).toEqual([...chains].reverse())
          expect(j.layers.map(l => path.join(dockerRoot(), 'overlay2', l.cacheId, 'diff')), `cacheIds of ${ref}`).toEqual(expectedLowers)
        }
        // sizes and instructions, top first, as docker history shows the entries that made layers
        const j = layersJson(img.name)
        const made = history(img.name, false).filter(makesLayer)
        expect(made.map(h => h.CreatedBy), 'history entries that made layers (test assumption, see makesLayer)').toHaveLength(diffIds.length)
        expect(j.layers.map(l => l.size), 'layer sizes vs docker history').toEqual(made.map(h => Number(h.Size)))
        expect(j.layers.map(l => l.createdBy), 'createdBy vs docker history').toEqual(made.map(h => h.CreatedBy))
        expect(j.layers.reduce((s, l) => s + l.size, 0), 'total vs docker inspect .Size').toBe(ins.Size)
      })
    }
  })

  describe('images: the ovlfs layers table', () => {
    for (const img of IMAGES) {
      it(img.key, () => {
        const dk = env()
        const ins = dk.inspect<ImageInspect>(img.name, 'image')
        const j = layersJson(img.name)
        const r = ovlfs(['layers', '--docker-root', dockerRoot(), img.name])
        expect(r.status, r.stderr).toBe(0)
        const lines = r.stdout.trimEnd().split('\n')
        expect(lines[0]).toContain(ins.Id)
        for (const t of ins.RepoTags) expect(lines[0]).toContain(t)
        const header = lines.findIndex(l => /^LAYER\s+CACHE ID\s+SIZE\s+CREATED BY$/.test(l))
        expect(header, r.stdout).toBe(1)
        const n = j.layers.length
        expect(lines, `one row per layer plus header, title and total:\n${r.stdout}`).toHaveLength(header + 2 + n)
        const human = history(img.name, true).filter(makesLayer)
        expect(human).toHaveLength(n)
        j.layers.forEach((l, i) => {
          const row = lines[header + 1 + i]!
          const cells = row.split(/\s{3,}/)
          expect(cells[0], row).toBe(short(l.chainId))
          expect(cells[1], row).toBe(short(l.cacheId))
          expect(cells[2], `size in ${row} vs docker history`).toBe(human[i]!.Size)
          // CREATED BY: the instruction docker history --no-trunc shows, shortened to 60 characters
          const want = tableInstruction(human[i]!.CreatedBy)
          const got = cells.slice(3).join('   ')
          if (want.length <= 60) expect(got, row).toBe(want)
          else expect(got, row).toBe(want.slice(0, 59) + '…')
        })
        const total = lines.at(-1)!.split(/\s{3,}/)
        const imageSize = dk.docker(['image', 'ls', '--format', '{{.Size}}', img.name]).trim()
        expect(total, lines.at(-1)).toEqual(['total', imageSize, `${n} layer${n === 1 ? '' : 's'}`])
      })
    }
  })

  describe('images: ovlfs mount-image equals the kernel overlay of the same layers', () => {
    for (const img of IMAGES) {
      it(img.key, async () => {
        const dk = env()
        const ins = dk.inspect<ImageInspect>(img.name, 'image')
        const lowers = layersJson(ins.Id).lowerdirs
        const kernel = await withKernel(lowers, (mnt) => {
          if (lowers.length > 0) expect(errnoOf(() => fs.writeFileSync(path.join(mnt, 'x'), 'x'))).toBe('EROFS')
          return snapshotMerged(mnt)
        })
        const ovl = await withOvlfs(img.name, (mnt) => {
          expect(errnoOf(() => fs.writeFileSync(path.join(mnt, 'new-file'), 'x')), 'an image mounts read-only').toBe('EROFS')
          expectNoPrivateXattrs(mnt)
          return snapshotMerged(mnt)
        })
        if (lowers.length === 0) {
          // a zero-layer image: an empty tree (the root's own metadata is ovlfs's empty stand-in dir)
          expect(Object.keys(ovl.entries)).toEqual(['.'])
          expect(ovl.problems).toEqual([])
        } else {
          if (img.emptyTree === true) expect(Object.keys(kernel.entries)).toEqual(['.'])
          else expect(Object.keys(kernel.entries).length).toBeGreaterThan(100)
          expectNoDiff(diff(kernel, ovl), `${img.key}: kernel vs ovlfs`)
        }
        expectEntries(ovl, img.key)
      })
    }
  })

  describe('containers: ovlfs layers --json equals docker inspect', () => {
    for (const c of [...STOPPED, RUNNING]) {
      it(c.name, () => {
        const dk = env()
        const ins = dk.inspect<ContainerInspect>(c.name, 'container')
        const img = c.name === 'orphan' ? { ...doomedImage!, RepoTags: [] } : dk.inspect<ImageInspect>(ins.Image, 'image')
        const data = ins.GraphDriver.Data
        for (const ref of [c.name, `/${c.name}`, ins.Id, short(ins.Id), uniquePrefix(ins.Id)]) {
          expect(dk.inspect<ContainerInspect>(ref, 'container').Id, `docker inspect ${ref}`).toBe(ins.Id)
          const j = layersJson(ref)
          expect(j.lowerdirs, `lowerdirs of ${ref}`).toEqual(data.LowerDir.split(':'))
          expect(j.upperdir, `upperdir of ${ref}`).toBe(data.UpperDir)
          expect(j.workdir, `workdir of ${ref}`).toBe(data.WorkDir)
          expect(j.image.id, `image.id of ${ref}`).toBe(ins.Image)
          expect([...j.image.refs].sort()).toEqual([...img.RepoTags].sort())
          expect(j.layers.map(l => l.diffId)).toEqual([...(img.RootFS.Layers ?? [])].reverse())
        }
        const table = ovlfs(['layers', '--docker-root', dockerRoot(), c.name])
        expect(table.status, table.stderr).toBe(0)
        if (c.name === 'orphan') expect(table.stdout.split('\n')[0]).toBe(`image ${ins.Image}, overlay2`)
        expect(table.stdout.split('\n')[1]).toBe(`container ${c.name} (${short(ins.Id)}), ${ins.State.Running ? 'running' : 'not running'}, upper ${data.UpperDir}`)
      })
    }
  })

  describe('stopped containers: ovlfs mount-image equals the kernel overlay and docker export, and leaves the container alone', () => {
    for (const c of STOPPED) {
      it(c.name, async () => {
        const dk = env()
        const ins = dk.inspect<ContainerInspect>(c.name, 'container')
        expect(ins.State.Running).toBe(false)
        const { LowerDir, UpperDir, WorkDir } = ins.GraphDriver.Data
        const before = exportTree(ins.Id, `${c.name}-before`)
        const upper0 = fingerprint(UpperDir)
        const work0 = fingerprint(WorkDir, false)
        // the merged view as the kernel shows it: the container's upper as the top (read-only) lower
        const kernel = await withKernel([UpperDir, ...LowerDir.split(':')], snapshotMerged)
        const upper1 = fingerprint(UpperDir)
        expectNoDiff(fingerprintDiff(upper0, upper1), `${c.name}: upper dir changed by the read-only kernel mount (test bug)`)
        const ovl = await withOvlfs(ins.Id, (mnt) => {
          expectNoPrivateXattrs(mnt)
          return snapshotMerged(mnt)
        })
        // after the ovlfs daemon is gone: the container's own dirs are as they were
        expectNoDiff(fingerprintDiff(upper1, fingerprint(UpperDir)), `${c.name}: upper dir changed by ovlfs mount-image`)
        expectNoDiff(fingerprintDiff(work0, fingerprint(WorkDir, false)), `${c.name}: work dir changed by ovlfs mount-image (beyond the times of WORKDIR/work)`)
        expectNoDiff(diff(kernel, ovl), `${c.name}: kernel vs ovlfs`)
        expectEntries(ovl, c.name)
        const exported = snapshotMerged(before)
        expectNoDiff(exportDiff(exported, ovl), `${c.name}: docker export vs ovlfs`)
        // and docker still sees the same tree
        const after = snapshotMerged(exportTree(ins.Id, `${c.name}-after`))
        expectNoDiff(diff(exported, after, ['export before', 'export after']), `${c.name}: docker export before vs after the ovlfs mount`)
      })
    }
  })

  it('refs that docker cannot resolve: exit 1 and one line', () => {
    const dk = env()
    const app = dk.inspect<ImageInspect>('ovlfs-test/app:1', 'image')
    const ambiguous = [...'0123456789abcdef'].find(c => allImageIds.filter(id => id.startsWith(`sha256:${c}`)).length >= 2 &&
      !allContainerIds.some(id => id.startsWith(c)))
    const bad = [
      'ovlfs-test/app:2', 'ovlfs-test/nope', 'registry.example.com:5000/team/app:9.9', 'user/app:1.2',
      // a digest reference: only pulls and pushes record manifest digests, so docker knows none here
      `registry.example.com:5000/team/app@sha256:${app.Id.slice(7)}`,
      'sha256:' + 'f'.repeat(64), 'not a ref', 'nonexistent-container', 'OVLFS-TEST/APP:1', 'ovlfs-test/app:1@sha256:' + 'a'.repeat(64),
      ...(ambiguous === undefined ? [] : [ambiguous]),
    ]
    for (const ref of bad) {
      // As an image and as a container, what ovlfs resolves; a plain `docker inspect` also matches
      // networks and volumes by ID prefix (CI at 18facaf: the "none" network's ID began with the ambiguous digit).
      for (const type of ['image', 'container']) expect(dk.tryDocker([type, 'inspect', ref]).status, `docker ${type} inspect ${ref}`).not.toBe(0)
      const r = ovlfs(['layers', '--docker-root', dockerRoot(), ref])
      expect(r.status, `ovlfs layers ${ref}: ${r.stdout}${r.stderr}`).toBe(1)
      expect(r.stderr.trim().split('\n'), `ovlfs layers ${ref}`).toHaveLength(1)
      expect(r.stdout).toBe('')
    }
  })

  it('a stopped container edited through ovlfs mount-image: docker and the kernel see the edits', async () => {
    const dk = env()
    const ins = dk.inspect<ContainerInspect>(EDITED.name, 'container')
    const { LowerDir, UpperDir } = ins.GraphDriver.Data
    const results: Record<string, string> = {}
    const edited = await withOvlfs(EDITED.name, (mnt) => {
      const at = (rel: string): string => path.join(mnt, rel)
      const ops: Record<string, () => void> = {
        'write a new file': () => fs.writeFileSync(at('edited-new'), 'new through ovlfs\n'),
        'append to a lower file (copy-up)': () => fs.appendFileSync(at('data/one.txt'), 'edited\n'),
        'append to a lower file owned by 1000': () => fs.appendFileSync(at('opt/base/owned-1000'), 'more\n'),
        'unlink a lower file (whiteout)': () => fs.unlinkSync(at('opt/app/a.txt')),
        'rm -r a lower dir and make it again (opaque)': () => {
          fs.rmSync(at('opt/app/recreate'), { recursive: true })
          fs.mkdirSync(at('opt/app/recreate'))
          fs.writeFileSync(at('opt/app/recreate/again'), 'again\n')
        },
        'rename a lower file': () => fs.renameSync(at('opt/app/suid.sh'), at('opt/app/renamed.sh')),
        'rename a lower dir': () => fs.renameSync(at('opt/app/newdir'), at('opt/app/moved')),
        'chmod a lower file': () => fs.chmodSync(at('opt/base/setuid'), 0o700),
        'chown a lower file': () => fs.chownSync(at('opt/base/owned-1234'), 4321, 8765),
        'set an old mtime': () => fs.utimesSync(at('opt/app/touched.txt'), new Date('2003-01-01T00:00:00Z'), new Date('2003-01-01T00:00:00Z')),
        'symlink': () => fs.symlinkSync('/opt/base/keep.txt', at('edited-link')),
        'hard link to a lower file': () => fs.linkSync(at('opt/base/keep.txt'), at('edited-hardlink')),
        'mkdir -p': () => fs.mkdirSync(at('var/edited/deep'), { recursive: true }),
        'truncate the 64 MiB lower file': () => fs.truncateSync(at('data/big.bin'), 10),
        'user xattr on a lower file': () => run('setfattr', ['-n', 'user.edited', '-v', 'yes', at('opt/app/mode.txt')]),
      }
      for (const [what, op] of Object.entries(ops)) results[what] = errnoOf(op)
      expectNoPrivateXattrs(mnt)
      return snapshotMerged(mnt)
    })
    // a lower directory's rename works (redirect_dir=on, ovlfs's default); the kernel below follows the redirect
    expect(results).toEqual(Object.fromEntries(Object.keys(results).map(k => [k, 'OK'])))
    const kernel = await withKernel([UpperDir, ...LowerDir.split(':')], snapshotMerged)
    expectNoDiff(diff(kernel, edited, ['kernel (upper as lower)', 'ovlfs']), 'edited: the kernel reading the upper dir ovlfs wrote')
    expectNoDiff(exportDiff(snapshotMerged(exportTree(ins.Id, 'edited')), edited), 'edited: docker export of the upper dir ovlfs wrote')
    const out = dk.docker(['start', '-a', EDITED.name])
    expect(out).toBe('new through ovlfs\none\nappended\nedited\nmine\nmore\nagain\ndeep\n1000:1000 644\ndone\n')
  })

  describe('a running container', () => {
    it('mount-image refuses it without --force: exit 1, one line, nothing mounted', async () => {
      const dk = env()
      const ins = dk.inspect<ContainerInspect>(RUNNING.name, 'container')
      expect(ins.State.Running).toBe(true)
      const mnt = freshDir('refused')
      const { run: r, code } = await startMountImage(RUNNING.name, mnt)
      await r.waitClosed(20_000)
      expect(code, r.stderr).toBe(1)
      const lines = r.stderrLines()
      expect(lines, r.stderr).toHaveLength(1)
      expect(lines[0]).toMatch(/running/)
      expect(lines[0]).toMatch(/--force/)
      expect(r.stdout).toBe('')
      expect(mountAt(mnt)).toBeNull()
    })

    it('mount-image --force mounts it, and the container is fine afterwards', async () => {
      const dk = env()
      const ins = dk.inspect<ContainerInspect>(RUNNING.name, 'container')
      const content = await withOvlfs(RUNNING.name, (mnt) => ({
        marker: fs.readFileSync(path.join(mnt, 'running-marker'), 'utf8'),
        one: fs.readFileSync(path.join(mnt, 'data/one.txt'), 'utf8'),
        hosts: fs.existsSync(path.join(mnt, 'etc/hosts')),
      }), ['--force'])
      expect(content).toEqual({ marker: 'running\n', one: 'one\nappended\n', hosts: true })
      expect(dk.inspect<ContainerInspect>(ins.Id, 'container').State.Running).toBe(true)
      expect(dk.docker(['exec', RUNNING.name, 'sh', '-c', 'echo after > /after && cat /after /running-marker'])).toBe('after\nrunning\n')
    })
  })
})
