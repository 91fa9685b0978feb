// Attributes after a change (fuse-native patch item 20, src/fuse/adapter.ts): chmod, chown,
// utimens, truncate, ftruncate and create answer with the object's attributes afterwards, and the
// addon answers libfuse 2's getattr/fgetattr right after the change from them, so a SETATTR or a
// CREATE crosses to the JS thread once instead of twice (and chmod, chown and utimens of an upper
// file the fast names hold never cross: item 22). Checked here, on a real mount: (1) a
// series of fchmod/fchown/futimes/ftruncate through one open file, and creates, reach the daemon
// with no getattr or fgetattr after them (its debug log), and (2) what the caller then sees
// (fstat, and stat through the name) is exactly what the kernel's overlayfs shows for the same
// series.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, symlink, type LayerSet } from './harness/layers'
import { FUSE_OPTS, KERNEL_OPTS, mountForeground, removeTree, tempDir, unmountAll, withBoth } from './harness/mounts'

afterAll(unmountAll)

const LAYERS: LayerSet = {
  lowers: [{
    d: dir({ mode: 0o755 }), 'd/lower': file('lower data\n', { mode: 0o644 }), 'd/ln': symlink('lower'),
    'd/r1': file('1'), 'd/r2': file('2'), 'd/r3': file('3'),
  }],
  upper: {},
}

/**
 * In the mount `root`: change d/lower and a new file through one open file each (so no lookups
 * come between the changes), create 10 files, and print what fstat and stat show after each step.
 */
const SERIES = `
import json, os, sys
root = sys.argv[1]
out = []
def show(tag, fd, p):
    a = os.fstat(fd)
    b = os.stat(p)
    # mtimes set by the series (or the lower file's) are compared; "now" differs between the two sides.
    out.append([tag] + [[oct(s.st_mode), s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns if s.st_mtime < 1262304000 else 'recent', s.st_nlink] for s in (a, b)])
for name in ('lower', 'new'):
    p = os.path.join(root, 'd', name)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    show(name + ' open', fd, p)
    for i in range(5):
        os.fchmod(fd, 0o600 + i)
        show(name + ' fchmod', fd, p)
        os.fchown(fd, 1000 + i, 2000 + i)
        show(name + ' fchown', fd, p)
        os.ftruncate(fd, 100 * i + 3)
        show(name + ' ftruncate', fd, p)
        os.utime(fd, ns=(1_000_000_000 * (i + 1), 1_000_000_007 * (i + 1)))
        show(name + ' futimes', fd, p)
    os.close(fd)
# After a listing of d, root's creates there are made by the addon (patch item 25), whose handles
# JS adopts. A created file (its fd lent to the addon, patch item 23) with the setgid bit: root's
# writes keep it, a write by another user through the same open file drops it (that one goes to
# JS; the kernel asks for the chmod itself, as libfuse 2 has no handle_killpriv).
os.listdir(os.path.join(root, 'd'))
p = os.path.join(root, 'd', 'lent')
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.fchmod(fd, 0o2777)
os.write(fd, b'root writes ')
s1 = os.fstat(fd)
pid = os.fork()
if pid == 0:
    os.setgid(65534)
    os.setuid(65534)
    os.write(fd, b'nobody writes')
    os._exit(0)
os.waitpid(pid, 0)
s2 = os.fstat(fd)
os.close(fd)
out.append(['lent', oct(s1.st_mode), s1.st_size, oct(s2.st_mode), s2.st_size, open(p).read()])
# Read, fsync, ftruncate and fstat through the handle of a created file (JS's, once adopted).
fd = os.open(os.path.join(root, 'd', 'rw'), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o4750)
os.write(fd, b'0123456789')
os.fsync(fd)
os.ftruncate(fd, 4)
s = os.fstat(fd)
out.append(['rw', oct(s.st_mode), s.st_size, s.st_nlink, os.pread(fd, 100, 0).decode()])
os.close(fd)
# Root's unlinks of lower files in the (upper) directory d: whiteouts the addon links (patch item 26).
for name in ('r1', 'r2', 'r3'):
    os.unlink(os.path.join(root, 'd', name))
out.append(['unlinked', sorted(os.listdir(os.path.join(root, 'd'))), [os.path.lexists(os.path.join(root, 'd', n)) for n in ('r1', 'r2', 'r3')]])
for i in range(10):
    fd = os.open(os.path.join(root, 'd', 'c%d' % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    s = os.stat(os.path.join(root, 'd', 'c%d' % i))
    out.append(['create', oct(s.st_mode), s.st_size, s.st_nlink])
print(json.dumps(out))
`

/**
 * The ops the daemon logged (debug level) after byte `start` of its log, once `done` holds for
 * them or 10 s have passed: the daemon writes its log asynchronously, so the last lines of a
 * burst may land after the calls that caused them returned.
 */
async function loggedOps (log: string, start: number, done: (ops: string[]) => boolean): Promise<string[]> {
  const read = (): string[] => fs.readFileSync(log, 'utf8').slice(start).split('\n').filter(l => l.includes('"op":'))
    .map(l => (JSON.parse(l) as { op: string }).op)
  for (let i = 0; i < 100 && !done(read()); i++) await new Promise(resolve => setTimeout(resolve, 100))
  return read()
}

