// Renaming directories that have lower layers (the kernel's redirect_dir=on):
// the directory is copied up alone, moved, and given the redirect xattr the
// kernel writes; lookup and readdir follow redirects in every layer. Both
// whiteout styles; the user.* namespace where trusted.* cannot be written.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { lgetxattr } from '../native/sys'
import {
  ROOT, WH, WHITEOUT_STYLES, absentIn, dir, exists, expectErrno, isOpaqueXattr, isWhiteoutIn, mergedTree, names,
  readMerged, realTree, stack, useTmp, writeMerged, workLeft } from './test-helpers'

useTmp()

const redirectOf = async (p: string, ns = 'trusted'): Promise<string | null> =>
  (await lgetxattr(p, `${ns}.overlay.redirect`).catch(() => null))?.toString() ?? null

describe.each(WHITEOUT_STYLES)('directory rename with redirects (%s whiteouts)', (style) => {
  const mk = async (spec: Parameters<typeof stack>[0]): ReturnType<typeof stack> =>
    await stack({ ...spec, whiteouts: style === 'aufs' ? 'aufs' : undefined })
  const whiteoutAt = (dirReal: string, name: string): boolean => isWhiteoutIn(dirReal, name, style) &&
    (style === 'chardev' || !fs.existsSync(`${dirReal}/${name}`))

  it('a lower directory in its parent: copied up alone, relative redirect, whiteout at the old name, same st_ino', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X', sub: dir({ y: 'Y' }) }, { mode: 0o750 }) }] })
    const ino = (await s.engine.getattr('/a')).ino
    const subIno = (await s.engine.getattr('/a/sub')).ino
    await s.engine.rename('/a', '/b')
    expect(await mergedTree(s.engine)).toEqual({ '/b': 'dir', '/b/sub': 'dir', '/b/sub/y': 'file:Y', '/b/x': 'file:X' })
    expect(await redirectOf(s.up('/b'))).toBe('a')
    expect(await isOpaqueXattr(s.up('/b'))).toBe(false)
    expect(fs.readdirSync(s.up('/b'))).toEqual([]) // the contents stay below
    expect(fs.statSync(s.up('/b')).mode & 0o7777).toBe(0o750)
    expect(whiteoutAt(s.upper, 'a')).toBe(true)
    expect((await s.engine.getattr('/b')).ino).toBe(ino)
    expect((await s.engine.getattr('/b/sub')).ino).toBe(subIno)
    expect(workLeft(s)).toEqual([])
  })

  it('into another directory: absolute redirect; renamed again it keeps it; renamed back too', async () => {
    const s = await mk({ upper: { m: dir({ u: 'U' }) }, lowers: [{ a: dir({ x: 'X' }), m: dir({ l: 'L' }) }] })
    await s.engine.rename('/a', '/m/a2')
    expect(await redirectOf(s.up('/m/a2'))).toBe('/a')
    expect(await mergedTree(s.engine)).toEqual({ '/m': 'dir', '/m/a2': 'dir', '/m/a2/x': 'file:X', '/m/l': 'file:L', '/m/u': 'file:U' })
    await s.engine.rename('/m/a2', '/m/a3')
    expect(await redirectOf(s.up('/m/a3'))).toBe('/a')
    await s.engine.rename('/m/a3', '/a')
    expect(await redirectOf(s.up('/a'))).toBe('/a')
    expect(await mergedTree(s.engine)).toEqual({ '/a': 'dir', '/a/x': 'file:X', '/m': 'dir', '/m/l': 'file:L', '/m/u': 'file:U' })
    expect(absentIn(s.up('/m'), 'a2')).toBe(true)
    expect(absentIn(s.up('/m'), 'a3')).toBe(true)
    expect(await realTree(s.upper)).toEqual({ '/a': 'dir', '/m': 'dir', '/m/u': 'file:U' })
  })

  it('a relative redirect becomes absolute when the directory leaves its parent; ancestors\' redirects stand in for their names', async () => {
    const s = await mk({ lowers: [{ p: dir({ c: dir({ d: dir({ f: 'F' }) }) }) }] })
    await s.engine.rename('/p', '/q') // q -> "p"
    await s.engine.rename('/q/c', '/q/c2') // c2 -> "c"
    await s.engine.rename('/q/c2/d', '/d') // d -> "/p/c/d"
    expect(await redirectOf(s.up('/d'))).toBe('/p/c/d')
    await s.engine.rename('/q/c2', '/c3') // relative "c" made absolute: "/p/c"
    expect(await redirectOf(s.up('/c3'))).toBe('/p/c')
    expect(await mergedTree(s.engine)).toEqual({ '/c3': 'dir', '/d': 'dir', '/d/f': 'file:F', '/q': 'dir' })
    const e2 = await s.reopen()
    expect(await mergedTree(e2)).toEqual({ '/c3': 'dir', '/d': 'dir', '/d/f': 'file:F', '/q': 'dir' })
  })

  it('back to the old name within the parent: the whiteout goes, the redirect stays', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X' }) }] })
    await s.engine.rename('/a', '/b')
    await s.engine.rename('/b', '/a')
    expect(await mergedTree(s.engine)).toEqual({ '/a': 'dir', '/a/x': 'file:X' })
    expect(await redirectOf(s.up('/a'))).toBe('a')
    expect(absentIn(s.upper, 'b')).toBe(true)
    expect(await realTree(s.upper)).toEqual({ '/a': 'dir' })
  })

  it('a merged directory keeps its upper and lower entries; changes below it land in the right places', async () => {
    const s = await mk({ upper: { m: dir({ u: 'U' }) }, lowers: [{ m: dir({ l: 'lower', sub: dir({ deep: 'D' }) }) }] })
    await s.engine.rename('/m', '/n')
    await writeMerged(s.engine, '/n/l', 'LOW')
    await writeMerged(s.engine, '/n/sub/deep', 'd')
    await s.engine.unlink('/n/u')
    await s.engine.mkdir('/n/new', 0o755, ROOT)
    expect(await mergedTree(s.engine)).toEqual({ '/n': 'dir', '/n/l': 'file:LOWer', '/n/new': 'dir', '/n/sub': 'dir', '/n/sub/deep': 'file:d' })
    expect(fs.readFileSync(s.up('/n/l'), 'utf8')).toBe('LOWer')
    expect(fs.readFileSync(s.up('/n/sub/deep'), 'utf8')).toBe('d')
    expect(fs.readFileSync(s.low(0, '/m/l'), 'utf8')).toBe('lower')
    expect(whiteoutAt(s.upper, 'm')).toBe(true)
    expect(await isOpaqueXattr(s.up('/n/new'))).toBe(true) // made in a merged dir (see the mkdir case below)
  })

  it('deleting afterwards: ENOTEMPTY while lower entries show, then rmdir; a whiteout only where a lower shows the new name', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X' }), b: dir({ y: 'Y' }), e: dir() }] })
    await s.engine.rename('/a', '/c')
    await expectErrno(s.engine.rmdir('/c'), 'ENOTEMPTY')
    await s.engine.unlink('/c/x')
    await s.engine.rmdir('/c')
    expect(absentIn(s.upper, 'c')).toBe(true)
    expect(whiteoutAt(s.upper, 'a')).toBe(true)
    // Over an empty lower directory: the moved one hides it; removed, a whiteout stays for the lower one.
    await s.engine.unlink('/b/y')
    await s.engine.rename('/b', '/e')
    expect(await names(s.engine, '')).toEqual(['e'])
    expect(await names(s.engine, '/e')).toEqual([])
    await s.engine.rmdir('/e')
    expect(await names(s.engine, '')).toEqual([])
    expect(whiteoutAt(s.upper, 'e')).toBe(true)
  })

  it('over an empty lower directory with other contents: they stay hidden (the redirect decides what merges)', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X' }), t: dir({ gone: 'G' }) }] })
    await s.engine.unlink('/t/gone')
    await s.engine.rename('/a', '/t')
    expect(await mergedTree(s.engine)).toEqual({ '/t': 'dir', '/t/x': 'file:X' })
    expect(await redirectOf(s.up('/t'))).toBe('a')
  })

  it('a lower directory into a directory copied up for it, and a file moved in', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X' }), d: dir({ e: dir({ y: 'Y' }) }) }] })
    await s.engine.rename('/d/e', '/a/e')
    await s.engine.rename('/a', '/z')
    await s.engine.rename('/z/x', '/z/e/x')
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir', '/z': 'dir', '/z/e': 'dir', '/z/e/x': 'file:X', '/z/e/y': 'file:Y' })
    expect(await redirectOf(s.up('/z/e'))).toBe('/d/e')
    expect(await redirectOf(s.up('/z'))).toBe('a')
  })

  it('a redirected directory over a whited-out name of another merged one', async () => {
    const s = await mk({ lowers: [{ a: dir({ x: 'X' }), b: dir() }] })
    await s.engine.rmdir('/b')
    await s.engine.rename('/a', '/b')
    expect(await mergedTree(s.engine)).toEqual({ '/b': 'dir', '/b/x': 'file:X' })
    expect(whiteoutAt(s.upper, 'a')).toBe(true)
    expect(await s.engine.readdir('')).toHaveLength(1)
  })

  it('an absolute redirect longer than redirect_max (256) is EXDEV, as in the kernel', async () => {
    const long = 'l'.repeat(200)
    const s = await mk({ lowers: [{ [long]: dir({ [long]: dir({ f: 'F' }) }) }] })
    await expectErrno(s.engine.rename(`/${long}/${long}`, '/short'), 'EXDEV')
    expect(await readMerged(s.engine, `/${long}/${long}/f`)).toBe('F')
    await s.engine.rename(`/${long}/${long}`, `/${long}/s`)
    expect(await readMerged(s.engine, `/${long}/s/f`)).toBe('F')
  })

  it('mkdir in a merged directory is opaque (as the kernel with redirect_dir=on), not with redirectDir: false, nor in an upper-only one', async () => {
    const s = await mk({ upper: { u: dir() }, lowers: [{ m: dir({ l: 'L' }) }] })
    await s.engine.mkdir('/m/n', 0o755, ROOT)
    await s.engine.mkdir('/u/n', 0o755, ROOT)
    expect(await isOpaqueXattr(s.up('/m/n'))).toBe(true)
    expect(await isOpaqueXattr(s.up('/u/n'))).toBe(false)
    const off = await stack({ lowers: [{ m: dir({ l: 'L' }) }], whiteouts: style === 'aufs' ? 'aufs' : undefined, engine: { redirectDir: false } })
    await off.engine.mkdir('/m/n', 0o755, ROOT)
    expect(await isOpaqueXattr(off.up('/m/n'))).toBe(false)
  })

  it('an upper-only directory still moves without a redirect (opaque into a merged parent)', async () => {
    const s = await mk({ upper: { u: dir({ f: 'F' }) }, lowers: [{ m: dir({ l: 'L' }) }] })
    await s.engine.rename('/u', '/m/u')
    expect(await redirectOf(s.up('/m/u'))).toBe(null)
    expect(await isOpaqueXattr(s.up('/m/u'))).toBe(true)
  })
})

