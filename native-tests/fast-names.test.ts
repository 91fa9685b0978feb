// Fast names (src/fuse/fast-names.ts, fuse-native patch items 17 and 19): after a directory was
// listed, lookups of its lower non-directories are answered by the addon on the libfuse thread
// (an fstatat there), lookups of names not in the listing by -ENOENT there, and read-only opens
// of those files by an openat there (reads, fstat, fsync, release too), without the JS thread.
// Every operation that writes empties that table before it starts and after it ends; a copy-up
// moves the addon's open files to the upper copy. chmod, chown and utimens of an upper regular
// file with one name that the table holds are made by the addon (item 22).
// Checked here: (1) through a series of changes of every kind, each followed by a listing and an
// lstat of every listed name and of names that do not exist, ovlfs agrees with the kernel's
// overlayfs (type, mode, size, nlink, owner, mtime, whether the name exists), and st_ino agrees
// with d_ino; (2) the addon really answers them (the daemon's count at unmount), and a change
// through the mount shows at once in the next lstat; (3) files the addon opened behave as on the
// kernel's overlayfs, through a copy-up, an unlink and a rename of the open name.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, hardlink, symlink, type LayerSet } from './harness/layers'
import { logLine } from './harness/daemon'
import { mountForeground, removeTree, tempDir, unmountAll, withBoth } from './harness/mounts'
import { apply, describe as describeOp, o, type Op } from './harness/ops'

afterAll(unmountAll)

/**
 * List every directory below root, lstat each entry and the given missing names: per directory,
 * name → [type and mode, size (not of directories), nlink, uid, gid, mtime (only if older than
 * the test: the two sides make new objects at different moments)] or "errno N"; names the
 * probe looked up without listing them start with '?'. Non-directories whose d_ino is not their
 * st_ino are listed under '!'.
 */
const PROBE = `
import json, os, stat, sys
root, missing = sys.argv[1], sys.argv[2].split(',')
out = {}
bad = []
def st(p):
    try:
        s = os.lstat(p)
    except OSError as e:
        return 'errno %d' % e.errno, None
    d = stat.S_ISDIR(s.st_mode)
    return [oct(s.st_mode), 0 if d else s.st_size, s.st_nlink, s.st_uid, s.st_gid, s.st_mtime_ns if s.st_mtime < 1262304000 else 'recent'], s
def visit(rel):
    d = os.path.join(root, rel) if rel else root
    rows = {}
    subdirs = []
    with os.scandir(d) as it:
        for e in it:
            row, s = st(os.path.join(d, e.name))
            rows[e.name] = row
            if s is not None and stat.S_ISDIR(s.st_mode):
                subdirs.append(e.name)
            elif s is not None and e.inode() != s.st_ino:
                bad.append('%s/%s: d_ino %d but st_ino %d' % (rel, e.name, e.inode(), s.st_ino))
    for m in missing:
        rows['?' + m] = st(os.path.join(d, m))[0]
    out[rel] = rows
    for name in sorted(subdirs):
        visit(rel + '/' + name if rel else name)
visit('')
out['!'] = bad
json.dump(out, sys.stdout, sort_keys=True)
`

type Probe = Record<string, unknown>

/** lstat of each name, with no listing first: after a change, the addon answers from the table the change edited. */
const LOOKUPS = `
import json, os, sys
root = sys.argv[1]
out = {}
for n in sys.argv[2].split(','):
    try:
        s = os.lstat(os.path.join(root, n))
        out[n] = [oct(s.st_mode), 0 if os.path.isdir(os.path.join(root, n)) else s.st_size, s.st_nlink, s.st_uid, s.st_gid]
    except OSError as e:
        out[n] = 'errno %d' % e.errno
json.dump(out, sys.stdout, sort_keys=True)
`

/** Every name the layers and the steps below make, and some that never exist. */
const NAMES = [
  'd', 'd/top', 'd/both', 'd/sub', 'd/sub/s1', 'd/sub/s2', 'd/ln', 'd/bottom', 'd/b2', 'd/b3', 'd/b4', 'd/h1', 'd/h2', 'd/u',
  'e', 'e/x', 'e/moved', 'd/xl', 'd/n1', 'd/n2', 'd/nd', 'd/nl', 'd/nf', 'd/nope', 'd/never', 'e/never', 'd/sub/never',
]