function series (root: string): unknown {
  const r = spawnSync('python3', ['-c', SERIES, root], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`series failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as unknown
}

describe('attributes after a change (patch item 20)', () => {
  it('SETATTR and CREATE cross to JS at most once: no getattr/fgetattr follows them in the daemon', async () => {
    const base = tempDir('ovlfs-after-')
    try {
      const { lowers } = buildLayers(base, LAYERS)
      const upper = path.join(base, 'upper')
      const work = path.join(base, 'work')
      const mnt = path.join(base, 'mnt')
      for (const d of [work, mnt]) fs.mkdirSync(d)
      const log = path.join(base, 'daemon.log')
      const daemon = await mountForeground(mnt, `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, log, ['--log-level=debug'])
      let jsCreates = 0
      try {
        const p = path.join(mnt, 'd', 'f')
        fs.writeFileSync(p, 'x')
        const fd = fs.openSync(p, 'r+')
        const start = fs.readFileSync(log, 'utf8').length
        for (let i = 0; i < 10; i++) {
          fs.fchmodSync(fd, 0o600 + i)
          fs.fchownSync(fd, 1000 + i, 2000 + i)
          fs.ftruncateSync(fd, 10 + i)
          fs.futimesSync(fd, 1000 + i, 2000 + i)
        }
        const st = fs.fstatSync(fd)
        fs.closeSync(fd)
        expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs, st.size]).toEqual([0o611, 1009, 2009, 2_009_000, 19])
        const ops = await loggedOps(log, start, (o) => o.filter(x => x === 'ftruncate').length >= 10)
        const count = (op: string): number => ops.filter(o => o === op).length
        // d/f is an upper file with one name that the fast names hold (JS just created it): its
        // chmod, chown and utimens are made by the addon (patch item 22) and never reach JS;
        // ftruncate through the open file reaches JS once each. libfuse's getattr after a change
        // does not reach JS either (the last fstat may).
        expect([count('chmod'), count('chown'), count('utimens'), count('ftruncate')]).toEqual([0, 0, 0, 10])
        expect(count('getattr') + count('fgetattr')).toBeLessThanOrEqual(1)
        const before = fs.readFileSync(log, 'utf8').length
        for (let i = 0; i < 10; i++) fs.closeSync(fs.openSync(path.join(mnt, 'd', `n${i}`), 'wx'))
        // Once JS has looked up a few names in d, it hands its listing to the addon, which then makes
        // root's creates there itself (item 25): each create is JS's or the addon's, counted at unmount.
        fs.statfsSync(mnt) // JS logs it after everything the creates made it log
        const created = await loggedOps(log, before, (o) => o.includes('statfs'))
        jsCreates = created.filter(o => o === 'create').length
        expect(jsCreates).toBeGreaterThanOrEqual(1)
        expect(created.filter(o => o === 'fgetattr')).toHaveLength(0)
        // A lower symlink in a listed directory is read by the addon (item 24); root's create of a
        // new name in that directory, writes through the file and its release, with no other
        // operation in between, are made by the addon (items 23, 25): none of them reaches JS
        // (the release and open that JS logs are those of the read that follows).
        const before2 = fs.readFileSync(log, 'utf8').length
        fs.readdirSync(path.join(mnt, 'd'))
        expect(fs.readlinkSync(path.join(mnt, 'd', 'ln'))).toBe('lower')
        const w = fs.openSync(path.join(mnt, 'd', 'w'), 'wx')
        for (let i = 0; i < 10; i++) fs.writeSync(w, `line ${i}\n`)
        fs.closeSync(w)
        expect(fs.readFileSync(path.join(mnt, 'd', 'w'), 'utf8')).toBe(Array.from({ length: 10 }, (_, i) => `line ${i}\n`).join(''))
        const lent = await loggedOps(log, before2, (o) => o.includes('release'))
        expect(lent.filter(o => o === 'create')).toEqual([])
        expect(lent.filter(o => o === 'open' || o === 'release')).toEqual(['open', 'release'])
        // Root's unlinks of lower files in d, now an upper directory the addon holds: whiteouts it
        // links itself (item 26), once JS has made the work dir's shared whiteout (at the first
        // whiteout of the mount, here r1's); JS forgets the names before its next operation.
        const before3 = fs.readFileSync(log, 'utf8').length
        for (const n of ['r1', 'r2', 'r3']) fs.unlinkSync(path.join(mnt, 'd', n))
        expect(fs.readdirSync(path.join(mnt, 'd')).filter(n => n.startsWith('r'))).toEqual([])
        for (const n of ['r1', 'r2', 'r3']) expect(fs.existsSync(path.join(mnt, 'd', n))).toBe(false)
        expect(fs.lstatSync(path.join(upper, 'd', 'r1')).isCharacterDevice()).toBe(true)
        fs.statfsSync(mnt)
        const removed = await loggedOps(log, before3, (o) => o.includes('statfs'))
        expect(removed.filter(o => o === 'unlink')).toEqual(['unlink'])
        expect(lent.filter(o => o === 'readlink')).toEqual([])
      } finally {
        await daemon.stop()
      }
      // JS's write is not logged per request: the daemon's count of the addon's own writes is (at unmount).
      const stats = fs.readFileSync(log, 'utf8').split('\n').filter(l => l.includes('"fast names"')).map(l => JSON.parse(l) as { writes: number, creates: number, unlinks: number })
      expect(stats).toHaveLength(1)
      expect(stats[0].writes).toBeGreaterThanOrEqual(10)
      expect(stats[0].creates).toBe(10 - jsCreates + 1)
      expect(stats[0].unlinks).toBe(2)
    } finally {
      removeTree(base)
    }
  })

  it('what fstat and stat show after each change agrees with the kernel overlayfs', async () => {
    const base = tempDir('ovlfs-after-base-')
    buildLayers(base, LAYERS)
    try {
      // allow_other: without it FUSE refuses every request of another user (the series writes as nobody once).
      const got = await withBoth(base, 1, (s) => ({ kernel: series(s.kernel.mnt), fuse: series(s.fuse.mnt) }), { kernel: KERNEL_OPTS, fuse: `${FUSE_OPTS},allow_other` })
      expect(got.fuse).toEqual(got.kernel)
    } finally {
      removeTree(base)
    }
  })
})
