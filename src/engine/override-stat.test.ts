// xattr_permissions=1|2 on plain directories: owner and mode in the override
// xattr (written by chown/chmod/creation/copy-up, read by getattr), the
// upper root's value at mount, lower layers honoured by their root's xattr,
// the names hidden through the mount, and level 0 leaving all of it alone.
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { lgetxattr, lsetxattr } from '../native/sys'
import { Engine, type EngineOptions } from './engine'
import type { XattrPermissions } from './mapping'
import { OVERRIDE_STAT_NAMES } from './override-stat'
import { C, ROOT, USER, dir, expectErrno, file, readMerged, stack, useTmp, type Stack, type Tree } from './test-helpers'

useTmp()

const USERNAME = 'user.fuseoverlayfs.override_stat'
const SECNAME = 'security.fuseoverlayfs.override_stat'
const REG = C.S_IFREG
const DIR = C.S_IFDIR

/** Layers built with xattr_permissions off, then `prepare` (e.g. xattrs on layer roots), then an engine at `level`. */
async function withLevel (level: XattrPermissions, spec: { lowers: Tree[], upper?: Tree }, prepare?: (s: Stack) => Promise<void>): Promise<{ s: Stack, e: Engine, reopen: () => Promise<Engine> }> {
  const s = await stack(spec)
  await prepare?.(s)
  const options: EngineOptions = { lowerdirs: s.lowers, upperdir: s.upper, workdir: s.work, xattrPermissions: level }
  const reopen = async (): Promise<Engine> => await Engine.open(options)
  return { s, e: await reopen(), reopen }
}

const xattr = async (p: string, name = USERNAME): Promise<string | null> => (await lgetxattr(p, name))?.toString() ?? null
const owner = async (e: Engine, p: string): Promise<[number, number, string]> => {
  const a = await e.getattr(p)
  return [a.uid, a.gid, a.mode.toString(8)]
}

