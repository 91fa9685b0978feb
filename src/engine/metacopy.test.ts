// Metadata-only copy-up (metacopy=on, the default): chmod, chown, utimens and
// xattr changes copy up the metadata of a lower file, its data stays below
// until the first data change; the layout is the kernel's.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as sys from '../native/sys'
import { C, dir, expectErrno, file, names, readMerged, readHandle, sparse, stack, ts, useTmp, writeMerged, workLeft } from './test-helpers'

useTmp()

const BIG = 64 * 1024 * 1024

function lst (p: string): fs.BigIntStats {
  return fs.lstatSync(p, { bigint: true })
}

async function marker (p: string, ns = 'trusted'): Promise<Buffer | null> {
  return await sys.lgetxattr(p, `${ns}.overlay.metacopy`)
}

describe('metadata-only copy-up', () => {
  it.each([
    ['chmod', async (e: import('./engine').Engine) => { await e.chmod('/d/f', 0o600) }],
    ['chown', async (e: import('./engine').Engine) => { await e.chown('/d/f', 7, 8) }],
    ['utimens', async (e: import('./engine').Engine) => { await e.utimens('/d/f', ts(1_000_000_000_000_000_000n), ts(1_000_000_000_000_000_000n)) }],
    ['setxattr', async (e: import('./engine').Engine) => { await e.setxattr('/d/f', 'user.k', Buffer.from('v'), 0) }],
    ['removexattr', async (e: import('./engine').Engine) => { await e.removexattr('/d/f', 'user.old') }],
  ])('%s copies no data: an empty sparse file of the same size with the kernel\'s marker', async (_op, act) => {
    const s = await stack({ lowers: [{ d: dir({ f: file('lower data', { mode: 0o644, xattrs: { 'user.old': '1' } }) }) }] })
    const ino = (await s.engine.getattr('/d/f')).ino
    await act(s.engine)
    const up = lst(s.up('/d/f'))
    expect(up.size).toBe(10n)
    // No data: zeros, nothing allocated but perhaps the filesystem's block for the xattrs.
    expect(fs.readFileSync(s.up('/d/f')).equals(Buffer.alloc(10))).toBe(true)
    expect(up.blocks).toBeLessThanOrEqual(8n)
    expect(await marker(s.up('/d/f'))).toEqual(Buffer.alloc(0))
    expect(await readMerged(s.engine, '/d/f')).toBe('lower data')
    const a = await s.engine.getattr('/d/f')
    expect(a.ino).toBe(ino)
    expect(a.size).toBe(10)
    expect(a.blocks).toBe(Number(lst(s.low(0, '/d/f')).blocks))
    // The marker is private: not listed, not readable through the mount.
    expect(await s.engine.listxattr('/d/f')).not.toContain('trusted.overlay.metacopy')
    expect(workLeft(s)).toEqual([])
  })

  it('a read-only handle on the lower data answers fgetattr with the copy\'s attributes, also once the name is gone', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: file('lower data', { mode: 0o644 }), g: file('g data', { mode: 0o644 }) }) }] })
    // Opened before the metadata copy-up (the copy-up gives it the copy) and after it (the open does).
    const before = await s.engine.open('/d/f', C.O_RDONLY)
    await s.engine.chmod('/d/f', 0o600)
    await s.engine.chmod('/d/g', 0o640)
    const after = await s.engine.open('/d/g', C.O_RDONLY)
    for (const [h, mode] of [[before, 0o600], [after, 0o640]] as const) {
      expect(h.upper).toBe(false)
      expect((await s.engine.fgetattr(h)).mode & 0o7777).toBe(mode)
    }
    await s.engine.unlink('/d/f')
    await s.engine.chmod('/d/g', 0o604)
    await s.engine.unlink('/d/g')
    const [f, g] = [await s.engine.fgetattr(before), await s.engine.fgetattr(after)]
    expect([f.mode & 0o7777, f.nlink, f.size]).toEqual([0o600, 0, 10])
    expect([g.mode & 0o7777, g.nlink, g.size]).toEqual([0o604, 0, 6])
    expect(await readHandle(s.engine, before, null)).toBe('lower data')
    for (const h of [before, after]) await s.engine.release(h)
    expect(before.meta).toBeUndefined()
  })

  it('a chmod of a large file takes no space; reads still find the lower data', async () => {
    const s = await stack({ lowers: [{ f: sparse(BIG, BIG / 2, 'middle') }] })
    const before = fs.statfsSync(s.upper)
    await s.engine.chmod('/f', 0o600)
    const after = fs.statfsSync(s.upper)
    expect((before.bfree - after.bfree) * before.bsize).toBeLessThan(1024 * 1024)
    expect(lst(s.up('/f')).size).toBe(BigInt(BIG))
    expect(Number(lst(s.up('/f')).mode & 0o777n)).toBe(0o600)
    const h = await s.engine.open('/f', C.O_RDONLY)
    const b = Buffer.alloc(6)
    await s.engine.read(h, b, 6, BIG / 2)
    await s.engine.release(h)
    expect(b.toString()).toBe('middle')
  })

  it('the first write copies the data, keeping the metadata set before and st_ino; the lower file is untouched', async () => {
    const s = await stack({ lowers: [{ f: file('hello lower world', { mode: 0o644, uid: 3, gid: 4, xattrs: { 'user.a': 'x' } }) }] })
    const ino = (await s.engine.getattr('/f')).ino
    await s.engine.chmod('/f', 0o640)
    await s.engine.chown('/f', 5, 6)
    await s.engine.setxattr('/f', 'user.b', Buffer.from('y'), 0)
    await s.engine.utimens('/f', ts(1_500_000_000_000_000_001n), ts(1_400_000_000_000_000_003n))
    await writeMerged(s.engine, '/f', 'HELLO')
    const up = lst(s.up('/f'))
    expect(await marker(s.up('/f'))).toBeNull()
    expect(fs.readFileSync(s.up('/f'), 'utf8')).toBe('HELLO lower world')
    expect([Number(up.mode & 0o7777n), Number(up.uid), Number(up.gid)]).toEqual([0o640, 5, 6])
    expect((await sys.lgetxattr(s.up('/f'), 'user.a'))?.toString()).toBe('x')
    expect((await sys.lgetxattr(s.up('/f'), 'user.b'))?.toString()).toBe('y')
    expect((await s.engine.getattr('/f')).ino).toBe(ino)
    expect(fs.readFileSync(s.low(0, '/f'), 'utf8')).toBe('hello lower world')
    expect(workLeft(s)).toEqual([])
  })

  it('a read-only handle opened on the metadata-only copy reads the new data after a write through another handle', async () => {
    const s = await stack({ lowers: [{ f: 'abcdef' }] })
    await s.engine.chmod('/f', 0o600)
    const r = await s.engine.open('/f', C.O_RDONLY)
    await writeMerged(s.engine, '/f', 'XY')
    expect(await readHandle(s.engine, r, '/f')).toBe('XYcdef')
    await s.engine.release(r)
  })

  it('truncate to 0 drops the marker without copying; truncate to a size copies the data', async () => {
    const s = await stack({ lowers: [{ a: 'aaaa', b: 'bbbbbb' }] })
    await s.engine.chmod('/a', 0o600)
    await s.engine.chmod('/b', 0o600)
    await s.engine.truncate('/a', 0)
    await s.engine.truncate('/b', 3)
    expect(await marker(s.up('/a'))).toBeNull()
    expect(await marker(s.up('/b'))).toBeNull()
    expect(await readMerged(s.engine, '/a')).toBe('')
    expect(await readMerged(s.engine, '/b')).toBe('bbb')
  })

  it('rename moves a metadata-only copy with a redirect to its data (as the kernel); link copies the data first', async () => {
    const s = await stack({ lowers: [{ a: 'data-a', b: 'data-b', d: dir({ c: 'data-c' }), e: dir() }] })
    await s.engine.chmod('/a', 0o600)
    await s.engine.chmod('/b', 0o600)
    await s.engine.rename('/a', '/a2')
    // A lower file never changed before moves the same way: metadata only, a redirect (absolute when the dir changes).
    await s.engine.rename('/d/c', '/e/c2')
    await s.engine.link('/b', '/b2')
    expect(await marker(s.up('/a2'))).toEqual(Buffer.alloc(0))
    expect((await sys.lgetxattr(s.up('/a2'), 'trusted.overlay.redirect'))?.toString()).toBe('a')
    expect((await sys.lgetxattr(s.up('/e/c2'), 'trusted.overlay.redirect'))?.toString()).toBe('/d/c')
    expect(await readMerged(s.engine, '/a2')).toBe('data-a')
    expect(await readMerged(s.engine, '/e/c2')).toBe('data-c')
    expect(await readMerged(s.engine, '/b2')).toBe('data-b')
    expect(await readMerged(s.engine, '/b')).toBe('data-b')
    expect(await names(s.engine, '')).toEqual(['a2', 'b', 'b2', 'd', 'e'])
    expect(await names(s.engine, '/d')).toEqual([])
    // Renamed again, then written: the data comes along, the marker and the redirect go.
    await s.engine.rename('/a2', '/e/a3')
    expect((await sys.lgetxattr(s.up('/e/a3'), 'trusted.overlay.redirect'))?.toString()).toBe('/a')
    await writeMerged(s.engine, '/e/a3', 'D')
    expect(fs.readFileSync(s.up('/e/a3'), 'utf8')).toBe('Data-a')
    expect(await marker(s.up('/e/a3'))).toBeNull()
    expect(await sys.lgetxattr(s.up('/e/a3'), 'trusted.overlay.redirect')).toBeNull()
    const e2 = await s.reopen()
    expect(await readMerged(e2, '/e/c2')).toBe('data-c')
  })

  it('survives a remount: the data is still read from below', async () => {
    const s = await stack({ lowers: [{ f: 'kept below' }] })
    await s.engine.chown('/f', 9, 9)
    const e2 = await s.reopen()
    expect(await readMerged(e2, '/f')).toBe('kept below')
    expect((await e2.getattr('/f')).uid).toBe(9)
  })

  it('in the user xattr namespace it is off by default (the kernel refuses metacopy with userxattr); asked for, the marker is user.overlay.metacopy', async () => {
    const d = await stack({ lowers: [{ f: 'x'.repeat(100) }], xattrNamespace: 'user' })
    await d.engine.chmod('/f', 0o600)
    expect(fs.readFileSync(d.up('/f'), 'utf8')).toBe('x'.repeat(100))
    const s = await stack({ lowers: [{ f: 'x'.repeat(100) }], xattrNamespace: 'user', engine: { metacopy: true } })
    await s.engine.chmod('/f', 0o600)
    expect(await marker(s.up('/f'), 'user')).toEqual(Buffer.alloc(0))
    expect(await readMerged(s.engine, '/f')).toBe('x'.repeat(100))
  })

  it('empty files, and any file with metacopy=off, are copied whole as before', async () => {
    const s = await stack({ lowers: [{ e: '', f: 'data' }], engine: { metacopy: false } })
    await s.engine.chmod('/f', 0o600)
    expect(fs.readFileSync(s.up('/f'), 'utf8')).toBe('data')
    const t = await stack({ lowers: [{ e: '' }] })
    await t.engine.chmod('/e', 0o600)
    expect(await marker(t.up('/e'))).toBeNull()
  })

  it('a marker whose lower data is gone gives EIO', async () => {
    const s = await stack({ lowers: [{ f: 'data' }] })
    await s.engine.chmod('/f', 0o600)
    fs.unlinkSync(s.low(0, '/f'))
    const e2 = await s.reopen()
    await expectErrno(e2.getattr('/f'), 'EIO')
  })
})
