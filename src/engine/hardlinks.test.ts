// Hard links kept through copy-up (index=on, the default): every name of a
// lower file with several names shares one copy-up, one inode, the new data,
// and a consistent st_nlink and st_ino, also after a remount.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as sys from '../native/sys'
import { INDEX_DIR } from './hardlinks'
import { C, dir, hardlink, names, readMerged, stack, useTmp, writeMerged, workLeft } from './test-helpers'

useTmp()

function lst (p: string): fs.BigIntStats {
  return fs.lstatSync(p, { bigint: true })
}

async function view (e: import('./engine').Engine, names: string[]): Promise<Array<[string, number, number, string]>> {
  const out: Array<[string, number, number, string]> = []
  for (const n of names) {
    const a = await e.getattr(n)
    out.push([n, a.ino, a.nlink, await readMerged(e, n)])
  }
  return out
}

describe('hard links kept through copy-up', () => {
  it('a write through one name copies up once; every name sees the new data, one st_ino, the same st_nlink', async () => {
    const s = await stack({ lowers: [{ a: 'shared', d: dir({ b: hardlink('../a'), c: hardlink('../a') }) }] })
    const ino = (await s.engine.getattr('/a')).ino
    await writeMerged(s.engine, '/d/b', 'SH')
    expect(await view(s.engine, ['/a', '/d/b', '/d/c'])).toEqual([
      ['/a', ino, 3, 'SHared'], ['/d/b', ino, 3, 'SHared'], ['/d/c', ino, 3, 'SHared'],
    ])
    // One copy in the index, linked to the name written; the other names are still lower names.
    // Named as the kernel names it: the hex of the lower file's overlay file handle, also its origin xattr.
    const fh = await sys.overlayFh(s.low(0, '/a'))
    expect(fs.readdirSync(`${s.work}/${INDEX_DIR}`)).toEqual([fh.toString('hex')])
    expect(lst(s.up('/d/b')).ino).toBe(lst(`${s.work}/${INDEX_DIR}/${fh.toString('hex')}`).ino)
    expect(await sys.lgetxattr(s.up('/d/b'), 'trusted.overlay.origin')).toEqual(fh)
    expect(fh.subarray(0, 2)).toEqual(Buffer.from([0, 0xfb]))
    expect(fh[2]).toBe(fh.length)
    expect(fs.existsSync(s.up('/a'))).toBe(false)
    expect(fs.readFileSync(s.low(0, '/a'), 'utf8')).toBe('shared')
    // A second write through another name links it up, no second copy.
    await writeMerged(s.engine, '/a', 'AB', 4)
    expect(lst(s.up('/a')).ino).toBe(lst(s.up('/d/b')).ino)
    expect(await view(s.engine, ['/a', '/d/b', '/d/c'])).toEqual([
      ['/a', ino, 3, 'SHarAB'], ['/d/b', ino, 3, 'SHarAB'], ['/d/c', ino, 3, 'SHarAB'],
    ])
    expect(workLeft(s)).toEqual([])
  })

  it('keeps it all across a remount', async () => {
    const s = await stack({ lowers: [{ a: 'shared', b: hardlink('a') }] })
    const ino = (await s.engine.getattr('/a')).ino
    await writeMerged(s.engine, '/a', 'X')
    const e2 = await s.reopen()
    expect(await view(e2, ['/a', '/b'])).toEqual([['/a', ino, 2, 'Xhared'], ['/b', ino, 2, 'Xhared']])
  })

  it('unlink, link and rename keep st_nlink right on every name', async () => {
    const s = await stack({ lowers: [{ a: 'data', b: hardlink('a'), c: hardlink('a') }] })
    const ino = (await s.engine.getattr('/a')).ino
    await s.engine.chmod('/a', 0o600)
    await s.engine.unlink('/b')
    expect((await s.engine.getattr('/a')).nlink).toBe(2)
    expect((await s.engine.getattr('/c')).nlink).toBe(2)
    await s.engine.link('/c', '/e')
    expect(await view(s.engine, ['/a', '/c', '/e'])).toEqual([['/a', ino, 3, 'data'], ['/c', ino, 3, 'data'], ['/e', ino, 3, 'data']])
    await s.engine.rename('/c', '/f')
    expect((await s.engine.getattr('/f')).nlink).toBe(3)
    expect(Number((await s.engine.getattr('/f')).mode & 0o777)).toBe(0o600)
    await s.engine.unlink('/a')
    await s.engine.unlink('/e')
    expect((await s.engine.getattr('/f')).nlink).toBe(1)
    const e2 = await s.reopen()
    expect(await view(e2, ['/f'])).toEqual([['/f', ino, 1, 'data']])
    expect(await names(e2, '')).toEqual(['f'])
  })

  it('an entry no name refers to any more is dropped at mount; one still serving lower names stays', async () => {
    const s = await stack({ lowers: [{ a: 'data', b: hardlink('a'), c: 'other', d: hardlink('c') }] })
    await writeMerged(s.engine, '/a', 'A')
    await writeMerged(s.engine, '/c', 'C')
    // As after a crash between the unlinks and the entry's removal: only the entries are left.
    fs.rmSync(s.up('/a'))
    fs.rmSync(s.up('/c'))
    const fhA = (await sys.overlayFh(s.low(0, '/a'))).toString('hex')
    await sys.lsetxattr(`${s.work}/${INDEX_DIR}/${fhA}`, 'trusted.overlay.nlink', Buffer.from('U-1'))
    const e2 = await s.reopen()
    const left = fs.readdirSync(`${s.work}/${INDEX_DIR}`)
    expect(left).toHaveLength(1)
    expect(left).not.toContain(fhA)
    expect(await readMerged(e2, '/d')).toBe('Cther')
  })

  it('the index entry goes with the last name', async () => {
    const s = await stack({ lowers: [{ a: 'data', b: hardlink('a') }] })
    await writeMerged(s.engine, '/a', 'D')
    await s.engine.unlink('/a')
    expect(fs.readdirSync(`${s.work}/${INDEX_DIR}`)).toHaveLength(1)
    await s.engine.unlink('/b')
    expect(fs.readdirSync(`${s.work}/${INDEX_DIR}`)).toEqual([])
  })

  it('unlinking a name before any copy-up whites it out and drops the others\' count (as the kernel links it up first)', async () => {
    const s = await stack({ lowers: [{ a: 'data', b: hardlink('a') }] })
    await s.engine.unlink('/b')
    expect((await s.engine.getattr('/a')).nlink).toBe(1)
    expect(await readMerged(s.engine, '/a')).toBe('data')
    expect(await names(s.engine, '')).toEqual(['a'])
  })

  it('renaming over a lower name of it links that name up first, so the others\' count drops (as the kernel)', async () => {
    const s = await stack({ lowers: [{ a: 'data', b: hardlink('a'), c: 'other' }] })
    await s.engine.rename('/c', '/b')
    expect((await s.engine.getattr('/a')).nlink).toBe(1)
    expect(await readMerged(s.engine, '/b')).toBe('other')
    expect(await readMerged(s.engine, '/a')).toBe('data')
  })

  it('a read-only handle on another name, opened before the copy-up, sees writes made through the first', async () => {
    const s = await stack({ lowers: [{ a: 'abcd', b: hardlink('a') }] })
    const h = await s.engine.open('/b', C.O_RDONLY)
    await writeMerged(s.engine, '/a', 'Z')
    await writeMerged(s.engine, '/a', 'Y', 1)
    const buf = Buffer.alloc(4)
    expect(await s.engine.read(h, buf, 4, 0)).toBe(4)
    await s.engine.release(h)
    expect(buf.toString()).toBe('ZYcd')
  })

  it('xattrs set through one name show on the others; the nlink record is private', async () => {
    const s = await stack({ lowers: [{ a: 'x', b: hardlink('a') }] })
    await s.engine.setxattr('/a', 'user.k', Buffer.from('v'), 0)
    expect((await s.engine.getxattr('/b', 'user.k'))?.toString()).toBe('v')
    expect(await s.engine.listxattr('/b')).toEqual(['user.k'])
    expect((await sys.lgetxattr(s.up('/a'), 'trusted.overlay.nlink'))?.toString()).toMatch(/^U[+-]\d+$/)
  })

  it('in the user xattr namespace too (rootless): the records are user.overlay.*', async () => {
    const s = await stack({ lowers: [{ a: 'shared', b: hardlink('a') }], xattrNamespace: 'user' })
    await writeMerged(s.engine, '/a', 'SH')
    expect(await readMerged(s.engine, '/b')).toBe('SHared')
    expect((await s.engine.getattr('/b')).nlink).toBe(2)
    expect((await sys.lgetxattr(s.up('/a'), 'user.overlay.nlink'))?.toString()).toMatch(/^U[+-]\d+$/)
    expect(await sys.lgetxattr(s.up('/a'), 'user.overlay.origin')).toEqual(await sys.overlayFh(s.low(0, '/a')))
  })

  it('with index=off hard links are broken, as the kernel does by default', async () => {
    const s = await stack({ lowers: [{ a: 'shared', b: hardlink('a') }], engine: { index: false } })
    await writeMerged(s.engine, '/a', 'SH')
    expect(await readMerged(s.engine, '/b')).toBe('shared')
    expect(fs.existsSync(`${s.work}/${INDEX_DIR}`)).toBe(false)
  })
})
