// rename: files move across layers (copy-up, rename, whiteout at the source
// when a lower layer still shows it); directories with lower layers through a
// redirect (redirect.test.ts), or EXDEV with redirectDir: false (as the kernel
// with redirect_dir=off). Both whiteout styles.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { lgetxattr } from '../native/sys'
import {
  ROOT, WH, WHITEOUT_STYLES, absentIn, dir, exists, expectErrno, fifo, isOpaqueXattr, mergedTree, names, opaqueDir,
  readMerged, realTree, stack, symlink, useTmp, writeMerged, workLeft } from './test-helpers'

useTmp()

describe.each(WHITEOUT_STYLES)('rename (%s whiteouts)', (style) => {
  const mk = async (spec: Parameters<typeof stack>[0]): ReturnType<typeof stack> =>
    await stack({ ...spec, whiteouts: style === 'aufs' ? 'aufs' : undefined })
  const whiteoutAt = (dirReal: string, name: string): boolean => style === 'aufs'
    ? fs.existsSync(`${dirReal}/.wh.${name}`) && !fs.existsSync(`${dirReal}/${name}`)
    : (() => { try { const st = fs.lstatSync(`${dirReal}/${name}`); return st.isCharacterDevice() && st.rdev === 0 } catch { return false } })()

  it('a lower file to a new name: copy-up, and a whiteout at the source', async () => {
    const s = await mk({ lowers: [{ f: 'data' }] })
    const ino = (await s.engine.getattr('/f')).ino
    await s.engine.rename('/f', '/g')
    expect(await exists(s.engine, '/f')).toBe(false)
    expect(await readMerged(s.engine, '/g')).toBe('data')
    // metacopy=on: a metadata-only copy with a redirect to its data, as the kernel (metacopy.test.ts)
    expect((await lgetxattr(s.up('/g'), 'trusted.overlay.redirect'))?.toString()).toBe('f')
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
    expect((await s.engine.getattr('/g')).ino).toBe(ino)
    expect(workLeft(s)).toEqual([])
  })

  it('a lower file over an existing lower file', async () => {
    const s = await mk({ lowers: [{ a: 'A' }, { b: 'B' }] })
    await s.engine.rename('/a', '/b')
    expect(await names(s.engine, '')).toEqual(['b'])
    expect(await readMerged(s.engine, '/b')).toBe('A')
    expect(whiteoutAt(s.upper, 'a')).toBe(true)
  })

  it('an upper-only file leaves no whiteout behind', async () => {
    const s = await mk({ upper: { u: 'U' }, lowers: [{ l: 'L' }] })
    await s.engine.rename('/u', '/l')
    expect(await readMerged(s.engine, '/l')).toBe('U')
    expect(absentIn(s.upper, 'u')).toBe(true)
    expect(await realTree(s.upper)).toEqual({ '/l': 'file:U' })
  })

  it('into a lower-only directory (copied up first) and out of one', async () => {
    const s = await mk({ lowers: [{ d: dir({ x: 'X' }, { mode: 0o751 }), e: dir({ y: 'Y' }), f: 'F', l: symlink('../t'), p: fifo() }] })
    await s.engine.rename('/f', '/d/f')
    await s.engine.rename('/e/y', '/y')
    await s.engine.rename('/l', '/d/l')
    await s.engine.rename('/p', '/e/p')
    expect(await mergedTree(s.engine)).toEqual({
      '/d': 'dir', '/d/f': 'file:F', '/d/l': 'symlink:../t', '/d/x': 'file:X', '/e': 'dir', '/e/p': 'fifo', '/y': 'file:Y',
    })
    expect(fs.lstatSync(s.up('/d')).mode & 0o7777).toBe(0o751)
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
    expect(whiteoutAt(s.up('/e'), 'y')).toBe(true)
  })

  it('over a whited-out name, and back', async () => {
    const s = await mk({ lowers: [{ a: 'A', b: 'B' }] })
    await s.engine.unlink('/b')
    await s.engine.rename('/a', '/b')
    expect(await readMerged(s.engine, '/b')).toBe('A')
    await s.engine.rename('/b', '/a')
    expect(await mergedTree(s.engine)).toEqual({ '/a': 'file:A' })
    expect(whiteoutAt(s.upper, 'b')).toBe(true)
  })

  it('a name onto itself or onto another hard link of it changes nothing', async () => {
    const s = await mk({ upper: { a: 'A' }, lowers: [{ x: 'X' }] })
    await s.engine.link('/a', '/b')
    await s.engine.rename('/a', '/a')
    await s.engine.rename('/a', '/b')
    await s.engine.rename('/x', '/x')
    expect(await names(s.engine, '')).toEqual(['a', 'b', 'x'])
    expect(await realTree(s.upper)).toEqual({ '/a': 'file:A', '/b': 'file:A' })
  })

  it('an upper-only directory moves with its contents', async () => {
    const s = await mk({ upper: { d: dir({ f: 'F', sub: dir({ g: 'G' }) }) }, lowers: [{ x: 'x' }] })
    await s.engine.mkdir('/n', 0o755, ROOT)
    await s.engine.rename('/d', '/n/d2')
    expect(await exists(s.engine, '/d')).toBe(false)
    expect(absentIn(s.upper, 'd')).toBe(true)
    expect(await mergedTree(s.engine, '/n')).toEqual({ '/d2': 'dir', '/d2/f': 'file:F', '/d2/sub': 'dir', '/d2/sub/g': 'file:G' })
    expect(await readMerged(s.engine, '/n/d2/sub/g')).toBe('G')
  })

  it('a lower or merged directory is EXDEV with redirectDir: false (redirect_dir=off)', async () => {
    const s = await stack({ upper: { m: dir() }, lowers: [{ l: dir({ a: 'a' }), m: dir({ b: 'b' }), e: dir() }], whiteouts: style === 'aufs' ? 'aufs' : undefined, engine: { redirectDir: false } })
    await expectErrno(s.engine.rename('/l', '/l2'), 'EXDEV')
    await expectErrno(s.engine.rename('/m', '/m2'), 'EXDEV')
    await expectErrno(s.engine.rename('/e', '/e2'), 'EXDEV')
    expect(await names(s.engine, '')).toEqual(['e', 'l', 'm'])
  })

  it('a directory over a non-empty directory is ENOTEMPTY', async () => {
    const s = await mk({ upper: { u: dir({ x: 'x' }), v: dir({ y: 'y' }) }, lowers: [{ l: dir({ a: 'a' }) }] })
    await expectErrno(s.engine.rename('/u', '/v'), 'ENOTEMPTY')
    await expectErrno(s.engine.rename('/u', '/l'), 'ENOTEMPTY')
    expect(await readMerged(s.engine, '/u/x')).toBe('x')
  })

  it('a lower directory over a non-empty directory: EXDEV with redirectDir: false (checked first, as in the kernel), else ENOTEMPTY', async () => {
    const off = await stack({ lowers: [{ a: dir({ x: 'x' }), b: dir({ y: 'y' }) }], engine: { redirectDir: false } })
    await expectErrno(off.engine.rename('/a', '/b'), 'EXDEV')
    const s = await mk({ lowers: [{ a: dir({ x: 'x' }), b: dir({ y: 'y' }) }] })
    await expectErrno(s.engine.rename('/a', '/b'), 'ENOTEMPTY')
    expect(await realTree(s.upper)).toEqual({})
  })

  it('a rename that fails copies nothing up (the VFS checks the target before the overlay copies up)', async () => {
    const s = await mk({ lowers: [{ f: 'f', g: 'g', d: dir({ x: 'x' }) }] })
    await expectErrno(s.engine.rename('/f', '/none/x'), 'ENOENT')
    await expectErrno(s.engine.rename('/f', '/g/x'), 'ENOTDIR')
    expect(await realTree(s.upper)).toEqual({})
  })

  it('errno order as in the VFS: a missing target parent is ENOENT, a target below a file ENOTDIR, a target that is an ancestor ENOTEMPTY', async () => {
    const s = await mk({ lowers: [{ d: dir({ s: dir({ q: 'q' }), f: 'f' }), e: dir({ x: dir() }) }] })
    await expectErrno(s.engine.rename('/d/s', '/none/x'), 'ENOENT')
    await expectErrno(s.engine.rename('/d/f', '/d/f/y'), 'ENOTDIR')
    await expectErrno(s.engine.rename('/d/none', '/d/f/y'), 'ENOTDIR') // both parents are resolved before the source name
    await expectErrno(s.engine.rename('/d/s', '/d'), 'ENOTEMPTY')
    await expectErrno(s.engine.rename('/e/x', '/e'), 'ENOTEMPTY')
  })

  it('type mismatches and bad targets', async () => {
    const s = await mk({ upper: { u: dir() }, lowers: [{ f: 'f', d: dir({ in: dir() }), e: dir() }] })
    await expectErrno(s.engine.rename('/f', '/d'), 'EISDIR')
    await expectErrno(s.engine.rename('/u', '/f'), 'ENOTDIR')
    await expectErrno(s.engine.rename('/u', '/u/sub'), 'EINVAL')
    await expectErrno(s.engine.rename('/none', '/x'), 'ENOENT')
    await expectErrno(s.engine.rename('/f', '/none/x'), 'ENOENT')
  })

  it('a directory moved into a merged parent becomes opaque', async () => {
    const s = await mk({ upper: { m: dir() }, lowers: [{ m: dir({ n: dir({ hidden: 'h' }) }), p: dir() }] })
    await s.engine.mkdir('/new', 0o755, ROOT)
    await s.engine.mknod('/new/f', 0o100644, 0, ROOT)
    // Over a lower directory of the same name that is empty in the merged view.
    await s.engine.unlink('/m/n/hidden')
    await s.engine.rename('/new', '/m/n')
    expect(await isOpaqueXattr(s.up('/m/n'))).toBe(true)
    expect(await names(s.engine, '/m/n')).toEqual(['f'])
    // Into a merged parent under a fresh name: opaque too (the kernel does not check the lower name).
    await s.engine.mkdir('/new2', 0o755, ROOT)
    await s.engine.rename('/new2', '/m/fresh')
    expect(await isOpaqueXattr(s.up('/m/fresh'))).toBe(true)
  })

  it('a directory moved within upper-only directories stays non-opaque', async () => {
    const s = await mk({ upper: { a: dir({ d: dir({ f: 'f' }) }), b: dir() }, lowers: [{ x: 'x' }] })
    await s.engine.rename('/a/d', '/b/d')
    expect(await isOpaqueXattr(s.up('/b/d'))).toBe(false)
    expect(await readMerged(s.engine, '/b/d/f')).toBe('f')
  })

  it('an upper-only directory onto a name whose lower directory was removed (whiteout)', async () => {
    const s = await mk({ lowers: [{ x: dir({ old: 'old' }) }] })
    await s.engine.unlink('/x/old')
    await s.engine.rmdir('/x')
    await s.engine.mkdir('/new', 0o755, ROOT)
    await s.engine.mknod('/new/n', 0o100644, 0, ROOT)
    await s.engine.rename('/new', '/x')
    expect(await mergedTree(s.engine)).toEqual({ '/x': 'dir', '/x/n': 'file:' })
    expect(await isOpaqueXattr(s.up('/x'))).toBe(true)
    expect(workLeft(s)).toEqual([])
  })

  it('an upper-only directory over an empty merged directory hides what the lower one held', async () => {
    const s = await mk({ upper: { d: dir() }, lowers: [{ d: dir({ a: 'a', b: 'b' }) }] })
    await s.engine.unlink('/d/a')
    await s.engine.unlink('/d/b')
    await s.engine.mkdir('/n', 0o755, ROOT)
    await s.engine.rename('/n', '/d')
    expect(await names(s.engine, '/d')).toEqual([])
    expect(await exists(s.engine, '/n')).toBe(false)
    await s.engine.mknod('/d/c', 0o100644, 0, ROOT)
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir', '/d/c': 'file:' })
  })

  it('an opaque upper directory over a lower one can move, and leaves a whiteout', async () => {
    const s = await mk({ upper: { d: opaqueDir({ u: 'U' }) }, lowers: [{ d: dir({ l: 'L' }) }] })
    await s.engine.rename('/d', '/e')
    expect(await mergedTree(s.engine)).toEqual({ '/e': 'dir', '/e/u': 'file:U' })
    expect(whiteoutAt(s.upper, 'd')).toBe(true)
  })

  it('data written before a rename is kept; the source name stays gone', async () => {
    const s = await mk({ lowers: [{ f: 'lower' }], upper: {} })
    await writeMerged(s.engine, '/f', 'LOW')
    await s.engine.rename('/f', '/g')
    expect(await readMerged(s.engine, '/g')).toBe('LOWer')
    expect(await exists(s.engine, '/f')).toBe(false)
    await s.engine.rename('/g', '/f')
    expect(await mergedTree(s.engine)).toEqual({ '/f': 'file:LOWer' })
  })

  it('a lower name whited out in a middle layer is not brought back by renaming over it', async () => {
    const s = await mk({ upper: { a: 'A' }, lowers: [{ b: WH }, { b: dir({ deep: 'x' }) }] })
    await s.engine.rename('/a', '/b')
    expect(await mergedTree(s.engine)).toEqual({ '/b': 'file:A' })
  })
})