describe('redirects in the layers (kernel-written, or an ovlfs upper used as a lower)', () => {
  it('a relative redirect in a lower layer is followed in the layers below', async () => {
    const s = await stack({ lowers: [{ b: dir({ top: 'T' }, { xattrs: { 'trusted.overlay.redirect': 'a' } }), a: WH }, { a: dir({ x: 'X' }) }] })
    expect(await mergedTree(s.engine)).toEqual({ '/b': 'dir', '/b/top': 'file:T', '/b/x': 'file:X' })
  })

  it('an absolute redirect in upper restarts from the roots of the lowers, through an intermediate redirect', async () => {
    const s = await stack({
      upper: { n: dir({}, { xattrs: { 'trusted.overlay.redirect': '/p/q' } }) },
      lowers: [{ p: dir({}, { xattrs: { 'trusted.overlay.redirect': 'r' } }), 'p/q/one': '1' }, { 'r/q/two': '2', 'p/q/no': 'hidden' }],
    })
    expect(await names(s.engine, '/n')).toEqual(['one', 'two'])
    expect(await readMerged(s.engine, '/n/two')).toBe('2')
  })

  it('user.overlay.redirect is honoured; a malformed redirect is EINVAL', async () => {
    const s = await stack({ upper: { b: dir({}, { xattrs: { 'user.overlay.redirect': 'a' } }), bad: dir({}, { xattrs: { 'trusted.overlay.redirect': 'x/y' } }) }, lowers: [{ a: dir({ x: 'X' }) }] })
    expect(await names(s.engine, '/b')).toEqual(['x'])
    await expectErrno(s.engine.getattr('/bad'), 'EINVAL')
  })

  it('where trusted.* cannot be written, the redirect goes to user.overlay.redirect', async () => {
    const s = await stack({ lowers: [{ a: dir({ x: 'X' }) }], xattrNamespace: 'user' })
    await s.engine.rename('/a', '/b')
    expect(await redirectOf(s.up('/b'), 'user')).toBe('a')
    expect(await redirectOf(s.up('/b'), 'trusted')).toBe(null)
    expect(await exists(s.engine, '/b/x')).toBe(true)
    expect(await s.engine.listxattr('/b')).toEqual([])
  })
})
