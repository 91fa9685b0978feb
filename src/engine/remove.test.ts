// unlink / rmdir: a name that a lower layer still shows leaves a whiteout
// (char 0/0, or `.wh.NAME` where the upper fs cannot mknod), and only then;
// mkdir over a whiteout makes an opaque directory. Both whiteout styles.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { lgetxattr } from '../native/sys'
import {
  ROOT, WH, WHITEOUT_STYLES, absentIn, dir, exists, expectErrno, file, isOpaqueXattr, mergedTree, names, readMerged,
  realTree, stack, useTmp, writeMerged, workLeft } from './test-helpers'

useTmp()

describe.each(WHITEOUT_STYLES)('remove (%s whiteouts)', (style) => {
  const mk = async (spec: Parameters<typeof stack>[0]): ReturnType<typeof stack> => {
    const s = await stack({ ...spec, whiteouts: style === 'aufs' ? 'aufs' : undefined })
    expect(s.engine.features.whiteouts).toBe(style)
    return s
  }
  const whiteoutAt = (dirReal: string, name: string): boolean => style === 'aufs'
    ? fs.existsSync(`${dirReal}/.wh.${name}`) && !fs.existsSync(`${dirReal}/${name}`)
    : (() => { try { const st = fs.lstatSync(`${dirReal}/${name}`); return st.isCharacterDevice() && st.rdev === 0 } catch { return false } })()

  it('unlink of a lower file leaves a whiteout in the upper layer', async () => {
    const s = await mk({ lowers: [{ f: 'lower', g: 'g' }] })
    await s.engine.unlink('/f')
    expect(await exists(s.engine, '/f')).toBe(false)
    expect(await names(s.engine, '')).toEqual(['g'])
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
    expect(fs.readFileSync(s.low(0, '/f'), 'utf8')).toBe('lower')
    await expectErrno(s.engine.unlink('/f'), 'ENOENT')
  })

  it('unlink of an upper-only file leaves nothing', async () => {
    const s = await mk({ upper: { f: 'u' }, lowers: [{ g: 'g' }] })
    await s.engine.unlink('/f')
    expect(absentIn(s.upper, 'f')).toBe(true)
    expect(await realTree(s.upper)).toEqual({})
  })

  it('unlink of an upper file over a lower one leaves a whiteout', async () => {
    const s = await mk({ upper: { f: 'u' }, lowers: [{ f: 'l' }] })
    await s.engine.unlink('/f')
    expect(await exists(s.engine, '/f')).toBe(false)
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
  })

  it('unlink of a file copied up earlier leaves a whiteout', async () => {
    const s = await mk({ lowers: [{ f: 'l' }] })
    await writeMerged(s.engine, '/f', 'U')
    await s.engine.unlink('/f')
    expect(await exists(s.engine, '/f')).toBe(false)
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
  })

  it('unlink in a lower-only directory copies the directory up first', async () => {
    const s = await mk({ lowers: [{ d: dir({ f: 'f', g: 'g' }, { mode: 0o750, uid: 9, gid: 9 }) }] })
    await s.engine.unlink('/d/f')
    const st = fs.lstatSync(s.up('/d'))
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o750, 9, 9])
    expect(whiteoutAt(s.up('/d'), 'f')).toBe(true)
    expect(await names(s.engine, '/d')).toEqual(['g'])
  })

  it('a name can be created again after its unlink, showing nothing of the lower object', async () => {
    const s = await mk({ lowers: [{ f: 'lower data' }] })
    await s.engine.unlink('/f')
    await s.engine.release(await s.engine.create('/f', 0o644, 1, ROOT))
    expect(await readMerged(s.engine, '/f')).toBe('')
    await s.engine.unlink('/f')
    expect(await exists(s.engine, '/f')).toBe(false)
    expect(whiteoutAt(s.upper, 'f')).toBe(true)
  })

  it('wrong types and missing names', async () => {
    const s = await mk({ lowers: [{ d: dir(), f: 'f', gone: WH }] })
    await expectErrno(s.engine.unlink('/d'), 'EISDIR')
    await expectErrno(s.engine.rmdir('/f'), 'ENOTDIR')
    await expectErrno(s.engine.unlink('/none'), 'ENOENT')
    await expectErrno(s.engine.rmdir('/none'), 'ENOENT')
    await expectErrno(s.engine.unlink('/gone'), 'ENOENT')
    await expectErrno(s.engine.unlink('/f/x'), 'ENOTDIR')
    await expectErrno(s.engine.rmdir(''), 'EBUSY')
  })

  it('rmdir of a non-empty directory is ENOTEMPTY (merged, lower-only, upper-only)', async () => {
    const s = await mk({
      upper: { m: dir({ u: 'u' }), up: dir({ x: 'x' }), m2: dir() },
      lowers: [{ m: dir({ a: 'a' }), lo: dir({ b: 'b' }), m2: dir({ c: 'c' }) }],
    })
    for (const p of ['/m', '/lo', '/up', '/m2']) await expectErrno(s.engine.rmdir(p), 'ENOTEMPTY')
    expect(await names(s.engine, '')).toEqual(['lo', 'm', 'm2', 'up'])
    expect(await realTree(s.upper)).toEqual({ '/m': 'dir', '/m/u': 'file:u', '/up': 'dir', '/up/x': 'file:x', '/m2': 'dir' })
  })

  it('rmdir of a merged directory works once every lower entry is deleted, and leaves a whiteout', async () => {
    const s = await mk({ upper: { d: dir({ u: 'u' }) }, lowers: [{ d: dir({ a: 'a', sub: dir() }) }, { d: dir({ b: 'b' }) }] })
    await expectErrno(s.engine.rmdir('/d'), 'ENOTEMPTY')
    await s.engine.unlink('/d/a')
    await s.engine.unlink('/d/b')
    await s.engine.rmdir('/d/sub')
    await expectErrno(s.engine.rmdir('/d'), 'ENOTEMPTY')
    await s.engine.unlink('/d/u')
    expect(await names(s.engine, '/d')).toEqual([])
    await s.engine.rmdir('/d')
    expect(await exists(s.engine, '/d')).toBe(false)
    expect(await exists(s.engine, '/d/a')).toBe(false)
    expect(whiteoutAt(s.upper, 'd')).toBe(true)
    expect(workLeft(s)).toEqual([])
  })

  it('rmdir of a lower-only empty directory leaves a whiteout; of an upper-only one, nothing', async () => {
    const s = await mk({ upper: { u: dir() }, lowers: [{ l: dir() }] })
    await s.engine.rmdir('/l')
    await s.engine.rmdir('/u')
    expect(whiteoutAt(s.upper, 'l')).toBe(true)
    expect(absentIn(s.upper, 'u')).toBe(true)
    expect(await names(s.engine, '')).toEqual([])
  })

  it('mkdir over a whiteout makes an opaque directory: nothing from below shows', async () => {
    const s = await mk({ lowers: [{ d: dir({ a: 'a', sub: dir({ x: 'x' }) }) }, { d: dir({ b: 'b' }) }] })
    await s.engine.unlink('/d/a')
    await s.engine.unlink('/d/sub/x')
    await s.engine.rmdir('/d/sub')
    await s.engine.unlink('/d/b')
    await s.engine.rmdir('/d')
    await s.engine.mkdir('/d', 0o705, ROOT)
    expect(await names(s.engine, '/d')).toEqual([])
    expect(await exists(s.engine, '/d/a')).toBe(false)
    expect(await isOpaqueXattr(s.up('/d'))).toBe(true)
    expect(fs.lstatSync(s.up('/d')).mode & 0o7777).toBe(0o705)
    if (style === 'aufs') expect(fs.existsSync(s.up('/.wh.d'))).toBe(false)
    await s.engine.mkdir('/d/sub', 0o755, ROOT)
    expect(await names(s.engine, '/d/sub')).toEqual([])
    expect(await mergedTree(s.engine)).toEqual({ '/d': 'dir', '/d/sub': 'dir' })
    expect(workLeft(s)).toEqual([])
  })

  it('mkdir where nothing was below makes a plain (not opaque) directory with redirectDir: false (redirect_dir=on marks it opaque, redirect.test.ts)', async () => {
    const s = await mk({ lowers: [{ x: 'x' }], engine: { redirectDir: false } })
    await s.engine.mkdir('/d', 0o755, ROOT)
    expect(await isOpaqueXattr(s.up('/d'))).toBe(false)
  })

  it('a remount shows the same merged view (whiteouts and opaque dirs persist)', async () => {
    const s = await mk({
      upper: { keep: 'k' },
      lowers: [{ a: 'a', d: dir({ x: 'x', y: 'y' }), e: dir({ z: 'z' }) }, { b: 'b', d: dir({ w: 'w' }) }],
    })
    await s.engine.unlink('/a')
    await s.engine.unlink('/b')
    await s.engine.unlink('/d/x')
    await s.engine.unlink('/e/z')
    await s.engine.rmdir('/e')
    await s.engine.mkdir('/e', 0o755, ROOT)
    await s.engine.mknod('/e/new', 0o100644, 0, ROOT)
    await writeMerged(s.engine, '/d/y', 'Y')
    const view = await mergedTree(s.engine)
    expect(view).toEqual({ '/d': 'dir', '/d/w': 'file:w', '/d/y': 'file:Y', '/e': 'dir', '/e/new': 'file:', '/keep': 'file:k' })
    expect(await mergedTree(await s.reopen())).toEqual(view)
  })

  it('in the user.* xattr namespace, mkdir over a whiteout marks user.overlay.opaque (hidden from the view)', async () => {
    const s = await stack({ lowers: [{ d: dir({ a: 'a' }) }], whiteouts: style === 'aufs' ? 'aufs' : undefined, xattrNamespace: 'user' })
    await s.engine.unlink('/d/a')
    await s.engine.rmdir('/d')
    await s.engine.mkdir('/d', 0o755, ROOT)
    expect((await lgetxattr(s.up('/d'), 'user.overlay.opaque'))?.toString()).toBe('y')
    expect(await names(s.engine, '/d')).toEqual([])
    expect(await s.engine.listxattr('/d')).toEqual([])
    expect(await mergedTree(await s.reopen())).toEqual({ '/d': 'dir' })
  })

  it('unlink of a lower file in a directory whose upper copy is opaque leaves no whiteout', async () => {
    const s = await mk({ upper: { d: dir({ f: file('u') }, {}, 'trusted') }, lowers: [{ d: dir({ f: 'l' }) }] })
    await s.engine.unlink('/d/f')
    expect(absentIn(s.up('/d'), 'f')).toBe(true)
    expect(await names(s.engine, '/d')).toEqual([])
  })
})

