// Reads on a mount without an upper layer (patch item 32): read-only opens of lower files
// the addon opened (item 19) are answered with that file as their FUSE passthrough backing
// file, so the kernel reads and maps it without the daemon, as the kernel's overlayfs reads
// the lower file. Checked against the kernel's overlayfs of the same layers: every file's
// bytes by read() and mmap(), preads at offsets, two opens of one file closed in either
// order, files opened again and again by several threads, a hard-linked file (opened by JS,
// not the addon) beside them. The daemon's own read bytes (/proc/PID/io) and the reads it
// answered with the file (spliced, patch item 33: not in those bytes) show where the data came
// from; its log line ("passthrough") counts opens with a backing file. With
// OVLFS_PASSTHROUGH=0, and on a mount with an upper layer (where a file open read-only must
// follow its copy-up), there is none.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildLayers, dir, file, hardlink, symlink, type Layer } from './harness/layers'
import { logLine } from './harness/daemon'
import { mountForeground, mountKernelLowers, removeTree, tempDir, unmount, unmountAll } from './harness/mounts'

afterAll(unmountAll)

const BIG = 6 << 20
const bigData = randomBytes(BIG / 2).toString('hex') // 6 MiB of text
const MANY = 120

function layerSet (): { top: Layer, bottom: Layer } {
  const bottom: Layer = {
    a: dir(),
    'a/shadow': file('bottom\n'),
    'a/only-bottom': file('only in the bottom layer\n'),
    big: file(bigData),
    hard1: file('one inode, two names\n'),
    hard2: hardlink('hard1'),
    sym: symlink('a/only-bottom'),
    m: dir(),
  }
  for (let i = 0; i < MANY; i++) bottom[`m/f${i}`] = file(`file ${i}\n`.repeat(i + 1))
  const top: Layer = { a: dir(), 'a/shadow': file('top\n'), 'a/only-top': file('only in the top layer\n'), empty: file('') }
  return { top, bottom }
}

// Runs in a child process (python3): reads the files of MNT and REF (the kernel's overlay) and compares.
const READER = String.raw`
import hashlib, json, mmap, os, random, sys, threading
mnt, ref, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
bad = []
def h(b): return hashlib.sha256(b).hexdigest()
def whole(root, n):
    with open(os.path.join(root, n), 'rb') as f: return f.read()
for n in names:
    if h(whole(mnt, n)) != h(whole(ref, n)): bad.append('read ' + n)
# mmap of a file with a backing file
with open(os.path.join(mnt, 'big'), 'rb') as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    if h(m[:]) != h(whole(ref, 'big')): bad.append('mmap big')
    m.close()
# two opens of one file, closed in either order; preads at offsets
want = whole(ref, 'big')
for order in (0, 1):
    a = os.open(os.path.join(mnt, 'big'), os.O_RDONLY)
    b = os.open(os.path.join(mnt, 'big'), os.O_RDONLY)
    for off in (0, 4095, 1 << 20, len(want) - 10):
        for fd in (a, b):
            if os.pread(fd, 4096, off) != want[off:off + 4096]: bad.append('pread %d order %d' % (off, order))
    first, second = (a, b) if order == 0 else (b, a)
    os.close(first)
    if os.pread(second, 100, 12345) != want[12345:12445]: bad.append('pread after the other close, order %d' % order)
    os.close(second)
# several threads opening, reading and closing the same files
expected = {n: h(whole(ref, n)) for n in names}
def worker(seed):
    r = random.Random(seed)
    for _ in range(60):
        n = r.choice(names)
        try:
            with open(os.path.join(mnt, n), 'rb') as f: got = f.read()
            if h(got) != expected[n]: bad.append('thread read ' + n)
        except OSError as e:
            bad.append('thread %s: %s' % (n, e))
ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({'bad': bad[:20], 'count': len(bad)}))
`

interface PtStats { on: boolean, opens: number, backings: number, refused: number }

function readBytes (pid: number): number {
  const m = /^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))
  return Number(m![1])
}

