// Copy-up: on the first change of a lower object, the engine brings it into
// the upper layer (parents first) with its data, mode, owner, times and
// xattrs, through the work dir, keeping st_ino.
import * as fs from 'node:fs'
import { describe, expect, it, vi } from 'vitest'
import * as sys from '../native/sys'
import { CopyUp } from './copyup'
import {
  C, ROOT, chr, dir, expectErrno, fifo, file, hardlink, readMerged, realTree, sparse, stack, symlink, ts, useTmp,
  writeMerged, xattrNames, type Stack, workLeft } from './test-helpers'

// A transparent wrapper over the addon, so a test can hold one lgetxattr call
// at a chosen point (to order two concurrent operations deterministically).
const gate = vi.hoisted(() => ({
  hold: undefined as undefined | { path: string, name: string, reached: () => void, release: Promise<void> },
  holdCopy: undefined as undefined | { src: string, reached: () => void, release: Promise<void> },
}))
vi.mock('../native/sys', async (importOriginal) => {
  const real = await importOriginal<typeof import('../native/sys')>()
  return {
    ...real,
    lgetxattr: async (p: sys.PathLike, name: sys.PathLike): Promise<Buffer | null> => {
      const h = gate.hold
      if (h !== undefined && samePath(p, h.path) && String(name) === h.name) {
        gate.hold = undefined
        h.reached()
        await h.release
      }
      return await real.lgetxattr(p, name)
    },
    copyData: async (src: sys.PathLike, dst: sys.PathLike, mode: number): Promise<number> => {
      const n = await real.copyData(src, dst, mode)
      const h = gate.holdCopy
      if (h !== undefined && samePath(src, h.src)) {
        gate.holdCopy = undefined
        h.reached()
        await h.release
      }
      return n
    },
  }
})

/** The engine addresses layers through /proc/self/fd/N (it holds them open): compare real paths. */
function samePath (p: sys.PathLike, expected: string): boolean {
  try {
    return fs.realpathSync(String(p)) === fs.realpathSync(expected)
  } catch {
    return String(p) === expected
  }
}

/** A gate: `reached` resolves when the held call arrives; `open()` lets it go on. */
function makeGate (): { reached: Promise<void>, arrive: () => void, release: Promise<void>, open: () => void } {
  let arrive!: () => void
  let open!: () => void
  const reached = new Promise<void>(resolve => { arrive = resolve })
  const release = new Promise<void>(resolve => { open = resolve })
  return { reached, arrive, release, open }
}

useTmp()

const T1 = 1_000_000_000_123_456_789n // 2001-09-09, odd nanoseconds
const T2 = 1_100_000_000_987_654_321n

/** A valid VFS_CAP_REVISION_2 security.capability value: cap_net_bind_service+ep. */
function capValue (): Buffer {
  const b = Buffer.alloc(20)
  b.writeUInt32LE(0x02000001, 0)
  b.writeUInt32LE(1 << 10, 4)
  return b
}

/** A system.posix_acl_* value: version 2, then (tag, perm, id) entries; id -1 for the *_OBJ/MASK/OTHER tags. */
function posixAcl (entries: Array<[number, number, number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length)
  b.writeUInt32LE(2, 0)
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i)
    b.writeUInt16LE(perm, 6 + 8 * i)
    b.writeUInt32LE(id >>> 0, 8 + 8 * i)
  })
  return b
}

function lst (p: string): fs.BigIntStats {
  return fs.lstatSync(p, { bigint: true })
}

