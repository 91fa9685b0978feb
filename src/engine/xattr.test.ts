// xattrs in the merged view: get/set/list/remove on the top-most object,
// copy-up before a change, overlay-private names hidden and refused.
import { describe, expect, it } from 'vitest'
import { lgetxattr, XATTR_CREATE, XATTR_REPLACE } from '../native/sys'
import {
  ROOT, dir, expectErrno, file, opaqueDir, realTree, stack, symlink, useTmp, writeMerged, xattrNames,
} from './test-helpers'

useTmp()

describe('xattrs', () => {
  it('get and list read the top-most object', async () => {
    const s = await stack({
      upper: { u: file('u', { xattrs: { 'user.up': '1' } }) },
      lowers: [{ f: file('f', { xattrs: { 'user.a': 'A', 'trusted.t': 'T' } }), u: file('l', { xattrs: { 'user.low': '1' } }) }],
    })
    expect((await s.engine.listxattr('/f')).sort()).toEqual(['trusted.t', 'user.a'])
    expect(await s.engine.getxattr('/f', 'user.a')).toEqual(Buffer.from('A'))
    expect(await s.engine.getxattr('/f', 'user.none')).toBeNull()
    expect(await s.engine.listxattr('/u')).toEqual(['user.up'])
    expect(await s.engine.getxattr('/u', 'user.low')).toBeNull()
  })

  it('hides overlay-private names from listxattr', async () => {
    const s = await stack({
      upper: { d: opaqueDir({ x: 'x' }, 'trusted', { xattrs: { 'user.keep': 'k' } }) },
      lowers: [{ d: dir({ y: 'y' }), f: file('f', { xattrs: { 'trusted.overlay.origin': 'o', 'trusted.overlay.redirect': 'r', 'user.v': 'v' } }) }],
    })
    expect(await s.engine.listxattr('/d')).toEqual(['user.keep'])
    expect(await s.engine.listxattr('/f')).toEqual(['user.v'])
    // A copy-up records the origin in a private xattr: still hidden.
    await s.engine.chmod('/f', 0o600)
    expect((await xattrNames(s.up('/f'))).some(n => n.startsWith('trusted.overlay.'))).toBe(true)
    expect(await s.engine.listxattr('/f')).toEqual(['user.v'])
  })

  it('getxattr and setxattr of overlay-private names are EOPNOTSUPP', async () => {
    const s = await stack({ upper: { d: opaqueDir() }, lowers: [{ d: dir({ a: 'a' }), f: 'f' }] })
    await expectErrno(s.engine.getxattr('/d', 'trusted.overlay.opaque'), 'EOPNOTSUPP')
    await expectErrno(s.engine.getxattr('/f', 'trusted.overlay.anything'), 'EOPNOTSUPP')
    await expectErrno(s.engine.setxattr('/d', 'trusted.overlay.opaque', Buffer.from('n'), 0), 'EOPNOTSUPP')
    await expectErrno(s.engine.setxattr('/f', 'trusted.overlay.opaque', Buffer.from('y'), 0), 'EOPNOTSUPP')
    await expectErrno(s.engine.removexattr('/d', 'trusted.overlay.opaque'), 'EOPNOTSUPP')
    expect(await realTree(s.upper)).toEqual({ '/d': 'dir opaque' }) // no copy-up of /f, /d still opaque
  })

  it('in the user namespace, user.overlay.* is private too', async () => {
    const s = await stack({
      lowers: [{ f: file('f', { xattrs: { 'user.overlay.origin': 'o', 'user.ok': '1' } }) }],
      xattrNamespace: 'user',
    })
    expect(await s.engine.listxattr('/f')).toEqual(['user.ok'])
    await expectErrno(s.engine.getxattr('/f', 'user.overlay.origin'), 'EOPNOTSUPP')
    await expectErrno(s.engine.setxattr('/f', 'user.overlay.opaque', Buffer.from('y'), 0), 'EOPNOTSUPP')
  })

  it('setxattr copies a lower object up and sets the xattr there, honouring XATTR_CREATE/REPLACE', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: file('data', { xattrs: { 'user.old': 'o' } }) }) }] })
    await s.engine.setxattr('/d/f', 'user.new', Buffer.from('n'), 0)
    expect(await lgetxattr(s.up('/d/f'), 'user.new')).toEqual(Buffer.from('n'))
    expect(await lgetxattr(s.up('/d/f'), 'user.old')).toEqual(Buffer.from('o'))
    expect(await lgetxattr(s.low(0, '/d/f'), 'user.new')).toBeNull()
    await expectErrno(s.engine.setxattr('/d/f', 'user.new', Buffer.from('x'), XATTR_CREATE), 'EEXIST')
    await expectErrno(s.engine.setxattr('/d/f', 'user.none', Buffer.from('x'), XATTR_REPLACE), 'ENODATA')
    await s.engine.setxattr('/d', 'trusted.dir', Buffer.from('D'), 0)
    expect(await s.engine.getxattr('/d', 'trusted.dir')).toEqual(Buffer.from('D'))
  })

  it('removexattr of an xattr a lower file lacks is ENODATA, without a copy-up', async () => {
    const s = await stack({ lowers: [{ d: dir({ f: file('x', { xattrs: { 'user.a': 'A' } }) }) }] })
    await expectErrno(s.engine.removexattr('/d/f', 'user.none'), 'ENODATA')
    await expectErrno(s.engine.removexattr('/d', 'user.none'), 'ENODATA')
    expect(await realTree(s.upper)).toEqual({})
  })

  it('removexattr of a lower xattr copies up and removes it there only', async () => {
    const s = await stack({ lowers: [{ f: file('x', { xattrs: { 'user.a': 'A', 'user.b': 'B' } }) }] })
    await s.engine.removexattr('/f', 'user.a')
    expect(await s.engine.listxattr('/f')).toEqual(['user.b'])
    expect(await lgetxattr(s.low(0, '/f'), 'user.a')).toEqual(Buffer.from('A'))
    await expectErrno(s.engine.removexattr('/f', 'user.a'), 'ENODATA')
  })

  it('xattrs of new objects and of symlinks', async () => {
    const s = await stack({ lowers: [{ l: symlink('x') }] })
    await s.engine.mkdir('/n', 0o755, ROOT)
    await s.engine.setxattr('/n', 'user.n', Buffer.from('1'), 0)
    expect(await s.engine.listxattr('/n')).toEqual(['user.n'])
    // user.* is not allowed on symlinks (EPERM from the real fs); trusted.* is.
    await expectErrno(s.engine.setxattr('/l', 'user.x', Buffer.from('1'), 0), 'EPERM')
    await s.engine.setxattr('/l', 'trusted.x', Buffer.from('1'), 0)
    expect(await s.engine.getxattr('/l', 'trusted.x')).toEqual(Buffer.from('1'))
    expect(await s.engine.readlink('/l')).toBe('x')
  })

  it('xattrs stay with the file through writes and renames', async () => {
    const s = await stack({ lowers: [{ f: file('x', { xattrs: { 'user.a': 'A' } }) }] })
    await writeMerged(s.engine, '/f', 'y')
    await s.engine.rename('/f', '/g')
    expect(await s.engine.getxattr('/g', 'user.a')).toEqual(Buffer.from('A'))
    await expectErrno(s.engine.getxattr('/f', 'user.a'), 'ENOENT')
  })
})