function lookups (root: string): Record<string, unknown> {
  const r = spawnSync('python3', ['-c', LOOKUPS, root, NAMES.join(',')], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`lookups in ${root} failed: ${r.stderr || String(r.error)}`)
  return JSON.parse(r.stdout) as Record<string, unknown>
}

function probe (root: string): Probe {
  const r = spawnSync('python3', ['-c', PROBE, root, 'nope,.wh.top,top.missing'], { encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.status !== 0) throw new Error(`probing ${root} failed: ${r.stderr || String(r.error)}`)
  return JSON.parse(r.stdout) as Probe
}

/** Differences between the two sides, directory by directory, name by name. */
function compare (k: Probe, f: Probe): string[] {
  const lines: string[] = []
  for (const d of [...new Set([...Object.keys(k), ...Object.keys(f)])].sort()) {
    const a = (k[d] ?? {}) as Record<string, unknown>
    const b = (f[d] ?? {}) as Record<string, unknown>
    if (d === '!') {
      if ((b as unknown as string[]).length > 0) lines.push(`ovlfs: ${(b as unknown as string[]).join('; ')}`)
      continue
    }
    for (const n of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const x = JSON.stringify(a[n] ?? '(not listed)')
      const y = JSON.stringify(b[n] ?? '(not listed)')
      if (x !== y) lines.push(`${d || '.'}/${n}: kernel ${x} ovlfs ${y}`)
    }
  }
  return lines
}

const LAYERS: LayerSet = {
  lowers: [
    { d: dir(), 'd/top': file('top'), 'd/both': file('upper one'), 'd/sub': dir(), 'd/sub/s1': file('s1'), 'd/ln': symlink('top') },
    {
      d: dir(),
      'd/both': file('lower one, longer'),
      'd/bottom': file('bottom'),
      'd/b2': file('b2'),
      'd/b3': file('b3'),
      'd/b4': file('b4'),
      'd/h1': file('h'),
      'd/h2': hardlink('d/h1'),
      'd/sub': dir(),
      'd/sub/s2': file('s2'),
      e: dir(),
      'e/x': file('x'),
    },
  ],
  upper: { d: dir(), 'd/u': file('u') },
}

const STEPS: Array<[string, Op[]]> = [
  ['nothing', []],
  ['chmod a lower file (copy-up of metadata)', [o.chmod('d/bottom', 0o600)]],
  ['append to a lower file (copy-up of data)', [o.append('d/b2', 'more')]],
  ['truncate a lower file', [o.truncate('d/b3', 1)]],
  ['utimens a lower file', [o.utimens('d/b4', '2001-02-03T04:05:06Z')]],
  ['chown a lower file', [o.chown('d/top', 1234, 5678)]],
  ['unlink a lower file (whiteout)', [o.unlink('d/both')]],
  ['create over the whiteout', [o.create('d/both', 'new')]],
  ['rename a lower file', [o.rename('d/bottom', 'e/moved')]],
  ['hard link to a lower file', [o.link('e/x', 'd/xl')]],
  ['create, mkdir, symlink, fifo', [o.create('d/n1', 'n'), o.mkdir('d/nd'), o.symlink('n1', 'd/nl'), o.mkfifo('d/nf')]],
  // Upper regular files with one name: made by the addon (patch item 22); the symlink goes to JS.
  ['chmod (set-user-ID), chown (which clears it), utimens of upper files', [
    o.chmod('d/n1', 0o4751), o.chown('d/n1', 4321, 8765), o.utimens('d/n1', '2002-03-04T05:06:07Z'), o.chmod('d/u', 0o640),
    o.chown('d/nl', 11, 22), o.utimens('d/nl', '2003-01-01T00:00:00Z')]],
  ['the same of an upper file with two names (JS)', [
    o.link('d/n1', 'd/n2'), o.chmod('d/n2', 0o2700), o.chown('d/n1', 1, 2), o.utimens('d/n2', '2004-01-01T00:00:00Z')]],
  ['a lower name that did not exist before made', [o.create('d/nope', 'now it does')]],
  ['unlink it again', [o.unlink('d/nope')]],
  ['rmdir a lower dir after emptying it', [o.unlink('e/x'), o.unlink('e/moved'), o.rmdir('e')]],
  ['setxattr on a lower file', [o.setxattr('d/h1', 'user.k', 'v')]],
]

describe('fast names', () => {
  it('agree with the kernel through every kind of change, each followed by a listing and lstats of listed and missing names', async () => {
    const base = tempDir('ovlfs-fast-base-')
    buildLayers(base, LAYERS)
    try {
      await withBoth(base, 2, (s) => {
        const problems: string[] = []
        for (const [name, ops] of STEPS) {
          for (const op of ops) {
            const k = apply(s.kernel.mnt, op)
            const f = apply(s.fuse.mnt, op)
            if (k !== f) problems.push(`${name}: ${describeOp(op)}: kernel ${k}, ovlfs ${f}`)
          }
          // First with no listing in between: the addon's table as the change left it (patch item 21).
          const lk = lookups(s.kernel.mnt)
          const lf = lookups(s.fuse.mnt)
          for (const n of NAMES) {
            if (JSON.stringify(lk[n]) !== JSON.stringify(lf[n])) problems.push(`lookups after ${name}: ${n}: kernel ${JSON.stringify(lk[n])} ovlfs ${JSON.stringify(lf[n])}`)
          }
          // Twice: the second time the lookups are answered by the addon (the listing was handed over).
          for (let i = 0; i < 2; i++) problems.push(...compare(probe(s.kernel.mnt), probe(s.fuse.mnt)).map(l => `after ${name} (${i}): ${l}`))
        }
        expect(problems).toEqual([])
      })
    } finally { removeTree(base) }
  })

  it('files opened by the addon read, fstat, fsync and move to the upper copy on copy-up as on the kernel', async () => {
    const base = tempDir('ovlfs-fast-open-base-')
    buildLayers(base, LAYERS)
    const script = `
import json, os, sys
m = sys.argv[1]
out = []
os.listdir(m + '/d')
fd = os.open(m + '/d/top', os.O_RDONLY)
out.append(os.read(fd, 100).decode())
st1 = os.fstat(fd)
out.append(st1.st_ino == os.lstat(m + '/d/top').st_ino)
w = os.open(m + '/d/top', os.O_WRONLY | os.O_APPEND)
os.write(w, b'+more')
os.close(w)
os.lseek(fd, 0, 0)
out.append(os.read(fd, 100).decode())
st2 = os.fstat(fd)
out.append([st2.st_size, st2.st_ino == st1.st_ino])
os.fsync(fd)
try:
    os.write(fd, b'x')
    out.append('write ok')
except OSError as e:
    out.append('write errno %d' % e.errno)
os.close(fd)
fd = os.open(m + '/d/b4', os.O_RDONLY)
os.unlink(m + '/d/b4')
out.append(os.pread(fd, 100, 0).decode())
st3 = os.fstat(fd)
out.append([st3.st_size, st3.st_nlink])
os.close(fd)
fd = os.open(m + '/d/bottom', os.O_RDONLY)
os.rename(m + '/d/bottom', m + '/d/renamed')
out.append(os.read(fd, 100).decode())
os.close(fd)
print(json.dumps(out))
`
    try {
      await withBoth(base, 2, (s) => {
        const run = (mnt: string): string => {
          const r = spawnSync('python3', ['-c', script, mnt], { encoding: 'utf8' })
          if (r.status !== 0) throw new Error(`python on ${mnt}: ${r.stderr}`)
          return r.stdout
        }
        const k = run(s.kernel.mnt)
        // fstat after the unlink: libfuse 2 gets that getattr without its handle, patch item 29 gives it one.
        expect(JSON.parse(k)).toEqual(['top', true, 'top+more', [8, true], 'write errno 9', 'b4', [2, 1], 'bottom'])
        expect(run(s.fuse.mnt)).toBe(k)
      })
    } finally { removeTree(base) }
  })

  it('large reads of files the addon opened are spliced (patch item 33) and agree with the kernel byte for byte, through a copy-up', async () => {
    // A read the addon answers with the file is spliced by libfuse from the layer's file into
    // /dev/fuse; replies under two pages go through memory. Reads at odd offsets and sizes, across
    // and past the end, a whole read in 1 MiB chunks, then an append through another open (a
    // copy-up: the open file follows it, item 19's move) and a fresh open of the copy.
    const SIZE = 3 * 1024 * 1024 + 123
    let big = ''
    for (let i = 0; big.length < SIZE; i++) big += `${i.toString(36)}:${'abcdefghijklmnopqrstuvwxyz'.slice(i % 26)}\n`
    big = big.slice(0, SIZE)
    const base = tempDir('ovlfs-splice-base-')
    buildLayers(base, { lowers: [{ d: dir(), 'd/big': file(big), 'd/mid': file(big.slice(0, 9000)) }], upper: {} })
    const script = `
import hashlib, json, os, sys
m, size = sys.argv[1], int(sys.argv[2])
out = []
os.listdir(m + '/d')
def whole(p):
    h, n = hashlib.sha256(), 0
    fd = os.open(p, os.O_RDONLY)
    while True:
        b = os.read(fd, 1 << 20)
        if not b: break
        h.update(b); n += len(b)
    os.close(fd)
    return [n, h.hexdigest()]
out.append(whole(m + '/d/big'))
out.append(whole(m + '/d/mid'))
fd = os.open(m + '/d/big', os.O_RDONLY)
for off, n in [(0, 1 << 20), (4095, 8193), ((1 << 20) + 1, 2 * 131072 + 7), (size - 200, 200), (size - 100, 5000), (size, 10), (size + 5000, 10), (77, 1)]:
    b = os.pread(fd, n, off)
    out.append([off, len(b), hashlib.sha256(b).hexdigest()])
w = os.open(m + '/d/big', os.O_WRONLY | os.O_APPEND)
os.write(w, b'TAIL')
os.close(w)
out.append(os.pread(fd, 100, size - 6).decode())
b = os.pread(fd, 3 * 131072, size - 2 * 131072)
out.append([len(b), hashlib.sha256(b).hexdigest()])
os.close(fd)
out.append(whole(m + '/d/big'))
print(json.dumps(out))
`
    const run = (mnt: string): string => {
      const r = spawnSync('python3', ['-c', script, mnt, String(SIZE)], { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`python on ${mnt}: ${r.stderr}`)
      return r.stdout
    }
    try {
      await withBoth(base, 1, (s) => {
        const k = run(s.kernel.mnt)
        const parsed = JSON.parse(k) as unknown[]
        expect(parsed[0]).toEqual([SIZE, createHash('sha256').update(big).digest('hex')])
        expect(parsed[10]).toBe(big.slice(-6) + 'TAIL')
        expect((parsed[12] as number[])[0]).toBe(SIZE + 4)
        expect(run(s.fuse.mnt)).toBe(k)
      })
      // The addon answered the reads with the file: at least one READ per 128 KiB of the first
      // whole read (a fresh mount's page cache is empty), counted at unmount.
      const root = tempDir('ovlfs-splice-')
      const mnt = path.join(root, 'mnt')
      const work = path.join(root, 'work')
      const upper = path.join(root, 'upper')
      for (const d of [mnt, work, upper]) fs.mkdirSync(d)
      const log = path.join(root, 'daemon.log')
      const daemon = await mountForeground(mnt, `lowerdir=${path.join(base, 'lower0')},upperdir=${upper},workdir=${work}`, log, ['--log-level=info'])
      try {
        fs.readdirSync(path.join(mnt, 'd'))
        expect(createHash('sha256').update(fs.readFileSync(path.join(mnt, 'd/big'))).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'))
      } finally { await daemon.stop() }
      expect(logLine<{ spliced: number }>(log, 'fast names').spliced).toBeGreaterThanOrEqual(Math.floor(SIZE / 131072))
      removeTree(root)
    } finally { removeTree(base) }
  })

  it('are answered by the addon after a listing, and a change through the mount shows in the next lstat', async () => {
    const root = tempDir('ovlfs-fast-')
    const names = Array.from({ length: 50 }, (_v, i) => `f${String(i).padStart(2, '0')}`)
    const lower: LayerSet['lowers'][number] = { d: dir() }
    for (const n of names) lower[`d/${n}`] = file(n, { mode: 0o644 })
    const { lowers } = buildLayers(root, { lowers: [lower], upper: {} })
    const upper = path.join(root, 'upper')
    const work = path.join(root, 'work')
    const mnt = path.join(root, 'mnt')
    fs.mkdirSync(work)
    fs.mkdirSync(mnt)
    const log = path.join(root, 'daemon.log')
    const daemon = await mountForeground(mnt, `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, log, ['--log-level=info'])
    try {
      const d = path.join(mnt, 'd')
      expect(fs.readdirSync(d).sort()).toEqual(names)
      for (const n of names) expect(fs.lstatSync(path.join(d, n)).mode & 0o777).toBe(0o644)
      for (let i = 0; i < 20; i++) expect(fs.existsSync(path.join(d, `missing${i}`))).toBe(false)
      // A change through the mount: the next lstat shows it (the table was emptied), and so does a later listing's.
      // Opened by the addon: read, and read again after a copy-up of the same file through another open.
      const rd = fs.openSync(path.join(d, 'f07'), 'r')
      try {
        expect(fs.readFileSync(rd, 'utf8')).toBe('f07')
        fs.appendFileSync(path.join(d, 'f07'), '+')
        expect(fs.readSync(rd, Buffer.alloc(10), 0, 10, 0)).toBe(4)
      } finally { fs.closeSync(rd) }
      fs.chmodSync(path.join(d, 'f07'), 0o600)
      expect(fs.lstatSync(path.join(d, 'f07')).mode & 0o777).toBe(0o600)
      expect(fs.readFileSync(path.join(d, 'f07'), 'utf8')).toBe('f07+')
      fs.writeFileSync(path.join(d, 'missing3'), 'now')
      expect(fs.lstatSync(path.join(d, 'missing3')).size).toBe(3)
      fs.unlinkSync(path.join(d, 'f08'))
      expect(fs.existsSync(path.join(d, 'f08'))).toBe(false)
      expect(fs.readdirSync(d).length).toBe(names.length)
      expect(fs.lstatSync(path.join(d, 'f09')).mode & 0o777).toBe(0o644)
      expect(fs.existsSync(path.join(d, 'f08'))).toBe(false)
    } finally {
      await daemon.stop()
    }
    const stats = logLine<{ held: number, answered: number, absent: number, opened: number }>(log, 'fast names')
    expect(stats.opened).toBeGreaterThanOrEqual(1)
    // The 50 lstats after the listing and the 20 missing names at least (the kernel caches what it was told, so each is asked once).
    expect(stats.answered).toBeGreaterThanOrEqual(70)
    expect(stats.absent).toBeGreaterThanOrEqual(20)
    removeTree(root)
  })

  it('hold a listing larger than the room left in the table: it is put again after emptying the table, and every name is found', async () => {
    // The addon holds 2^18 names. After a listing of 140,000 names, one of another 140,000 does not
    // fit: its later parts are refused (without emptying the table, which would leave the earlier
    // parts of it out), and it is handed over again from the start, emptying the table first. The
    // table must never claim a listing complete without all of its names: a name missing from a
    // complete listing would be ENOENT.
    const root = tempDir('ovlfs-fast-big-')
    const low = path.join(root, 'low')
    const N = 140_000
    const made = spawnSync('python3', ['-c', `
import os, sys
for d in ('a', 'b'):
    os.makedirs(os.path.join(sys.argv[1], d))
    for i in range(int(sys.argv[2])):
        os.close(os.open(os.path.join(sys.argv[1], d, 'n%06d' % i), os.O_CREAT | os.O_WRONLY, 0o644))
`, low, String(N)], { encoding: 'utf8' })
    expect(made.status, made.stderr).toBe(0)
    const upper = path.join(root, 'upper')
    const work = path.join(root, 'work')
    const mnt = path.join(root, 'mnt')
    for (const d of [upper, work, mnt]) fs.mkdirSync(d)
    const log = path.join(root, 'daemon.log')
    const daemon = await mountForeground(mnt, `lowerdir=${low},upperdir=${upper},workdir=${work}`, log, ['--log-level=info'])
    try {
      for (const d of ['a', 'b']) {
        const ls = spawnSync('ls', ['-f', path.join(mnt, d)], { encoding: 'utf8', maxBuffer: 64 << 20 })
        expect(ls.status, ls.stderr).toBe(0)
        expect(ls.stdout.split('\n').filter(n => n !== '').length).toBe(N + 2)
      }
      let missing = 0
      for (let i = 0; i < N; i++) if (!fs.existsSync(path.join(mnt, 'b', `n${String(i).padStart(6, '0')}`))) missing++
      expect(missing).toBe(0)
      for (let i = 0; i < 100; i++) expect(fs.existsSync(path.join(mnt, 'b', `x${i}`))).toBe(false)
      expect(fs.existsSync(path.join(mnt, 'a', 'n000123'))).toBe(true)
    } finally {
      await daemon.stop()
    }
    const stats = logLine<{ held: number, answered: number, absent: number }>(log, 'fast names')
    // b's names went in again after the table was emptied: it holds b's listing, not a's too.
    expect(stats.held).toBeLessThan(N + 20_000 + 1000)
    expect(stats.held).toBeGreaterThanOrEqual(N)
    expect(stats.answered).toBeGreaterThanOrEqual(N)
    expect(stats.absent).toBeGreaterThanOrEqual(100)
    removeTree(root)
  }, 300_000)
})