describe('shared whiteouts (chardev)', () => {
  const lst = (p: string): fs.Stats => fs.lstatSync(p)

  it('whiteouts are links of one char device 0/0, as the kernel makes them; it leaves the work dir at close', async () => {
    const s = await stack({ upper: { u: 'u' }, lowers: [{ a: 'a', b: 'b', u: 'lower u', d: dir({ x: 'x' }) }] })
    await s.engine.unlink('/a')
    await s.engine.unlink('/b')
    await s.engine.unlink('/u') // over an upper file: made in the work dir, renamed over it
    await s.engine.unlink('/d/x')
    await s.engine.rmdir('/d') // over an upper directory: exchanged
    const wh = ['a', 'b', 'u', 'd'].map(n => lst(`${s.upper}/${n}`))
    for (const st of wh) expect([st.isCharacterDevice(), st.rdev]).toEqual([true, 0])
    expect(new Set(wh.map(st => st.ino)).size).toBe(1)
    const shared = fs.readdirSync(`${s.work}/work`)
    expect(shared).toHaveLength(1)
    expect(lst(`${s.work}/work/${shared[0]!}`).ino).toBe(wh[0]!.ino)
    expect(lst(`${s.upper}/a`).nlink).toBe(5)
    expect(await mergedTree(s.engine)).toEqual({})
    expect(workLeft(s)).toEqual([])
    expect(lst(`${s.upper}/a`).nlink).toBe(4)
  })

  it('a shared whiteout removed behind the engine\'s back is made anew', async () => {
    const s = await stack({ lowers: [{ a: 'a', b: 'b' }] })
    await s.engine.unlink('/a')
    for (const n of fs.readdirSync(`${s.work}/work`)) fs.unlinkSync(`${s.work}/work/${n}`)
    await s.engine.unlink('/b')
    const [a, b] = [lst(`${s.upper}/a`), lst(`${s.upper}/b`)]
    expect([a.isCharacterDevice(), a.rdev, b.isCharacterDevice(), b.rdev]).toEqual([true, 0, true, 0])
    expect(a.ino).not.toBe(b.ino)
    expect(await names(s.engine, '')).toEqual([])
    expect(workLeft(s)).toEqual([])
  })
})