describe('xattr_permissions=2', () => {
  it('at mount the upper root gets owner 0:0 and its real mode when no root has a value; the root then shows it', async () => {
    const { s, e } = await withLevel(2, { lowers: [{ f: 'f' }] }, async (s) => {
      fs.chmodSync(s.upper, 0o751)
      fs.chownSync(s.upper, 12, 34)
    })
    expect(await xattr(s.upper)).toBe('0:0:40751')
    expect(await owner(e, '')).toEqual([0, 0, (DIR | 0o751).toString(8)])
  })

  it('at mount the upper root takes a lower root\'s value; a value already there stays', async () => {
    const { s, e, reopen } = await withLevel(2, { lowers: [{ f: 'f' }, {}] }, async (s) => {
      await lsetxattr(s.lowers[1] as string, 'user.containers.override_stat', Buffer.from('7:8:750'))
    })
    expect(await xattr(s.upper)).toBe('7:8:750')
    expect(await owner(e, '')).toEqual([7, 8, (DIR | 0o750).toString(8)])
    await e.chmod('', 0o711)
    await reopen()
    expect(await xattr(s.upper)).toBe('7:8:40711')
  })

  it('chown and chmod of an upper file write the xattr, not the real owner and mode; -1 keeps an id; chmod keeps the owner', async () => {
    const { s, e } = await withLevel(2, { lowers: [{}], upper: { f: file('f', { mode: 0o644, uid: 0, gid: 0 }) } })
    await e.chown('/f', 1000, 2000)
    expect(await owner(e, '/f')).toEqual([1000, 2000, (REG | 0o644).toString(8)])
    await e.chmod('/f', 0o4710)
    expect(await owner(e, '/f')).toEqual([1000, 2000, (REG | 0o4710).toString(8)])
    await e.chown('/f', -1, 3000)
    expect(await owner(e, '/f')).toEqual([1000, 3000, (REG | 0o4710).toString(8)])
    await e.chown('/f', 4000, -1)
    expect(await xattr(s.up('/f'))).toBe('4000:3000:104710')
    const st = fs.lstatSync(s.up('/f'))
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o644])
  })

  it('chown of a lower file copies it up first; the copy stays the daemon\'s and records the new owner', async () => {
    const { s, e } = await withLevel(2, { lowers: [{ d: dir({ f: file('data', { mode: 0o600, uid: 1000, gid: 1000 }) }, { mode: 0o750, uid: 1000, gid: 1000 }) }] })
    expect(await owner(e, '/d/f')).toEqual([1000, 1000, (REG | 0o600).toString(8)])
    await e.chown('/d/f', 55, 66)
    expect(await owner(e, '/d/f')).toEqual([55, 66, (REG | 0o600).toString(8)])
    // A metadata-only copy (metacopy=on): the data is still read from below.
    expect(await readMerged(e, '/d/f')).toBe('data')
    const st = fs.lstatSync(s.up('/d/f'))
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o700])
    // The parent copied up on the way keeps what it showed, in its xattr.
    expect(await xattr(s.up('/d'))).toBe('1000:1000:40750')
    expect(await owner(e, '/d')).toEqual([1000, 1000, (DIR | 0o750).toString(8)])
  })

  it('copy-up carries the override of a lower layer whose root has one; a lower without it is read for real', async () => {
    const { s, e } = await withLevel(2, {
      lowers: [
        { a: file('a', { xattrs: { [USERNAME]: '11:12:640' } }), plain: file('p', { mode: 0o604, uid: 21, gid: 22, xattrs: { [USERNAME]: '99:99:777' } }) },
      ],
    }, async (s) => {
      // l0's root marks it as a layer whose objects' override xattrs count.
      await lsetxattr(s.lowers[0] as string, USERNAME, Buffer.from('0:0:755'))
    })
    expect(await owner(e, '/a')).toEqual([11, 12, (REG | 0o640).toString(8)])
    expect(await owner(e, '/plain')).toEqual([99, 99, (REG | 0o777).toString(8)])
    await e.utimens('/a', { sec: 1, nsec: 0 }, { sec: 2, nsec: 0 })
    expect(await xattr(s.up('/a'))).toBe('11:12:100640')
    expect(await owner(e, '/a')).toEqual([11, 12, (REG | 0o640).toString(8)])
  })

  it('copy-up does not copy the other override names; the copy has the upper layer\'s only', async () => {
    const { s, e } = await withLevel(2, {
      lowers: [{ f: file('f', { mode: 0o640, xattrs: { [SECNAME]: '1:2:777', 'user.containers.override_stat': '3:4:777', 'user.keep': 'k' } }) }],
    })
    await e.utimens('/f', { sec: 1, nsec: 0 }, { sec: 2, nsec: 0 })
    expect((await lgetxattr(s.up('/f'), SECNAME))).toBeNull()
    expect((await lgetxattr(s.up('/f'), 'user.containers.override_stat'))).toBeNull()
    expect(await xattr(s.up('/f'))).toBe('0:0:100640')
    expect(await xattr(s.up('/f'), 'user.keep')).toBe('k')
  })

  it('a lower layer whose root has no override xattr shows real owners, also after copy-up', async () => {
    const { s, e } = await withLevel(2, {
      lowers: [{ f: file('f', { mode: 0o604, uid: 21, gid: 22, xattrs: { [USERNAME]: '99:99:777' } }) }],
    })
    expect(await owner(e, '/f')).toEqual([21, 22, (REG | 0o604).toString(8)])
    await e.utimens('/f', { sec: 1, nsec: 0 }, { sec: 2, nsec: 0 })
    expect(await xattr(s.up('/f'))).toBe('21:22:100604')
    expect(await owner(e, '/f')).toEqual([21, 22, (REG | 0o604).toString(8)])
  })

  it('creation records the caller and the mode asked for; the real object is the daemon\'s with mode|0700', async () => {
    const { s, e } = await withLevel(2, { lowers: [{ d: dir({}, { mode: 0o777 }) }] })
    await e.release(await e.create('/d/f', REG | 0o600, C.O_WRONLY, USER))
    await e.mkdir('/d/sub', 0o700, USER)
    await e.mknod('/d/p', C.S_IFIFO | 0o640, 0, USER)
    expect(await owner(e, '/d/f')).toEqual([USER.uid, USER.gid, (REG | 0o600).toString(8)])
    expect(await owner(e, '/d/sub')).toEqual([USER.uid, USER.gid, (DIR | 0o700).toString(8)])
    expect(await xattr(s.up('/d/f'))).toBe(`${USER.uid}:${USER.gid}:100600`)
    for (const p of ['/d/f', '/d/sub']) {
      const st = fs.lstatSync(s.up(p))
      expect([p, st.uid, st.gid, st.mode & 0o7777]).toEqual([p, 0, 0, 0o700])
    }
    // Group and other bits are kept as asked, never widened: only the owner's are filled in.
    await e.release(await e.create('/d/g', REG | 0o044, C.O_WRONLY, USER))
    expect(await owner(e, '/d/g')).toEqual([USER.uid, USER.gid, (REG | 0o044).toString(8)])
    expect(fs.lstatSync(s.up('/d/g')).mode & 0o7777).toBe(0o744)
    // user.* xattrs cannot go on a fifo or a symlink: level 2 ignores the EPERM and gives them
    // owner and mode for real (the daemon is root here, so the chown works).
    await e.symlink('target', '/d/l', USER)
    expect(await xattr(s.up('/d/l'))).toBeNull()
    expect((await e.getattr('/d/l')).uid).toBe(USER.uid)
    expect((await e.getattr('/d/p')).uid).toBe(USER.uid)
    expect((await e.getattr('/d/p')).mode).toBe(C.S_IFIFO | 0o640)
    // ... and chmod and chown them for real.
    await e.chmod('/d/p', 0o604)
    await e.chown('/d/p', 77, 88)
    expect(await owner(e, '/d/p')).toEqual([77, 88, (C.S_IFIFO | 0o604).toString(8)])
  })

  it('a setgid parent (as its override shows it) gives its gid to what is made in it', async () => {
    const { e } = await withLevel(2, { lowers: [{}], upper: { g: dir({}, { mode: 0o777, xattrs: { [USERNAME]: '5:77:42777' } }) } })
    await e.mkdir('/g/sub', 0o755, USER)
    expect(await owner(e, '/g/sub')).toEqual([USER.uid, 77, (DIR | 0o2000 | 0o755).toString(8)])
  })

  it('values persist across a remount; fgetattr shows them too', async () => {
    const { e, reopen } = await withLevel(2, { lowers: [{ f: 'f' }] })
    await e.chown('/f', 300, 400)
    const again = await reopen()
    expect(await owner(again, '/f')).toEqual([300, 400, (REG | 0o644).toString(8)])
    const h = await again.open('/f', C.O_RDONLY)
    const a = await again.fgetattr(h)
    await again.release(h)
    expect([a.uid, a.gid]).toEqual([300, 400])
  })

  it('the override names are hidden: getxattr finds nothing, listxattr leaves them out, set/remove are EPERM', async () => {
    const { s, e } = await withLevel(2, { lowers: [{ f: file('f', { xattrs: { 'user.other': 'o' } }) }] })
    await e.chown('/f', 1, 2)
    expect(await xattr(s.up('/f'))).toBe('1:2:100644')
    for (const n of OVERRIDE_STAT_NAMES) expect(await e.getxattr('/f', n)).toBeNull()
    expect(await e.listxattr('/f')).toEqual(['user.other'])
    expect(await e.listxattr('')).toEqual([])
    for (const n of OVERRIDE_STAT_NAMES) {
      await expectErrno(e.setxattr('/f', n, Buffer.from('0:0:777'), 0), 'EPERM')
      await expectErrno(e.removexattr('/f', n), 'EPERM')
    }
    expect(await xattr(s.up('/f'))).toBe('1:2:100644')
    expect(await e.getxattr('/f', 'user.other')).toEqual(Buffer.from('o'))
  })
})

