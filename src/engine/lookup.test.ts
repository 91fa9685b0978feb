// Lookup: top-down precedence through upper and lowers, whiteouts (char 0/0
// and `.wh.NAME`), opaque directories (trusted/user xattr, `.wh..wh..opq`),
// non-directories stopping the merge. Run both with the lower-directory
// listing cache and without it (maxListingEntries 1: every probe is an lstat).
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  C, WH, chr, dir, exists, expectErrno, fifo, file, mergedTree, names, opaqueDir, readMerged, stack, symlink, useTmp,
} from './test-helpers'

useTmp()

describe.each([
  ['with the lower listing cache', {}],
  ['with lstat probes only', { maxListingEntries: 1 }],
])('lookup %s', (_label, engineOpts) => {
  it('takes the top-most layer that has the name', async () => {
    const s = await stack({
      upper: { u: 'upper' },
      lowers: [{ u: 'l0', a: 'l0', b: 'l0' }, { u: 'l1', a: 'l1', b: 'l1', c: 'l1' }],
      engine: engineOpts,
    })
    expect(await readMerged(s.engine, '/u')).toBe('upper')
    expect(await readMerged(s.engine, '/a')).toBe('l0')
    expect(await readMerged(s.engine, '/b')).toBe('l0')
    expect(await readMerged(s.engine, '/c')).toBe('l1')
    await expectErrno(s.engine.getattr('/nope'), 'ENOENT')
  })

  it('reports the attributes of the top-most object', async () => {
    const s = await stack({
      lowers: [{ f: file('abc', { mode: 0o640, uid: 7, gid: 8 }) }, { f: file('longer text', { mode: 0o777 }) }],
      engine: engineOpts,
    })
    const a = await s.engine.getattr('/f')
    expect(a.mode).toBe(C.S_IFREG | 0o640)
    expect([a.uid, a.gid, a.size]).toEqual([7, 8, 3])
  })

  it('merges directories of the same name across all layers', async () => {
    const s = await stack({
      upper: { d: dir({ u: 'u' }) },
      lowers: [{ d: dir({ a: 'a', 'sub/x': 'x0' }) }, { d: dir({ b: 'b', 'sub/y': 'y1' }) }],
      engine: engineOpts,
    })
    expect(await mergedTree(s.engine, '/d')).toEqual({
      '/a': 'file:a', '/b': 'file:b', '/u': 'file:u', '/sub': 'dir', '/sub/x': 'file:x0', '/sub/y': 'file:y1',
    })
  })

  it('a char 0/0 whiteout hides the name in every layer below it', async () => {
    const s = await stack({
      upper: { w: WH },
      lowers: [{ x: WH, w: 'l0' }, { x: 'l1', w: 'l1', d: dir({ f: 'f' }) }],
      engine: engineOpts,
    })
    expect(await exists(s.engine, '/x')).toBe(false)
    expect(await exists(s.engine, '/w')).toBe(false)
    await expectErrno(s.engine.open('/x', C.O_RDONLY), 'ENOENT')
    expect(await names(s.engine, '')).toEqual(['d'])
  })

  it('a char device other than 0/0 is a real device, not a whiteout', async () => {
    const s = await stack({ lowers: [{ null: chr(1, 3) }, { null: 'below' }], engine: engineOpts })
    const a = await s.engine.getattr('/null')
    expect(a.mode & C.S_IFMT).toBe(C.S_IFCHR)
    expect(await names(s.engine, '')).toEqual(['null'])
  })

  it('a `.wh.NAME` file hides NAME in the layers below, not in its own layer', async () => {
    const s = await stack({
      upper: { '.wh.a': '', own: 'upper own', '.wh.own': '' },
      lowers: [{ a: 'l0', b: 'l0', '.wh.b': '', '.wh.c': '' }, { a: 'l1', b: 'l1', c: 'l1', d: dir({ k: 'k' }), '.wh.d': '' }],
      engine: engineOpts,
    })
    expect(await exists(s.engine, '/a')).toBe(false)
    expect(await readMerged(s.engine, '/b')).toBe('l0') // .wh.b in l0 hides only l1's b
    expect(await exists(s.engine, '/c')).toBe(false)
    expect(await readMerged(s.engine, '/own')).toBe('upper own')
    expect(await exists(s.engine, '/d')).toBe(true) // .wh.d is beside d in the same layer
    expect(await names(s.engine, '')).toEqual(['b', 'd', 'own'])
  })

  it('a `.wh.NAME` whiteout hides a lower directory and everything below it', async () => {
    const s = await stack({
      lowers: [{ '.wh.d': '' }, { d: dir({ f: 'f' }) }],
      engine: engineOpts,
    })
    expect(await exists(s.engine, '/d')).toBe(false)
    expect(await exists(s.engine, '/d/f')).toBe(false)
  })

  it.each([['trusted'], ['user'], ['wh']] as const)('an opaque directory (%s marker) hides the layers below it', async (how) => {
    const s = await stack({
      upper: { d: opaqueDir({ u: 'u' }, how) },
      lowers: [{ d: dir({ a: 'a' }), e: opaqueDir({ x: 'x0' }, how) }, { d: dir({ b: 'b' }), e: dir({ y: 'y1' }) }],
      engine: engineOpts,
    })
    expect(await names(s.engine, '/d')).toEqual(['u'])
    expect(await exists(s.engine, '/d/a')).toBe(false)
    expect(await exists(s.engine, '/e/y')).toBe(false)
    expect(await names(s.engine, '/e')).toEqual(['x']) // an opaque lower dir shows its own entries
    expect(await readMerged(s.engine, '/e/x')).toBe('x0')
  })

  it('an opaque xattr value other than "y" does not make a directory opaque', async () => {
    const s = await stack({
      lowers: [{ d: dir({ a: 'a' }, { xattrs: { 'trusted.overlay.opaque': 'n' } }) }, { d: dir({ b: 'b' }) }],
      engine: engineOpts,
    })
    expect(await names(s.engine, '/d')).toEqual(['a', 'b'])
  })

  it('a non-directory in a higher layer hides a lower directory', async () => {
    const s = await stack({
      upper: { s: symlink('/etc') },
      lowers: [{ d: 'a file', p: fifo() }, { d: dir({ f: 'f' }), p: dir({ g: 'g' }), s: dir({ h: 'h' }) }],
      engine: engineOpts,
    })
    expect((await s.engine.getattr('/d')).mode & C.S_IFMT).toBe(C.S_IFREG)
    expect((await s.engine.getattr('/p')).mode & C.S_IFMT).toBe(C.S_IFIFO)
    expect((await s.engine.getattr('/s')).mode & C.S_IFMT).toBe(C.S_IFLNK)
    await expectErrno(s.engine.getattr('/d/f'), 'ENOTDIR')
    await expectErrno(s.engine.readdir('/d'), 'ENOTDIR')
    const types = Object.fromEntries((await s.engine.readdir('')).map(e => [e.name, e.type]))
    expect(types).toEqual({ d: 'file', p: 'fifo', s: 'symlink' })
  })

  it('a lower non-directory under an upper directory stops the merge', async () => {
    const s = await stack({
      upper: { d: dir({ u: 'u' }) },
      lowers: [{ d: 'file in l0' }, { d: dir({ b: 'b' }) }],
      engine: engineOpts,
    })
    expect(await names(s.engine, '/d')).toEqual(['u'])
    expect(await exists(s.engine, '/d/b')).toBe(false)
  })

  it('an upper dir over a lower whiteout merges nothing from below the whiteout', async () => {
    const s = await stack({
      upper: { x: dir() },
      lowers: [{ x: WH }, { x: dir({ old: 'old' }) }],
      engine: engineOpts,
    })
    expect(await names(s.engine, '/x')).toEqual([])
  })

  it('ENOTDIR when a path goes through a file', async () => {
    const s = await stack({ lowers: [{ f: 'x', d: dir({ g: 'g' }) }], engine: engineOpts })
    await expectErrno(s.engine.getattr('/f/x'), 'ENOTDIR')
    await expectErrno(s.engine.getattr('/d/g/x'), 'ENOTDIR')
    await expectErrno(s.engine.open('/f/x', C.O_RDONLY), 'ENOTDIR')
    await expectErrno(s.engine.getattr('/nope/x'), 'ENOENT')
  })

  it('reads symlinks from the top-most layer without following them', async () => {
    const s = await stack({ lowers: [{ l: symlink('../nowhere') }, { l: symlink('other') }], engine: engineOpts })
    expect(await s.engine.readlink('/l')).toBe('../nowhere')
    await expectErrno(s.engine.readlink(''), 'EINVAL')
  })

  it('a merged directory reports the st_ino of its top-most lower directory, as the kernel does', async () => {
    // The kernel (same fs, index=off) shows a merged dir with its lower dir's st_ino,
    // also when the upper dir was not made by a copy-up (no origin xattr).
    const s = await stack({ upper: { d: dir(), o: opaqueDir() }, lowers: [{ d: dir(), o: dir() }], engine: engineOpts })
    expect((await s.engine.getattr('/d')).ino).toBe(fs.statSync(s.low(0, '/d')).ino)
    expect((await s.engine.getattr('/o')).ino).toBe(fs.statSync(s.up('/o')).ino) // opaque: not merged
  })

  it('st_ino is stable and distinct per object; a merged dir reports nlink 1', async () => {
    const s = await stack({
      upper: { d: dir({ u: 'u' }) },
      lowers: [{ d: dir({ a: 'a' }), f: 'f' }, { g: 'g' }],
      engine: engineOpts,
    })
    const inos = await Promise.all(['', '/d', '/d/u', '/d/a', '/f', '/g'].map(async p => (await s.engine.getattr(p)).ino))
    expect(new Set(inos).size).toBe(inos.length)
    expect((await s.engine.getattr('/d')).nlink).toBe(1)
    const again = await s.reopen()
    expect((await again.getattr('/d/a')).ino).toBe(inos[3])
  })
})