describe('passthrough (patch item 32)', () => {
  const root = tempDir('ovlfs-diff-pt-')
  const { top, bottom } = layerSet()
  const { lowers } = buildLayers(root, { lowers: [top, bottom] })
  const names = ['a/shadow', 'a/only-bottom', 'a/only-top', 'big', 'hard1', 'hard2', 'sym', 'empty', ...Array.from({ length: MANY }, (_v, i) => `m/f${i}`)]
  const ref = path.join(root, 'kernel')
  fs.mkdirSync(ref)
  afterAll(() => removeTree(root))

  const read = (mnt: string): void => {
    const r = spawnSync('python3', ['-c', READER, mnt, ref, JSON.stringify(names)], { encoding: 'utf8', timeout: 120_000 })
    expect(r.status, `reader: ${r.stderr}`).toBe(0)
    const out = JSON.parse(r.stdout) as { bad: string[], count: number }
    expect(out.bad, `${out.count} differences from the kernel's overlayfs`).toEqual([])
  }

  /** Mount, read everything, then `big` 8 times from a cold page cache; the daemon's read bytes meanwhile, its log line and spliced reads. */
  const run = async (tag: string, opts: string, env: NodeJS.ProcessEnv): Promise<{ stats: PtStats, daemonRead: number, spliced: number }> => {
    const mnt = path.join(root, `mnt-${tag}`)
    fs.mkdirSync(mnt)
    const log = path.join(root, `daemon-${tag}.log`)
    const daemon = await mountForeground(mnt, opts.replace('MNT', mnt), log, ['--log-level=info'], env)
    let daemonRead = 0
    try {
      read(mnt)
      // Cold: FUSE's page cache (without passthrough) and the layer's would serve them otherwise.
      fs.writeFileSync('/proc/sys/vm/drop_caches', '1')
      const before = readBytes(daemon.pid)
      for (let i = 0; i < 8; i++) {
        const got = fs.readFileSync(path.join(mnt, 'big'), 'utf8')
        expect(got.length).toBe(BIG)
      }
      daemonRead = readBytes(daemon.pid) - before
    } finally {
      await daemon.stop()
    }
    return { stats: logLine<PtStats>(log, 'passthrough'), daemonRead, spliced: logLine<{ spliced: number }>(log, 'fast names').spliced }
  }

  it('a mount without an upper layer: the kernel reads the layer files itself, with the same bytes as the kernel overlayfs', async () => {
    mountKernelLowers(lowers, ref) // the reference
    try {
      const on = await run('on', `lowerdir=${lowers.join(':')}`, {})
      expect(on.stats.on, 'the kernel took passthrough at INIT').toBe(true)
      // Every file read above but the hard-linked one (two names: JS opens it) and the empty one.
      expect(on.stats.opens, JSON.stringify(on.stats)).toBeGreaterThanOrEqual(MANY)
      expect(on.stats.backings).toBeGreaterThan(0)
      expect(on.stats.backings).toBeLessThanOrEqual(on.stats.opens)
      expect(on.stats.refused).toBe(0)
      // 48 MiB read through the mount; the daemon read none of it (only requests from /dev/fuse).
      expect(on.daemonRead, 'bytes the daemon read while `big` was read 8 times').toBeLessThan(BIG / 4)
      expect(on.spliced, 'reads the addon answered with the file, over the whole mount').toBeLessThan(BIG / 131072 / 4)

      const off = await run('off', `lowerdir=${lowers.join(':')}`, { OVLFS_PASSTHROUGH: '0' })
      expect(off.stats).toEqual({ ...off.stats, on: false, opens: 0, backings: 0 })
      // Here the daemon reads the data (the first of the 8 reads at least; the rest come from FUSE's page cache):
      // it answers each READ (at most 128 KiB) with the file, and libfuse splices it.
      expect(off.spliced).toBeGreaterThanOrEqual(BIG / 131072)
    } finally {
      await unmount(ref)
    }
  })

  it('a mount with an upper layer has no passthrough: a file open read-only follows its copy-up', async () => {
    mountKernelLowers(lowers, ref) // the reference
    const upper = path.join(root, 'upper-rw')
    const work = path.join(root, 'work-rw')
    fs.mkdirSync(upper)
    fs.mkdirSync(work)
    try {
      const rw = await run('rw', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, {})
      expect(rw.stats).toEqual({ ...rw.stats, on: false, opens: 0, backings: 0 })
    } finally {
      await unmount(ref)
    }
  })
})
