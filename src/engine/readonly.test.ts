// Without an upperdir the overlay is read-only: every write operation is
// EROFS, reads work, statfs reports the top lower layer.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { errnoName, statfs, UTIME_NOW } from '../native/sys'
import { errnoOf } from './errors'
import { C, ROOT, WH, dir, expectErrno, file, mergedTree, readMerged, realTree, stack, symlink, useTmp, type Tree } from './test-helpers'

useTmp()

describe('read-only overlay (no upperdir)', () => {
  const layers: Tree[] = [
    { f: file('top', { xattrs: { 'user.a': 'A' } }), d: dir({ x: 'x' }), l: symlink('f'), gone: WH },
    { f: 'below', d: dir({ y: 'y' }), gone: 'g', e: dir() },
  ]

  it('reads the merged view', async () => {
    const s = await stack({ lowers: layers, readOnly: true })
    expect(s.engine.features.readOnly).toBe(true)
    expect(await mergedTree(s.engine)).toEqual({
      '/d': 'dir', '/d/x': 'file:x', '/d/y': 'file:y', '/e': 'dir', '/f': 'file:top', '/l': 'symlink:f',
    })
    expect(await s.engine.getxattr('/f', 'user.a')).toEqual(Buffer.from('A'))
    expect(await s.engine.listxattr('/f')).toEqual(['user.a'])
  })

  it('every write operation is EROFS', async () => {
    const s = await stack({ lowers: layers, readOnly: true })
    const e = s.engine
    const now = { sec: 0, nsec: UTIME_NOW }
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['open O_WRONLY', async () => await e.open('/f', C.O_WRONLY)],
      ['open O_RDWR', async () => await e.open('/f', C.O_RDWR)],
      ['open O_TRUNC', async () => await e.open('/f', C.O_RDONLY | C.O_TRUNC)],
      ['create', async () => await e.create('/new', 0o644, C.O_WRONLY, ROOT)],
      ['mkdir', async () => { await e.mkdir('/newd', 0o755, ROOT) }],
      ['mknod', async () => { await e.mknod('/p', C.S_IFIFO | 0o644, 0, ROOT) }],
      ['symlink', async () => { await e.symlink('t', '/s', ROOT) }],
      ['link', async () => { await e.link('/f', '/f2') }],
      ['unlink', async () => { await e.unlink('/f') }],
      ['unlink missing', async () => { await e.unlink('/none') }],
      ['rmdir', async () => { await e.rmdir('/e') }],
      ['rename', async () => { await e.rename('/f', '/g') }],
      ['rename dir', async () => { await e.rename('/d', '/d2') }],
      ['chmod', async () => { await e.chmod('/f', 0o600) }],
      ['chown', async () => { await e.chown('/f', 1, 1) }],
      ['utimens', async () => { await e.utimens('/f', now, now) }],
      ['truncate', async () => { await e.truncate('/f', 0) }],
      ['setxattr', async () => { await e.setxattr('/f', 'user.b', Buffer.from('b'), 0) }],
      ['removexattr', async () => { await e.removexattr('/f', 'user.a') }],
      ['removexattr absent', async () => { await e.removexattr('/f', 'user.none') }],
      ['chmod dir', async () => { await e.chmod('/d', 0o700) }],
    ]
    const got: Record<string, string> = {}
    for (const [name, op] of ops) got[name] = await op().then(() => 'succeeded', (err: unknown) => errnoName(errnoOf(err)))
    expect(got).toEqual(Object.fromEntries(ops.map(([name]) => [name, 'EROFS'])))
    await expectErrno(e.unlink('/none'), 'EROFS')
    expect(await readMerged(e, '/f')).toBe('top')
    expect(await realTree(s.lowers[0] as string)).toEqual({
      '/d': 'dir', '/d/x': 'file:x', '/f': 'file:top', '/gone': 'whiteout', '/l': 'symlink:f',
    })
  })

  it('statfs reports the top lower layer', async () => {
    const s = await stack({ lowers: layers, readOnly: true })
    const a = await s.engine.statfs()
    const b = await statfs(s.lowers[0] as string)
    expect([a.bsize, a.blocks, a.namemax]).toEqual([b.bsize, b.blocks, b.namemax])
    expect(fs.existsSync(`${s.root}/work`)).toBe(false)
  })

  it('the work dir is not touched, and nothing is written anywhere by reading', async () => {
    const s = await stack({ lowers: layers, readOnly: true })
    const before = await realTree(s.root)
    await mergedTree(s.engine)
    expect(await realTree(s.root)).toEqual(before)
  })
})