describe('xattr_permissions=1', () => {
  it('uses security.fuseoverlayfs.override_stat', async () => {
    const { s, e } = await withLevel(1, { lowers: [{ f: 'f' }] })
    expect(await xattr(s.upper, SECNAME)).toMatch(/^0:0:40[0-7]{3}$/)
    await e.chown('/f', 8, 9)
    expect(await xattr(s.up('/f'), SECNAME)).toBe('8:9:100644')
    expect(await xattr(s.up('/f'), USERNAME)).toBeNull()
    expect(await owner(e, '/f')).toEqual([8, 9, (REG | 0o644).toString(8)])
    // security.* xattrs can go on symlinks: they get an owner too.
    await e.symlink('t', '/l', USER)
    expect((await e.getattr('/l')).uid).toBe(USER.uid)
    expect(fs.lstatSync(s.up('/l')).uid).toBe(0)
  })
})

describe('xattr_permissions=0', () => {
  it('reads and writes no override: real chown, the names are plain xattrs, the upper root is left alone', async () => {
    const { s, e } = await withLevel(0, { lowers: [{ f: file('f', { xattrs: { [USERNAME]: '1:1:777' } }) }] }, async (s) => {
      await lsetxattr(s.lowers[0] as string, USERNAME, Buffer.from('0:0:755'))
    })
    expect(await xattr(s.upper)).toBeNull()
    expect(await owner(e, '/f')).toEqual([0, 0, (REG | 0o644).toString(8)])
    expect(await e.getxattr('/f', USERNAME)).toEqual(Buffer.from('1:1:777'))
    await e.chown('/f', 31, 32)
    expect(fs.lstatSync(s.up('/f')).uid).toBe(31)
    await e.release(await e.create('/n', REG | 0o600, C.O_WRONLY, ROOT))
    expect(await xattr(s.up('/n'))).toBeNull()
  })
})