describe('copy-up', () => {
  it('copies the data before the first write (open for write without O_TRUNC)', async () => {
    const s = await stack({ lowers: [{ f: 'hello lower world' }] })
    await writeMerged(s.engine, '/f', 'HELLO', 0)
    expect(fs.readFileSync(s.up('/f'), 'utf8')).toBe('HELLO lower world')
    expect(fs.readFileSync(s.low(0, '/f'), 'utf8')).toBe('hello lower world')
    expect(await readMerged(s.engine, '/f')).toBe('HELLO lower world')
  })

  it('O_TRUNC and truncate(0) copy metadata but no data', async () => {
    const s = await stack({ lowers: [{ f: file('old', { mode: 0o604, uid: 3, gid: 4 }), g: file('old', { mode: 0o640 }) }] })
    await writeMerged(s.engine, '/f', 'new', 0, C.O_WRONLY | C.O_TRUNC)
    await s.engine.truncate('/g', 0)
    expect(fs.readFileSync(s.up('/f'), 'utf8')).toBe('new')
    expect(fs.readFileSync(s.up('/g'), 'utf8')).toBe('')
    expect([Number(lst(s.up('/f')).mode & 0o7777n), Number(lst(s.up('/f')).uid), Number(lst(s.up('/f')).gid)]).toEqual([0o604, 3, 4])
    expect(Number(lst(s.up('/g')).mode & 0o7777n)).toBe(0o640)
  })

  it.each([
    ['open for write', async (s: Stack) => { await s.engine.release(await s.engine.open('/f', C.O_RDWR)) }],
    ['truncate', async (s: Stack) => { await s.engine.truncate('/f', 4) }],
    ['chmod', async (s: Stack) => { await s.engine.chmod('/f', 0o600) }],
    ['chown', async (s: Stack) => { await s.engine.chown('/f', 1, 1) }],
    ['utimens', async (s: Stack) => { await s.engine.utimens('/f', ts(T2), ts(T2)) }],
    ['setxattr', async (s: Stack) => { await s.engine.setxattr('/f', 'user.new', Buffer.from('v'), 0) }],
    ['link', async (s: Stack) => { await s.engine.link('/f', '/f2') }],
    ['rename', async (s: Stack) => { await s.engine.rename('/f', '/f2') }],
  ])('is triggered by %s (metacopy=off: the data too)', async (_op, act) => {
    const s = await stack({ lowers: [{ f: 'lower data' }], engine: { metacopy: false } })
    expect(fs.existsSync(s.up('/f'))).toBe(false)
    await act(s)
    const name = fs.existsSync(s.up('/f2')) ? '/f2' : '/f'
    expect(fs.lstatSync(s.up(name)).isFile()).toBe(true)
    expect(fs.readFileSync(s.up(name), 'utf8')).toBe('lower data'.slice(0, fs.statSync(s.up(name)).size))
    expect(workLeft(s)).toEqual([])
  })

  it('is not triggered by reads', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: file('x', { xattrs: { 'user.a': '1' } }) }) }] })
    await readMerged(s.engine, '/d/f')
    await s.engine.getattr('/d/f')
    await s.engine.readdir('/d')
    await s.engine.getxattr('/d/f', 'user.a')
    await s.engine.listxattr('/d/f')
    expect(await realTree(s.upper)).toEqual({})
  })

  it('keeps mode (setuid, setgid, sticky), owner and ns-exact atime/mtime', async () => {
    const s = await stack({
      lowers: [{
        f: file('data', { mode: 0o6755, uid: 1001, gid: 1002, atimeNs: T1, mtimeNs: T2 }),
        d: dir({}, { mode: 0o1777, uid: 5, gid: 6, atimeNs: T2, mtimeNs: T1 }),
      }],
    })
    const before = await s.engine.getattr('/f')
    await s.engine.setxattr('/f', 'user.trigger', Buffer.from('1'), 0)
    await s.engine.setxattr('/d', 'user.trigger', Buffer.from('1'), 0)
    const f = lst(s.up('/f'))
    expect(Number(f.mode & 0o7777n)).toBe(0o6755)
    expect([Number(f.uid), Number(f.gid)]).toEqual([1001, 1002])
    expect(f.atimeNs).toBe(T1)
    expect(f.mtimeNs).toBe(T2)
    const d = lst(s.up('/d'))
    expect(Number(d.mode & 0o7777n)).toBe(0o1777)
    expect([Number(d.uid), Number(d.gid)]).toEqual([5, 6])
    expect(d.mtimeNs).toBe(T1)
    const after = await s.engine.getattr('/f')
    expect({ ...after, ctimeNs: 0n }).toEqual({ ...before, ctimeNs: 0n })
  })

  it('keeps the ns-exact atime of a directory (looking a directory up does not read it, as in the kernel)', async () => {
    // relatime: reading a directory whose atime is old sets it to now. The kernel's
    // lookup only checks the opaque xattr; the copy-up then keeps the lower atime.
    const s = await stack({ lowers: [{ d: dir({ x: 'x' }, { atimeNs: T2, mtimeNs: T1 }) }] })
    expect((await s.engine.getattr('/d')).atimeNs).toBe(T2)
    await s.engine.setxattr('/d', 'user.trigger', Buffer.from('1'), 0)
    expect(lst(s.up('/d')).atimeNs).toBe(T2)
    expect((await s.engine.getattr('/d')).atimeNs).toBe(T2)
  })

  it('copies user.*, trusted.* and security.capability xattrs (capability kept despite the chown)', async () => {
    const cap = capValue()
    const s = await stack({
      lowers: [{
        f: file('x', { mode: 0o755, uid: 10, gid: 10, xattrs: { 'user.a': 'A', 'trusted.b': 'B', 'security.capability': cap } }),
        d: dir({}, { xattrs: { 'user.d': 'D', 'trusted.dd': 'DD' } }),
      }],
    })
    await s.engine.utimens('/f', ts(T1), ts(T1))
    await s.engine.utimens('/d', ts(T1), ts(T1))
    expect(await sys.lgetxattr(s.up('/f'), 'user.a')).toEqual(Buffer.from('A'))
    expect(await sys.lgetxattr(s.up('/f'), 'trusted.b')).toEqual(Buffer.from('B'))
    expect(await sys.lgetxattr(s.up('/f'), 'security.capability')).toEqual(cap)
    expect(await sys.lgetxattr(s.up('/d'), 'user.d')).toEqual(Buffer.from('D'))
    expect(await sys.lgetxattr(s.up('/d'), 'trusted.dd')).toEqual(Buffer.from('DD'))
    expect((await s.engine.listxattr('/f')).sort()).toEqual(['security.capability', 'trusted.b', 'user.a'])
  })

  it('copies POSIX ACLs (access and default)', async () => {
    const acl = posixAcl([[1, 7, -1], [2, 5, 1000], [4, 5, -1], [0x10, 5, -1], [0x20, 4, -1]])
    const s = await stack({
      lowers: [{
        f: file('x', { mode: 0o654, xattrs: { 'system.posix_acl_access': acl } }),
        d: dir({}, { mode: 0o755, xattrs: { 'system.posix_acl_default': acl } }),
      }],
    })
    const modeBefore = (await s.engine.getattr('/f')).mode
    await s.engine.chown('/f', 1, 1)
    await s.engine.chown('/d', 1, 1)
    expect(await sys.lgetxattr(s.up('/f'), 'system.posix_acl_access')).toEqual(acl)
    expect(await sys.lgetxattr(s.up('/d'), 'system.posix_acl_default')).toEqual(acl)
    expect((await s.engine.getattr('/f')).mode).toBe(modeBefore)
  })

  it('chown with -1 (0xffffffff) leaves that id as it was', async () => {
    const s = await stack({ lowers: [{ f: file('x', { uid: 11, gid: 12 }) }] })
    await s.engine.chown('/f', 0xffffffff, 13)
    await s.engine.chown('/f', 14, 0xffffffff)
    const a = await s.engine.getattr('/f')
    expect([a.uid, a.gid]).toEqual([14, 13])
  })

  it('layers on two filesystems: st_ino stays unique and unchanged by copy-up', async () => {
    const s = await stack({ upper: { u1: 'u', u2: 'u' }, lowers: [{ a: 'a', b: 'b', d: dir({ c: 'c' }) }], lowersApart: true })
    expect(fs.statSync(s.lowers[0] as string).dev).not.toBe(fs.statSync(s.upper).dev)
    const paths = ['', '/u1', '/u2', '/a', '/b', '/d', '/d/c']
    const before = await Promise.all(paths.map(async p => (await s.engine.getattr(p)).ino))
    expect(new Set(before).size).toBe(paths.length)
    await s.engine.chmod('/a', 0o600)
    await writeMerged(s.engine, '/d/c', 'C')
    const after = await Promise.all(paths.map(async p => (await s.engine.getattr(p)).ino))
    expect(after).toEqual(before)
    expect(before.every(n => Number.isSafeInteger(n) && n > 0)).toBe(true)
  })

  it('does not copy overlay-private trusted.overlay.* xattrs', async () => {
    const s = await stack({
      lowers: [{ f: file('x', { xattrs: { 'trusted.overlay.origin': 'stale', 'trusted.overlay.opaque': 'y', 'user.keep': 'k' } }) }],
    })
    await s.engine.chmod('/f', 0o600)
    const upperNames = await xattrNames(s.up('/f'))
    expect(upperNames).toContain('user.keep')
    expect(upperNames).not.toContain('trusted.overlay.origin')
    expect(upperNames).not.toContain('trusted.overlay.opaque')
  })

  it('keeps a user.overlay.* xattr that the merged view shows (trusted namespace), as the kernel copies it', async () => {
    // With trusted.overlay.* in use, user.overlay.foo is an ordinary xattr: listed before copy-up,
    // and the kernel copies it up. (user.overlay.opaque is the one name that must not be copied.)
    const s = await stack({ lowers: [{ f: file('x', { xattrs: { 'user.overlay.foo': '1' } }) }] })
    expect(await s.engine.listxattr('/f')).toEqual(['user.overlay.foo'])
    await s.engine.chmod('/f', 0o600)
    expect(await s.engine.listxattr('/f')).toEqual(['user.overlay.foo'])
  })

  it('keeps the holes of a sparse file', async () => {
    const size = 64 * 1024 * 1024
    const s = await stack({ lowers: [{ f: sparse(size, 32 * 1024 * 1024, 'middle') }] })
    await s.engine.chmod('/f', 0o600)
    const st = fs.statSync(s.up('/f'))
    expect(st.size).toBe(size)
    expect(st.blocks).toBeLessThan(1024) // under 512 KiB allocated of 64 MiB
    const h = await s.engine.open('/f', C.O_RDONLY)
    const b = Buffer.alloc(6)
    await s.engine.read(h, b, 6, 32 * 1024 * 1024)
    await s.engine.release(h)
    expect(b.toString()).toBe('middle')
  })

  it('a fifo and a char device stay what they are', async () => {
    const s = await stack({ lowers: [{ p: fifo({ mode: 0o640, mtimeNs: T1 }), c: chr(1, 3, { mode: 0o666 }) }] })
    await s.engine.chown('/p', 20, 21)
    await s.engine.chown('/c', 22, 23)
    const p = lst(s.up('/p'))
    expect(p.isFIFO()).toBe(true)
    expect(Number(p.mode & 0o7777n)).toBe(0o640)
    expect([Number(p.uid), Number(p.gid)]).toEqual([20, 21])
    expect(p.mtimeNs).toBe(T1)
    const c = lst(s.up('/c'))
    expect(c.isCharacterDevice()).toBe(true)
    expect(Number(c.rdev)).toBe(sys.makedev(1, 3))
    expect((await s.engine.getattr('/c')).rdev).toBe(sys.makedev(1, 3))
  })

  it('a symlink keeps its target and its times', async () => {
    const s = await stack({ lowers: [{ l: symlink('../some/where', { uid: 3, gid: 3, atimeNs: T1, mtimeNs: T2 }) }] })
    await s.engine.chown('/l', 4, 4)
    const l = lst(s.up('/l'))
    expect(l.isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(s.up('/l'))).toBe('../some/where')
    expect(l.mtimeNs).toBe(T2)
    expect(l.atimeNs).toBe(T1)
    expect(await s.engine.readlink('/l')).toBe('../some/where')
  })

  it('copies the parents first, each with its own mode, owner, times and xattrs', async () => {
    const s = await stack({
      lowers: [{
        a: dir({
          b: dir({
            c: dir({ f: 'deep' }, { mode: 0o700, uid: 3, gid: 3, mtimeNs: T1 }),
          }, { mode: 0o750, uid: 2, gid: 2, mtimeNs: T2, xattrs: { 'user.b': 'b' } }),
        }, { mode: 0o711, uid: 1, gid: 1, mtimeNs: T1 }),
      }],
    })
    await writeMerged(s.engine, '/a/b/c/f', 'D')
    const want: Array<[string, number, number, bigint]> = [['/a', 0o711, 1, T1], ['/a/b', 0o750, 2, T2], ['/a/b/c', 0o700, 3, T1]]
    for (const [p, mode, uid] of want) {
      const st = lst(s.up(p))
      expect(st.isDirectory()).toBe(true)
      expect(Number(st.mode & 0o7777n)).toBe(mode)
      expect(Number(st.uid)).toBe(uid)
    }
    expect(await sys.lgetxattr(s.up('/a/b'), 'user.b')).toEqual(Buffer.from('b'))
    expect(fs.readFileSync(s.up('/a/b/c/f'), 'utf8')).toBe('Deep')
    expect(await realTree(s.upper)).toEqual({ '/a': 'dir', '/a/b': 'dir', '/a/b/c': 'dir', '/a/b/c/f': 'file:Deep' })
  })

  it("leaves the parents' mtime as it was (the kernel restores the upper parent's times after a copy-up)", async () => {
    const s = await stack({
      lowers: [{ a: dir({ b: dir({ f: 'x' }, { atimeNs: T2, mtimeNs: T2 }) }, { atimeNs: T1, mtimeNs: T1 }) }],
    })
    await s.engine.chmod('/a/b/f', 0o600)
    expect((await s.engine.getattr('/a')).mtimeNs).toBe(T1)
    expect((await s.engine.getattr('/a/b')).mtimeNs).toBe(T2)
    // A parent already in the upper layer keeps its times too.
    fs.mkdirSync(s.up('/a/b/new'))
    await sys.utimensat(s.up('/a/b'), ts(T2), ts(T2), true)
    await s.engine.chmod('/a/b', 0o700)
    await s.engine.chmod('/a/b/f', 0o644)
    expect((await s.engine.getattr('/a/b')).mtimeNs).toBe(T2)
  })

  it('leaves nothing in <workdir>/work', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: 'x', l: symlink('f'), p: fifo(), e: dir() }) }] })
    await s.engine.chmod('/d/f', 0o600)
    await s.engine.chown('/d/l', 1, 1)
    await s.engine.chmod('/d/p', 0o600)
    await s.engine.chmod('/d/e', 0o700)
    await s.engine.unlink('/d/f')
    await s.engine.rename('/d/p', '/d/p2')
    await s.engine.mkdir('/d/f', 0o755, ROOT)
    expect(workLeft(s)).toEqual([])
  })

  it('keeps st_ino through copy-up and across a remount', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: 'x', l: symlink('f'), p: fifo() }) }] })
    const paths = ['/d', '/d/f', '/d/l', '/d/p']
    const before = await Promise.all(paths.map(async p => (await s.engine.getattr(p)).ino))
    await s.engine.chmod('/d/f', 0o600)
    await s.engine.chown('/d/l', 1, 1)
    await s.engine.chmod('/d/p', 0o600)
    const after = await Promise.all(paths.map(async p => (await s.engine.getattr(p)).ino))
    expect(after).toEqual(before)
    const e2 = await s.reopen()
    expect(await Promise.all(paths.map(async p => (await e2.getattr(p)).ino))).toEqual(before)
  })

  it('with index=off breaks a lower hard link (as the kernel does by default): the other name keeps the lower data', async () => {
    const s = await stack({ lowers: [{ a: 'shared', b: hardlink('a') }], engine: { index: false } })
    await writeMerged(s.engine, '/a', 'SH')
    expect(await readMerged(s.engine, '/a')).toBe('SHared')
    expect(await readMerged(s.engine, '/b')).toBe('shared')
  })

  it('concurrent writers of one lower file copy it up once, and no write is lost', async () => {
    const s = await stack({ lowers: [{ f: '.'.repeat(64) }] })
    const spy = vi.spyOn(CopyUp.prototype as unknown as { copy: () => Promise<unknown> }, 'copy')
    await Promise.all(Array.from({ length: 32 }, async (_, i) => {
      for (let k = 0; k < i % 4; k++) await new Promise(resolve => setImmediate(resolve))
      await writeMerged(s.engine, '/f', String.fromCharCode(65 + i), i)
    }))
    expect(spy).toHaveBeenCalledTimes(1)
    expect(await readMerged(s.engine, '/f')).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`' + '.'.repeat(32))
  })

  it('an operation that resolved the file before a concurrent copy-up does not copy it up again over newer data', async () => {
    const s = await stack({ lowers: [{ f: file('lower', { xattrs: { 'user.x': '1' } }) }] })
    const g = makeGate()
    gate.hold = { path: s.low(0, '/f'), name: 'user.x', reached: g.arrive, release: g.release }
    // removexattr looks the file up (lower), then checks the lower xattr: held there.
    const removing = s.engine.removexattr('/f', 'user.x')
    await g.reached
    // Meanwhile a writer copies the file up and writes.
    await writeMerged(s.engine, '/f', 'UPPER', 0, C.O_WRONLY | C.O_TRUNC)
    g.open()
    await removing
    expect(await readMerged(s.engine, '/f')).toBe('UPPER')
    expect(await s.engine.listxattr('/f')).toEqual([])
  })

  it('no half-copied file is ever visible: the copy is built in <workdir>/work and renamed into place', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: 'x'.repeat(100_000) }) }] })
    const g = makeGate()
    gate.holdCopy = { src: s.low(0, '/d/f'), reached: g.arrive, release: g.release }
    const writing = writeMerged(s.engine, '/d/f', 'Y')
    await g.reached
    // Mid-copy: the data is in a temporary in the work dir, nothing at the name yet.
    expect(fs.existsSync(s.up('/d/f'))).toBe(false)
    expect(workLeft(s).length).toBe(1)
    expect(fs.statSync(`${s.work}/work/${workLeft(s)[0] as string}`).size).toBe(100_000)
    // Other operations go on meanwhile, and still see the lower file.
    expect((await s.engine.getattr('/d/f')).size).toBe(100_000)
    expect((await readMerged(s.engine, '/d/f')).slice(0, 2)).toBe('xx')
    g.open()
    await writing
    expect((await readMerged(s.engine, '/d/f')).slice(0, 2)).toBe('Yx')
    expect(workLeft(s)).toEqual([])
  })

  it('leftovers of an interrupted copy-up in <workdir>/work are removed at open', async () => {
    const s = await stack({ lowers: [{ f: 'x' }] })
    fs.writeFileSync(`${s.work}/work/#ovlfs-half-copied`, 'partial')
    fs.mkdirSync(`${s.work}/work/#ovlfs-half-dir/sub`, { recursive: true })
    await s.reopen()
    expect(workLeft(s)).toEqual([])
    expect(await realTree(s.upper)).toEqual({})
  })

  it('with the user.* xattr namespace (no trusted.*), symlinks and fifos still copy up', async () => {
    // The kernel (-o userxattr) copies these up; user.* xattrs cannot be set on them (EPERM).
    const s = await stack({ lowers: [{ l: symlink('t'), p: fifo(), f: 'x' }], xattrNamespace: 'user' })
    expect(s.engine.features.xattrNamespace).toBe('user')
    await s.engine.chmod('/f', 0o600)
    await s.engine.chown('/l', 5, 5)
    await s.engine.chown('/p', 5, 5)
    expect(lst(s.up('/l')).isSymbolicLink()).toBe(true)
    expect(lst(s.up('/p')).isFIFO()).toBe(true)
  })

  it('a copy-up that fails leaves nothing behind and the lower object untouched', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: 'x' }) }] })
    // A non-directory where the parent's copy must go: the parent copy-up fails.
    fs.writeFileSync(`${s.work}/block`, '')
    fs.rmSync(`${s.work}/work`, { recursive: true })
    fs.writeFileSync(`${s.work}/work`, '') // the work dir itself is unusable
    await expectErrno(s.engine.chmod('/d/f', 0o600), 'ENOTDIR')
    expect(await realTree(s.upper)).toEqual({})
    expect(await readMerged(s.engine, '/d/f')).toBe('x')
  })
})
