// The FUSE adapter's presentation options that need no mount (noacl), and fgetattr by open file.
import { constants } from 'node:os'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { IdMapping } from '../engine/mapping'
import { lgetxattr } from '../native/sys'
import { file, stack, useTmp } from '../engine/test-helpers'
import { makeOps } from './adapter'
import type { FuseOps } from './binding'

useTmp()

const EOPNOTSUPP = constants.errno.EOPNOTSUPP
const { EBADF, ENOENT } = constants.errno
const UNDEF = 0xFFFFFFFF
/** A valid version-2 access ACL: user::rw-, user:1000:r--, group::r--, mask::r--, other::r--. */
const ACL = (() => {
  const entries: Array<[number, number, number]> = [[0x01, 6, UNDEF], [0x02, 4, 1000], [0x04, 4, UNDEF], [0x10, 4, UNDEF], [0x20, 4, UNDEF]]
  const b = Buffer.alloc(4 + 8 * entries.length)
  b.writeUInt32LE(2, 0)
  entries.forEach(([tag, perm, id], i) => { b.writeUInt16LE(tag, 4 + 8 * i); b.writeUInt16LE(perm, 6 + 8 * i); b.writeUInt32LE(id, 8 + 8 * i) })
  return b
})()

async function ops (noacl: boolean): Promise<{ ops: FuseOps, up: (p: string) => string }> {
  const s = await stack({
    upper: { u: file('u', { xattrs: { 'system.posix_acl_access': ACL, 'user.a': 'A' } }) },
    lowers: [{ l: file('l', { xattrs: { 'system.posix_acl_access': ACL } }) }],
  })
  const o = makeOps(s.engine, () => ({ uid: 0, gid: 0, pid: 0, umask: 0 }), pino({ level: 'silent' }), { ids: new IdMapping(), staticNlink: false, noacl })
  return { ops: o, up: s.up }
}

const get = async (o: FuseOps, p: string, name: string): Promise<[number, Buffer | null | undefined]> =>
  await new Promise(resolve => o.getxattr?.(p, name, 0, (st, v) => resolve([st, v])))
const set = async (o: FuseOps, p: string, name: string, v: Buffer): Promise<number> =>
  await new Promise(resolve => o.setxattr?.(p, name, v, 0, 0, resolve))
const list = async (o: FuseOps, p: string): Promise<[number, string[] | undefined]> =>
  await new Promise(resolve => o.listxattr?.(p, (st, names) => resolve([st, names])))
const remove = async (o: FuseOps, p: string, name: string): Promise<number> =>
  await new Promise(resolve => o.removexattr?.(p, name, resolve))

describe('noacl', () => {
  it('off (the default): POSIX ACL xattrs are read, listed, written and removed as stored', async () => {
    const { ops: o, up } = await ops(false)
    expect(await get(o, '/u', 'system.posix_acl_access')).toEqual([0, ACL])
    const [st, names] = await list(o, '/u')
    expect(st).toBe(0)
    expect(names).toContain('system.posix_acl_access')
    expect(await set(o, '/l', 'system.posix_acl_access', ACL)).toBe(0)
    expect(await lgetxattr(up('/l'), 'system.posix_acl_access')).toEqual(ACL)
    expect(await remove(o, '/u', 'system.posix_acl_access')).toBe(0)
  })

  it('on: get/set/remove of system.posix_acl_access and _default are EOPNOTSUPP, listxattr leaves them out', async () => {
    const { ops: o, up } = await ops(true)
    for (const name of ['system.posix_acl_access', 'system.posix_acl_default']) {
      expect((await get(o, '/u', name))[0]).toBe(-EOPNOTSUPP)
      expect(await set(o, '/u', name, ACL)).toBe(-EOPNOTSUPP)
      expect(await remove(o, '/u', name)).toBe(-EOPNOTSUPP)
    }
    expect(await list(o, '/u')).toEqual([0, ['user.a']])
    expect(await list(o, '/l')).toEqual([0, []])
    // A refused setxattr on a lower file copies nothing up.
    expect(await set(o, '/l', 'system.posix_acl_access', ACL)).toBe(-EOPNOTSUPP)
    await expect(lgetxattr(up('/l'), 'system.posix_acl_access')).rejects.toThrow()
    // Other xattrs are unaffected, and the ACL stays on the layer.
    expect(await get(o, '/u', 'user.a')).toEqual([0, Buffer.from('A')])
    expect(await set(o, '/u', 'user.b', Buffer.from('B'))).toBe(0)
    expect(await lgetxattr(up('/u'), 'system.posix_acl_access')).toEqual(ACL)
  })
})

describe('fgetattr', () => {
  const fgetattr = async (o: FuseOps, p: string | null, fh: number): Promise<[number, { size?: number, nlink?: number } | undefined]> =>
    await new Promise(resolve => o.fgetattr?.(p, fh, (st, v) => resolve([st, v as { size?: number, nlink?: number } | undefined])))

  it('answers from the open file after its name is gone (nlink 0), ENOENT for a released fh with no name, EBADF with one', async () => {
    const { ops: o } = await ops(false)
    const [st, fh] = await new Promise<[number, number | undefined]>(resolve => o.open?.('/u', 0 /* O_RDONLY */, (s, h) => resolve([s, h])))
    expect(st).toBe(0)
    expect(await new Promise(resolve => o.unlink?.('/u', resolve))).toBe(0)
    const [st2, attr] = await fgetattr(o, null, fh as number)
    expect(st2).toBe(0)
    expect(attr?.size).toBe(1)
    expect(attr?.nlink).toBe(0)
    expect(await new Promise(resolve => o.release?.(null, fh as number, resolve))).toBe(0)
    // Patch item 29 may hand over an fh whose RELEASE came first.
    expect((await fgetattr(o, null, fh as number))[0]).toBe(-ENOENT)
    expect((await fgetattr(o, '/l', fh as number))[0]).toBe(-EBADF)
  })
})
