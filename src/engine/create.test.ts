// Creating objects: in the upper layer, owned by the caller (the parent's
// gid under a setgid parent), with the mode asked for (the daemon's umask is 0),
// over whiteouts, EEXIST over anything visible. Both whiteout styles.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { errnoName, makedev } from '../native/sys'
import { errnoOf } from './errors'
import {
  C, ROOT, USER, WH, WHITEOUT_STYLES, dir, exists, expectErrno, fifo, isOpaqueXattr, mergedTree, readMerged, realTree,
  stack, symlink, useTmp, workLeft } from './test-helpers'

useTmp()

const REG = C.S_IFREG

describe.each(WHITEOUT_STYLES)('create (%s whiteouts)', (style) => {
  const mk = async (spec: Parameters<typeof stack>[0]): ReturnType<typeof stack> =>
    await stack({ ...spec, whiteouts: style === 'aufs' ? 'aufs' : undefined })

  it('new objects are owned by the caller', async () => {
    const s = await mk({ lowers: [{ d: dir({}, { mode: 0o777 }) }] })
    const e = s.engine
    await e.release(await e.create('/d/f', 0o640, C.O_WRONLY, USER))
    await e.mkdir('/d/sub', 0o750, USER)
    await e.symlink('target', '/d/l', USER)
    await e.mknod('/d/p', C.S_IFIFO | 0o600, 0, USER)
    await e.mknod('/d/c', C.S_IFCHR | 0o600, makedev(1, 3), USER)
    await e.mknod('/d/r', REG | 0o604, 0, USER)
    for (const p of ['/d/f', '/d/sub', '/d/l', '/d/p', '/d/c', '/d/r']) {
      const a = await e.getattr(p)
      expect([p, a.uid, a.gid]).toEqual([p, USER.uid, USER.gid])
      const st = fs.lstatSync(s.up(p))
      expect([p, st.uid, st.gid]).toEqual([p, USER.uid, USER.gid])
    }
    expect((await e.getattr('/d/f')).mode).toBe(REG | 0o640)
    expect((await e.getattr('/d/sub')).mode).toBe(C.S_IFDIR | 0o750)
    expect((await e.getattr('/d/p')).mode).toBe(C.S_IFIFO | 0o600)
    expect((await e.getattr('/d/c')).rdev).toBe(makedev(1, 3))
    expect((await e.getattr('/d/r')).mode).toBe(REG | 0o604)
    expect(await e.readlink('/d/l')).toBe('target')
    // The parent, copied up for the new entries, keeps its lower owner and mode.
    expect(fs.lstatSync(s.up('/d')).mode & 0o7777).toBe(0o777)
  })

  it('keeps setuid/setgid bits of a new file as the kernel does (the caller asked for them)', async () => {
    const s = await mk({ lowers: [{ x: 'x' }] })
    await s.engine.release(await s.engine.create('/s', 0o4755, C.O_WRONLY, ROOT))
    await s.engine.mknod('/s2', REG | 0o6755, 0, ROOT)
    expect((await s.engine.getattr('/s')).mode & 0o7777).toBe(0o4755)
    expect((await s.engine.getattr('/s2')).mode & 0o7777).toBe(0o6755)
  })

  it('under a setgid parent: the parent\'s gid, and new directories inherit setgid', async () => {
    const s = await mk({ lowers: [{ g: dir({}, { mode: 0o2777, uid: 0, gid: 4242 }) }] })
    const e = s.engine
    await e.release(await e.create('/g/f', 0o644, C.O_WRONLY, USER))
    await e.mkdir('/g/sub', 0o755, USER)
    await e.symlink('t', '/g/l', USER)
    expect((await e.getattr('/g/f')).gid).toBe(4242)
    expect((await e.getattr('/g/l')).gid).toBe(4242)
    const sub = await e.getattr('/g/sub')
    expect([sub.uid, sub.gid]).toEqual([USER.uid, 4242])
    expect(sub.mode & 0o7777).toBe(0o2755)
    expect((await e.getattr('/g/f')).mode & 0o7777).toBe(0o644)
    // and one level further down
    await e.mkdir('/g/sub/deeper', 0o700, ROOT)
    const deeper = await e.getattr('/g/sub/deeper')
    expect([deeper.uid, deeper.gid, deeper.mode & 0o7777]).toEqual([0, 4242, 0o2700])
  })

  it('create over a whiteout: a fresh empty file, nothing of the lower one', async () => {
    const s = await mk({ lowers: [{ f: 'lower data', d: dir({ x: 'x' }) }] })
    await s.engine.unlink('/f')
    const h = await s.engine.create('/f', 0o600, C.O_RDWR, USER)
    const b = Buffer.from('new')
    await s.engine.write(h, b, 3, 0)
    await s.engine.release(h)
    expect(await readMerged(s.engine, '/f')).toBe('new')
    const a = await s.engine.getattr('/f')
    expect([a.mode, a.uid, a.gid]).toEqual([REG | 0o600, USER.uid, USER.gid])
    expect(await realTree(s.upper)).toEqual({ '/f': 'file:new' })
    // a file where a directory was
    await s.engine.unlink('/d/x')
    await s.engine.rmdir('/d')
    await s.engine.symlink('f', '/d', ROOT)
    expect(await s.engine.readlink('/d')).toBe('f')
    expect(workLeft(s)).toEqual([])
  })

  it('mkdir over a whiteout is opaque and owned by the caller', async () => {
    const s = await mk({ lowers: [{ d: dir({ a: 'a' }) }] })
    await s.engine.unlink('/d/a')
    await s.engine.rmdir('/d')
    await s.engine.mkdir('/d', 0o711, USER)
    const a = await s.engine.getattr('/d')
    expect([a.mode, a.uid, a.gid]).toEqual([C.S_IFDIR | 0o711, USER.uid, USER.gid])
    expect(await isOpaqueXattr(s.up('/d'))).toBe(true)
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir' })
  })

  it('a whiteout in a lower layer needs no upper whiteout: the new object just hides it', async () => {
    const s = await mk({ lowers: [{ f: WH, d: WH }, { f: 'old', d: dir({ old: 'o' }) }] })
    await s.engine.release(await s.engine.create('/f', 0o644, C.O_WRONLY, ROOT))
    await s.engine.mkdir('/d', 0o755, ROOT)
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir', '/f': 'file:' })
  })

  it('EEXIST over any visible object, in any layer', async () => {
    const s = await mk({ upper: { u: 'u' }, lowers: [{ f: 'f', d: dir(), l: symlink('nowhere'), p: fifo() }] })
    const e = s.engine
    for (const p of ['/u', '/f', '/d', '/l', '/p']) {
      await expectErrno(e.create(p, 0o644, C.O_WRONLY, ROOT), 'EEXIST')
      await expectErrno(e.mkdir(p, 0o755, ROOT), 'EEXIST')
      await expectErrno(e.symlink('x', p, ROOT), 'EEXIST')
      await expectErrno(e.mknod(p, C.S_IFIFO | 0o644, 0, ROOT), 'EEXIST')
      await expectErrno(e.link('/u', p), 'EEXIST')
    }
    await expectErrno(e.mkdir('', 0o755, ROOT), 'EEXIST')
    expect(await realTree(s.upper)).toEqual({ '/u': 'file:u' })
  })

  it('a create that fails with EEXIST copies nothing up (the kernel checks the name before any copy-up)', async () => {
    const s = await mk({ lowers: [{ d: dir({ x: 'x', sub: dir({ y: 'y' }) }), a: 'a' }] })
    const e = s.engine
    await expectErrno(e.mkdir('/d/x', 0o755, ROOT), 'EEXIST')
    await expectErrno(e.create('/d/x', 0o644, C.O_WRONLY, ROOT), 'EEXIST')
    await expectErrno(e.symlink('t', '/d/sub/y', ROOT), 'EEXIST')
    await expectErrno(e.mknod('/d/sub', C.S_IFIFO | 0o644, 0, ROOT), 'EEXIST')
    await expectErrno(e.link('/a', '/d/x'), 'EEXIST')
    expect(await realTree(s.upper)).toEqual({})
  })

  it('link checks the new name before the type of the old one (EEXIST / ENOENT before EPERM), as the VFS does', async () => {
    const s = await mk({ lowers: [{ d: dir(), f: 'f' }] })
    await expectErrno(s.engine.link('/d', '/f'), 'EEXIST')
    await expectErrno(s.engine.link('/d', '/none/x'), 'ENOENT')
  })

  it('ENOENT / ENOTDIR for a missing or non-directory parent', async () => {
    const s = await mk({ lowers: [{ f: 'f' }] })
    await expectErrno(s.engine.mkdir('/none/x', 0o755, ROOT), 'ENOENT')
    await expectErrno(s.engine.create('/f/x', 0o644, C.O_WRONLY, ROOT), 'ENOTDIR')
  })

  it('link of a lower file copies it up and links the copy; both names are one file', async () => {
    const s = await mk({ lowers: [{ f: 'shared', d: dir() }] })
    const ino = (await s.engine.getattr('/f')).ino
    await s.engine.link('/f', '/d/g')
    const a = await s.engine.getattr('/f')
    const b = await s.engine.getattr('/d/g')
    expect([a.ino, b.ino, a.nlink, b.nlink]).toEqual([ino, ino, 2, 2])
    expect(fs.statSync(s.up('/f')).ino).toBe(fs.statSync(s.up('/d/g')).ino)
    await expectErrno(s.engine.link('/d', '/d2'), 'EPERM')
  })

  it('two concurrent exclusive creates of one name over a whiteout: exactly one gets EEXIST', async () => {
    const s = await mk({ lowers: [{ f: 'x', d: dir({ a: 'a' }) }] })
    await s.engine.unlink('/f')
    await s.engine.unlink('/d/a')
    await s.engine.rmdir('/d')
    // (A second mkdir that wins the race replaces the first one's directory, and whatever was put in it.)
    const outcome = (r: PromiseSettledResult<unknown>): string => r.status === 'fulfilled' ? 'ok' : errnoName(errnoOf(r.reason))
    const files = await Promise.allSettled([s.engine.create('/f', 0o644, C.O_RDWR, ROOT), s.engine.create('/f', 0o644, C.O_RDWR, ROOT)])
    for (const r of files) if (r.status === 'fulfilled') await s.engine.release(r.value)
    const dirs = await Promise.allSettled([s.engine.mkdir('/d', 0o755, ROOT), s.engine.mkdir('/d', 0o755, ROOT)])
    expect({ files: files.map(outcome).sort(), dirs: dirs.map(outcome).sort() }).toEqual({ files: ['EEXIST', 'ok'], dirs: ['EEXIST', 'ok'] })
  })

  it('a `.wh.*` name cannot be created through the merged view (EINVAL, as fuse-overlayfs): it would hide NAME', async () => {
    const s = await mk({ lowers: [{ foo: 'x', d: dir({ bar: 'b' }) }] })
    await expectErrno(s.engine.create('/.wh.foo', 0o644, C.O_WRONLY, ROOT), 'EINVAL')
    await expectErrno(s.engine.mknod('/d/.wh.bar', C.S_IFREG | 0o644, 0, ROOT), 'EINVAL')
    await expectErrno(s.engine.mkdir('/.wh.d', 0o755, ROOT), 'EINVAL')
    await expectErrno(s.engine.symlink('x', '/.wh..wh..opq', ROOT), 'EINVAL')
    await expectErrno(s.engine.link('/foo', '/d/.wh.bar'), 'EINVAL')
    await expectErrno(s.engine.rename('/foo', '/d/.wh.bar'), 'EINVAL')
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir', '/d/bar': 'file:b', '/foo': 'file:x' })
  })

  it('in a directory only the upper layer has: EEXIST over what is there, a new object over a whiteout, the node a lookup finds', async () => {
    const wh = style === 'aufs' ? { '.wh.y': '' } : { y: WH }
    const s = await mk({ upper: { o: dir({ f: 'f', ...wh }) }, lowers: [{ x: 'x' }] })
    const e = s.engine
    for (const op of [
      e.create('/o/f', 0o644, C.O_WRONLY, ROOT), e.mkdir('/o/f', 0o755, ROOT), e.symlink('t', '/o/f', ROOT),
      e.mknod('/o/f', C.S_IFIFO | 0o644, 0, ROOT), e.link('/x', '/o/f'),
    ]) await expectErrno(op, 'EEXIST')
    expect(await mergedTree(e)).toEqual({ '/o': 'dir', '/o/f': 'file:f', '/x': 'file:x' })
    const { h, attr } = await e.createOpen('/o/y', 0o640, C.O_WRONLY, USER)
    const n = await e.createOpen('/o/n', 0o600, C.O_RDWR, USER)
    // What create answered is what a lookup and an fgetattr give afterwards.
    for (const [p, got] of [['/o/y', attr], ['/o/n', n.attr]] as const) {
      const a = await e.getattr(p)
      expect([a.ino, a.mode, a.uid, a.gid, a.nlink]).toEqual([got.ino, got.mode, got.uid, got.gid, got.nlink])
      expect([a.uid, a.gid, a.mode]).toEqual([USER.uid, USER.gid, REG | (p === '/o/y' ? 0o640 : 0o600)])
    }
    expect((await e.fgetattr(h)).ino).toBe(attr.ino)
    await e.release(h)
    await e.release(n.h)
    await expectErrno(e.create('/o/y', 0o644, C.O_WRONLY, ROOT), 'EEXIST')
    expect(await realTree(s.upper)).toEqual({ '/o': 'dir', '/o/f': 'file:f', '/o/n': 'file:', '/o/y': 'file:' })
  })

  it('a new file can be written and read through its create handle', async () => {
    const s = await mk({ lowers: [{}] })
    const h = await s.engine.create('/n', 0o644, C.O_RDWR, ROOT)
    const b = Buffer.from('hello')
    expect(await s.engine.write(h, b, 5, 0)).toBe(5)
    const r = Buffer.alloc(5)
    expect(await s.engine.read(h, r, 5, 0)).toBe(5)
    expect(r.toString()).toBe('hello')
    await s.engine.release(h)
    expect(await exists(s.engine, '/n')).toBe(true)
  })
})
