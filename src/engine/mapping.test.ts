import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  IdMapping, MappingOptionError, OVERFLOW_ID, decodeOverrideStat, encodeOverrideStat, formatIdMapping, fromMountOptions,
  isAclXattr, isMappingOption, overrideStatXattr, parseIdMapping, readKernelOverflowIds, staticNlink,
} from './mapping'

const PODMAN = '0:1000:1:1:110000:65536'

/** A version-2 POSIX ACL xattr value: [tag, perm, id] entries. */
function acl (entries: Array<[number, number, number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length)
  b.writeUInt32LE(2, 0)
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i)
    b.writeUInt16LE(perm, 6 + 8 * i)
    b.writeUInt32LE(id, 8 + 8 * i)
  })
  return b
}
const UNDEF = 0xFFFFFFFF

describe('parseIdMapping', () => {
  it('reads ID:MAPPED-ID:LENGTH triples, all separated by ":"', () => {
    expect(parseIdMapping('0:1000:1').ranges).toEqual([{ host: 0, merged: 1000, length: 1 }])
    expect(parseIdMapping(PODMAN).ranges).toEqual([{ host: 0, merged: 1000, length: 1 }, { host: 1, merged: 110000, length: 65536 }])
  })

  it('skips empty fields as fuse-overlayfs (strtok) does; an empty spec is no mapping', () => {
    expect(parseIdMapping(':0::1000:1:').ranges).toEqual([{ host: 0, merged: 1000, length: 1 }])
    expect(parseIdMapping('').ranges).toEqual([])
  })

  it('round-trips through formatIdMapping', () => {
    for (const s of ['0:1000:1', PODMAN, '5:5:1:10:20:3:100:0:4', '0:0:4294967295']) {
      expect(formatIdMapping(parseIdMapping(s))).toBe(s)
    }
    expect(formatIdMapping(parseIdMapping(''))).toBe('')
  })

  it('accepts adjacent ranges and the largest ids', () => {
    expect(parseIdMapping('0:0:10:10:10:10').ranges).toHaveLength(2)
    expect(parseIdMapping('4294967294:0:1:0:4294967294:1').ranges).toHaveLength(2)
  })

  const bad: Array<[string, RegExp]> = [
    ['0:x:1', /not a decimal number/],
    ['0x10:5:1', /not a decimal number/],
    ['+0:5:1', /not a decimal number/],
    [' 0:5:1', /not a decimal number/],
    ['-1:5:1', /not a decimal number/],
    ['0:1.5:1', /not a decimal number/],
    ['0:1000', /groups of three/],
    ['0:1000:1:5', /groups of three/],
    ['0,1000,1', /groups of three/],
    ['0:1000:0', /length 0/],
    ['4294967295:0:1', /largest id/],
    ['0:4294967295:1', /largest id/],
    ['99999999999:0:1', /largest id/],
    ['4294967290:0:10', /beyond the largest id/],
    ['0:0:4294967296', /largest length/],
    ['1:0:4294967295', /beyond the largest id/],
    ['0:500:10:5:600:10', /overlap/],
    ['0:500:10:100:505:1', /overlap/],
    ['10:0:5:0:100:11', /overlap/],
  ]
  for (const [spec, msg] of bad) {
    it(`rejects "${spec}" with one sentence`, () => {
      let err: unknown
      try { parseIdMapping(spec) } catch (e) { err = e }
      expect(err).toBeInstanceOf(MappingOptionError)
      const m = (err as Error).message
      expect(m).toMatch(msg)
      expect(m).not.toMatch(/\n/)
      expect(m.split(/[.!?] /)).toHaveLength(1)
    })
  }
})

describe('IdMapping: ranges', () => {
  const m = new IdMapping({ uidmapping: parseIdMapping(PODMAN), gidmapping: parseIdMapping('0:2000:1:1:220000:100') })

  it('maps host → merged (stat) and merged → host (create, chown) at every range boundary', () => {
    const cases: Array<[number, number]> = [[0, 1000], [1, 110000], [2, 110001], [1000, 110999], [65535, 175534], [65536, 175535]]
    for (const [host, merged] of cases) {
      expect(m.toMerged('uid', host)).toBe(merged)
      expect(m.toHost('uid', merged)).toBe(host)
    }
  })

  it('round-trips every id inside the ranges', () => {
    for (let h = 0; h <= 65536; h += 97) expect(m.toHost('uid', m.toMerged('uid', h))).toBe(h)
    for (let h = 0; h <= 100; h++) expect(m.toHost('gid', m.toMerged('gid', h))).toBe(h)
    for (const merged of [1000, 110000, 175535]) expect(m.toMerged('uid', m.toHost('uid', merged))).toBe(merged)
  })

  it('sends ids outside every range to the overflow id, in both directions', () => {
    expect(m.toMerged('uid', 65537)).toBe(OVERFLOW_ID)
    expect(m.toMerged('uid', 70000)).toBe(OVERFLOW_ID)
    expect(m.toMerged('uid', 4294967294)).toBe(OVERFLOW_ID)
    expect(m.toHost('uid', 0)).toBe(OVERFLOW_ID) // root of the caller's side is not in the map
    expect(m.toHost('uid', 999)).toBe(OVERFLOW_ID)
    expect(m.toHost('uid', 1001)).toBe(OVERFLOW_ID)
    expect(m.toHost('uid', 109999)).toBe(OVERFLOW_ID)
    expect(m.toHost('uid', 175536)).toBe(OVERFLOW_ID)
    // ... so an unmapped caller's file is not its own once written (what fuse-overlayfs does too)
    expect(m.toMerged('uid', m.toHost('uid', 5))).toBe(175533)
  })

  it('keeps uids and gids apart', () => {
    expect(m.toMerged('gid', 0)).toBe(2000)
    expect(m.toMerged('gid', 1)).toBe(220000)
    expect(m.toMerged('gid', 101)).toBe(OVERFLOW_ID)
    expect(m.toHost('gid', 1000)).toBe(OVERFLOW_ID)
  })

  it('uses the overflow ids it is given', () => {
    const o = new IdMapping({ uidmapping: parseIdMapping('0:1000:1'), gidmapping: parseIdMapping('0:1000:1'), overflowUid: 99, overflowGid: 98 })
    expect(o.toMerged('uid', 5)).toBe(99)
    expect(o.toMerged('gid', 5)).toBe(98)
    expect(o.toHost('gid', 5)).toBe(98)
  })

  it('passes ids unchanged when no mapping is configured, for that kind only', () => {
    const none = new IdMapping()
    expect(none.identity).toBe(true)
    expect(none.toMerged('uid', 70000)).toBe(70000)
    expect(none.toHost('gid', 4294967294)).toBe(4294967294)
    const uidOnly = new IdMapping({ uidmapping: parseIdMapping('0:1000:1') })
    expect(uidOnly.identity).toBe(false)
    expect(uidOnly.toMerged('gid', 70000)).toBe(70000)
    expect(uidOnly.toMerged('uid', 70000)).toBe(OVERFLOW_ID)
    expect(new IdMapping({ uidmapping: parseIdMapping('') }).identity).toBe(true)
  })

  it('refuses numbers that are not 32-bit ids', () => {
    expect(() => m.toHost('uid', -1)).toThrow(RangeError)
    expect(() => m.toMerged('uid', 1.5)).toThrow(RangeError)
    expect(() => m.toMerged('gid', 2 ** 32)).toThrow(RangeError)
  })

  it('chownToHost keeps -1 ("unchanged") in either argument', () => {
    expect(m.chownToHost(110010, 220005)).toEqual({ uid: 11, gid: 6 })
    expect(m.chownToHost(-1, 2000)).toEqual({ uid: -1, gid: 0 })
    expect(m.chownToHost(1000, UNDEF)).toEqual({ uid: 0, gid: -1 })
    expect(m.chownToHost(5, -1)).toEqual({ uid: OVERFLOW_ID, gid: -1 })
  })

  it('attrToMerged maps owner fields only and leaves the input alone', () => {
    const a = { uid: 1, gid: 1, mode: 0o100644, nlink: 3 }
    expect(m.attrToMerged(a)).toEqual({ uid: 110000, gid: 220000, mode: 0o100644, nlink: 3 })
    expect(a.uid).toBe(1)
    const none = new IdMapping()
    expect(none.attrToMerged(a)).toBe(a)
  })
})

describe('IdMapping: squash options', () => {
  it('squash_to_root shows 0:0 for everything, and only in stat', () => {
    const m = new IdMapping({ squashToRoot: true, uidmapping: parseIdMapping('0:1000:1') })
    expect(m.toMerged('uid', 0)).toBe(0)
    expect(m.toMerged('uid', 70000)).toBe(0)
    expect(m.toMerged('gid', 12345)).toBe(0)
    expect(m.toHost('uid', 1000)).toBe(0) // writing still maps, unsquashed
    expect(m.toHost('uid', 5)).toBe(OVERFLOW_ID)
    expect(m.toHost('gid', 5)).toBe(5)
    expect(m.mapToMerged('uid', 0)).toBe(1000)
    expect(m.identity).toBe(false)
    expect(m.ignoresChownErrors).toBe(true)
  })

  it('squash_to_uid / squash_to_gid set one side each and win over squash_to_root', () => {
    const u = new IdMapping({ squashToUid: 7 })
    expect([u.toMerged('uid', 3), u.toMerged('gid', 3)]).toEqual([7, 3])
    const g = new IdMapping({ squashToGid: 8 })
    expect([g.toMerged('uid', 3), g.toMerged('gid', 3)]).toEqual([3, 8])
    const ur = new IdMapping({ squashToUid: 7, squashToRoot: true })
    expect([ur.toMerged('uid', 3), ur.toMerged('gid', 3)]).toEqual([7, 0])
    const gr = new IdMapping({ squashToGid: 8, squashToRoot: true })
    expect([gr.toMerged('uid', 3), gr.toMerged('gid', 3)]).toEqual([0, 8])
    const ug = new IdMapping({ squashToUid: 7, squashToGid: 8, uidmapping: parseIdMapping('0:1000:1') })
    expect([ug.toMerged('uid', 0), ug.toMerged('gid', 0)]).toEqual([7, 8])
    expect(ug.toHost('uid', 1000)).toBe(0)
  })

  it('without squash, chown errors are not ignored', () => {
    expect(new IdMapping({ uidmapping: parseIdMapping('0:1000:1') }).ignoresChownErrors).toBe(false)
  })
})

describe('ACL xattr values', () => {
  const m = new IdMapping({ uidmapping: parseIdMapping(PODMAN), gidmapping: parseIdMapping(PODMAN), squashToRoot: true })

  it('maps the ids of named user and group entries only', () => {
    const merged = acl([[0x01, 6, 0], [0x02, 4, 110005], [0x04, 4, 0], [0x08, 2, 110006], [0x10, 6, UNDEF], [0x20, 4, UNDEF]])
    const host = m.aclToHost(merged)
    expect(host).toEqual(acl([[0x01, 6, 0], [0x02, 4, 6], [0x04, 4, 0], [0x08, 2, 7], [0x10, 6, UNDEF], [0x20, 4, UNDEF]]))
    expect(m.aclToMerged(host)).toEqual(merged) // no squash inside ACLs
    expect(merged.readUInt32LE(16)).toBe(110005) // input untouched
  })

  it('sends unmapped entry ids to the overflow id', () => {
    expect(m.aclToHost(acl([[0x02, 4, 5]]))).toEqual(acl([[0x02, 4, OVERFLOW_ID]]))
    expect(m.aclToMerged(acl([[0x08, 4, 70000]]))).toEqual(acl([[0x08, 4, OVERFLOW_ID]]))
  })

  it('returns malformed values and values under no mapping as they are', () => {
    for (const v of [Buffer.alloc(0), Buffer.from([2, 0, 0, 0, 1]), acl([[0x02, 4, 1]]).fill(3, 0, 1)]) {
      expect(m.aclToHost(v)).toBe(v)
    }
    const v = acl([[0x02, 4, 110005]])
    expect(new IdMapping({ squashToRoot: true }).aclToHost(v)).toBe(v)
  })

  it('knows the two ACL xattr names', () => {
    expect(isAclXattr('system.posix_acl_access')).toBe(true)
    expect(isAclXattr('system.posix_acl_default')).toBe(true)
    expect(isAclXattr('user.posix_acl_access')).toBe(false)
  })
})

describe('staticNlink', () => {
  it('reports 1 for directories and leaves other objects alone', () => {
    expect(staticNlink({ mode: 0o040755, nlink: 7 })).toEqual({ mode: 0o040755, nlink: 1 })
    const f = { mode: 0o100644, nlink: 3 }
    expect(staticNlink(f)).toBe(f)
    const l = { mode: 0o120777, nlink: 2 }
    expect(staticNlink(l)).toBe(l)
    const d = { mode: 0o040755, nlink: 1 }
    expect(staticNlink(d)).toBe(d)
  })
})

describe('xattr_permissions override values', () => {
  it('names the xattr per level', () => {
    expect(overrideStatXattr(0)).toBeUndefined()
    expect(overrideStatXattr(1)).toBe('security.fuseoverlayfs.override_stat')
    expect(overrideStatXattr(2)).toBe('user.fuseoverlayfs.override_stat')
  })

  it('encodes and decodes "UID:GID:OCTAL-MODE" as fuse-overlayfs writes it', () => {
    expect(encodeOverrideStat({ uid: 11, gid: 12, mode: 0o100600 }).toString()).toBe('11:12:100600')
    expect(decodeOverrideStat(Buffer.from('0:0:40755'))).toEqual({ uid: 0, gid: 0, mode: 0o40755 })
    expect(decodeOverrideStat('13:-1:100600')).toEqual({ uid: 13, gid: UNDEF, mode: 0o100600 })
    expect(decodeOverrideStat('1:2:644:extra')).toEqual({ uid: 1, gid: 2, mode: 0o644 })
    expect(decodeOverrideStat('garbage')).toBeNull()
    expect(decodeOverrideStat('1:2:9')).toBeNull()
  })
})

describe('fromMountOptions', () => {
  it('parses every option of the family and skips the others', () => {
    const o = fromMountOptions(['lowerdir=/a', `uidmapping=${PODMAN}`, 'gidmapping=0:1000:1', 'squash_to_root', 'squash_to_uid=7',
      'squash_to_gid=8', 'static_nlink', 'noacl', 'xattr_permissions=2', 'allow_other'])
    expect(o).toEqual({
      uidmapping: parseIdMapping(PODMAN),
      gidmapping: parseIdMapping('0:1000:1'),
      squashToRoot: true,
      squashToUid: 7,
      squashToGid: 8,
      staticNlink: true,
      noacl: true,
      xattrPermissions: 2,
      ignored: [],
      warnings: [],
    })
  })

  it('defaults to nothing', () => {
    expect(fromMountOptions([])).toEqual({ squashToRoot: false, staticNlink: false, noacl: false, xattrPermissions: 0, ignored: [], warnings: [] })
  })

  it('lets a later option override an earlier one', () => {
    const o = fromMountOptions(['uidmapping=0:1:1', 'uidmapping=0:2:1', 'squash_to_uid=3', 'squash_to_uid=-1', 'xattr_permissions=1', 'xattr_permissions=0'])
    expect(o.uidmapping).toEqual(parseIdMapping('0:2:1'))
    expect(o.squashToUid).toBeUndefined()
    expect(o.xattrPermissions).toBe(0)
  })

  it('treats -1 and 4294967295 as squash off, as fuse-overlayfs does', () => {
    expect(fromMountOptions(['squash_to_gid=4294967295']).squashToGid).toBeUndefined()
    expect(fromMountOptions(['squash_to_gid=4294967294']).squashToGid).toBe(4294967294)
    expect(fromMountOptions(['squash_to_uid=0']).squashToUid).toBe(0)
  })

  it('ignores flags given a value and value options given none, as fuse-overlayfs does', () => {
    const o = fromMountOptions(['noacl=1', 'squash_to_root=1', 'static_nlink=1', 'uidmapping', 'squash_to_uid'])
    expect(o.ignored).toEqual(['noacl=1', 'squash_to_root=1', 'static_nlink=1', 'uidmapping', 'squash_to_uid'])
    expect([o.noacl, o.squashToRoot, o.staticNlink, o.uidmapping, o.squashToUid]).toEqual([false, false, false, undefined, undefined])
  })

  it('warns about ranges cut off by "," (the man page spelling) and keeps only the first, as fuse-overlayfs does', () => {
    const o = fromMountOptions(['uidmapping=0:1000:1', '1:110000:65536', 'gidmapping=0:1000:1', '1:110000:65536:2:3:4'])
    expect(o.uidmapping).toEqual(parseIdMapping('0:1000:1'))
    expect(o.warnings).toHaveLength(2)
    expect(o.warnings[0]).toMatch(/"1:110000:65536" after uidmapping=.*separate ranges with ':'/)
    expect(fromMountOptions(['uidmapping=0:1000:1', 'ro', '1:2:3']).warnings).toEqual([])
  })

  it('throws one sentence for values fuse-overlayfs refuses', () => {
    for (const bad of ['uidmapping=0:x:1', 'gidmapping=0:1000', 'squash_to_uid=abc', 'squash_to_gid=-5', 'squash_to_uid=4294967296',
      'squash_to_uid=', 'xattr_permissions=3', 'xattr_permissions=abc', 'xattr_permissions=']) {
      expect(() => fromMountOptions([bad]), bad).toThrow(MappingOptionError)
    }
  })

  it('isMappingOption recognises the family by key', () => {
    expect(['uidmapping=0:1:1', 'gidmapping=', 'squash_to_root', 'squash_to_uid=1', 'squash_to_gid=1', 'static_nlink', 'noacl',
      'xattr_permissions=1', 'noacl=1'].every(isMappingOption)).toBe(true)
    expect(['lowerdir=/a', 'uid=5', 'squash', 'ro'].some(isMappingOption)).toBe(false)
  })

  it('builds an IdMapping', () => {
    const m = IdMapping.fromOptions(fromMountOptions([`uidmapping=${PODMAN}`, 'squash_to_gid=8']), { uid: 99, gid: 98 })
    expect(m.toMerged('uid', 1)).toBe(110000)
    expect(m.toMerged('uid', 70000)).toBe(99)
    expect(m.toMerged('gid', 1)).toBe(8)
  })
})

describe('readKernelOverflowIds', () => {
  it('reads positive ids (65534 unless the system was changed)', () => {
    const o = readKernelOverflowIds()
    expect(o.uid).toBeGreaterThan(0)
    expect(o.gid).toBeGreaterThan(0)
  })
})

// ---- differential checks against the real fuse-overlayfs --------------------

const FOVL = ['/usr/bin/fuse-overlayfs', '/usr/local/bin/fuse-overlayfs'].find(p => fs.existsSync(p))
const canMount = FOVL !== undefined && process.getuid?.() === 0 && fs.existsSync('/dev/fuse')

interface Mounted { base: string, lower: string, upper: string, work: string, mnt: string }
const mounted: string[] = []

/** Fresh layers: `prepare` fills lower; then fuse-overlayfs mounts them with `opts`. */
function mountFovl (opts: string, prepare: (lower: string) => void): Mounted {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-test-map-'))
  fs.chmodSync(base, 0o755) // callers of other uids must reach the mount point
  const m = { base, lower: path.join(base, 'lower'), upper: path.join(base, 'upper'), work: path.join(base, 'work'), mnt: path.join(base, 'mnt') }
  for (const d of [m.lower, m.upper, m.work, m.mnt]) fs.mkdirSync(d)
  prepare(m.lower)
  const r = spawnSync(FOVL as string, ['-o', `lowerdir=${m.lower},upperdir=${m.upper},workdir=${m.work},${opts}`, m.mnt], { encoding: 'utf8', timeout: 20_000 })
  if (r.status !== 0) {
    fs.rmSync(base, { recursive: true, force: true })
    throw new Error(`fuse-overlayfs failed (${String(r.status)}): ${r.stderr}`)
  }
  mounted.push(m.mnt)
  return m
}

function unmount (mnt: string): void {
  if (spawnSync('fusermount3', ['-u', mnt]).status !== 0 && spawnSync('fusermount', ['-u', mnt]).status !== 0) {
    spawnSync('umount', ['-l', mnt])
  }
  const i = mounted.indexOf(mnt)
  if (i >= 0) mounted.splice(i, 1)
}

async function withMount (opts: string, prepare: (lower: string) => void, body: (m: Mounted) => void | Promise<void>): Promise<void> {
  const m = mountFovl(opts, prepare)
  try {
    await body(m)
  } finally {
    unmount(m.mnt)
    fs.rmSync(m.base, { recursive: true, force: true })
  }
}

/** Run a command as uid:gid (no supplementary groups: libuv drops them). */
function as (uid: number, gid: number, cmd: string, ...args: string[]): void {
  const r = spawnSync(cmd, args, { uid, gid, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} as ${uid}:${gid} failed: ${r.stderr}`)
}

function owner (p: string): [number, number] {
  const st = fs.lstatSync(p)
  return [st.uid, st.gid]
}

function touchOwned (lower: string, name: string, uid: number, gid: number): void {
  fs.writeFileSync(path.join(lower, name), '')
  fs.chownSync(path.join(lower, name), uid, gid)
}

afterAll(() => {
  for (const mnt of [...mounted]) unmount(mnt)
})

describe.skipIf(!canMount)('differential: the real fuse-overlayfs', () => {
  const UIDS = '0:1000:1:1:110000:65536'
  const GIDS = '0:2000:1:1:220000:100'
  const opts = `uidmapping=${UIDS},gidmapping=${GIDS}`
  const m = IdMapping.fromOptions(fromMountOptions(opts.split(',')), readKernelOverflowIds())
  const HOST_IDS = [0, 1, 2, 99, 100, 101, 999, 1000, 65535, 65536, 65537, 70000]

  it('stat through the mount shows what toMerged predicts, at range boundaries and outside', async () => {
    await withMount(opts, (lower) => {
      for (const id of HOST_IDS) touchOwned(lower, `f${id}`, id, id)
      fs.mkdirSync(path.join(lower, 'd'))
      fs.chownSync(path.join(lower, 'd'), 1, 0)
    }, ({ mnt }) => {
      for (const id of HOST_IDS) {
        expect(owner(path.join(mnt, `f${id}`)), `host ${id}`).toEqual([m.toMerged('uid', id), m.toMerged('gid', id)])
      }
      expect(owner(path.join(mnt, 'd'))).toEqual([110000, 2000])
    })
  })

  it('new objects are written with toHost of the caller, unmapped callers as the overflow id', async () => {
    const callers: Array<[number, number]> = [[110005, 220007], [1000, 2000], [175535, 220099], [5, 6], [0, 0]]
    await withMount(opts, (lower) => {
      fs.mkdirSync(path.join(lower, 'open'))
      fs.chmodSync(path.join(lower, 'open'), 0o1777)
    }, ({ mnt, upper }) => {
      for (const [uid, gid] of callers) {
        const dir = path.join(mnt, 'open')
        as(uid, gid, 'sh', '-c', `: > ${dir}/file${uid}`)
        as(uid, gid, 'mkdir', `${dir}/dir${uid}`)
        as(uid, gid, 'ln', '-s', 'target', `${dir}/link${uid}`)
        as(uid, gid, 'mkfifo', `${dir}/fifo${uid}`)
        const want = [m.toHost('uid', uid), m.toHost('gid', gid)]
        for (const n of ['file', 'dir', 'link', 'fifo']) {
          expect(owner(path.join(upper, 'open', `${n}${uid}`)), `${n} by ${uid}:${gid}`).toEqual(want)
          // and stat through the mount shows the round trip
          expect(owner(path.join(mnt, 'open', `${n}${uid}`))).toEqual([m.toMerged('uid', want[0] as number), m.toMerged('gid', want[1] as number)])
        }
      }
    })
  })

  it('chown through the mount writes chownToHost (-1 keeps a side)', async () => {
    await withMount(opts, (lower) => {
      for (const n of ['a', 'b', 'c', 'd']) touchOwned(lower, n, 0, 0)
    }, ({ mnt, upper }) => {
      const cases: Array<[string, number, number]> = [['a', 110010, 220011], ['b', 110012, -1], ['c', -1, 2000], ['d', 42, 43]]
      for (const [n, uid, gid] of cases) {
        fs.chownSync(path.join(mnt, n), uid, gid)
        const h = m.chownToHost(uid, gid)
        expect(owner(path.join(upper, n)), n).toEqual([h.uid === -1 ? 0 : h.uid, h.gid === -1 ? 0 : h.gid])
      }
    })
  })

  it('squash options change stat only: new files and chown still get toHost', async () => {
    const sq = `${opts},squash_to_uid=7,squash_to_root`
    const s = IdMapping.fromOptions(fromMountOptions(sq.split(',')))
    await withMount(sq, (lower) => {
      for (const id of HOST_IDS) touchOwned(lower, `f${id}`, id, id)
      fs.mkdirSync(path.join(lower, 'open'))
      fs.chmodSync(path.join(lower, 'open'), 0o1777)
    }, ({ mnt, upper }) => {
      for (const id of HOST_IDS) expect(owner(path.join(mnt, `f${id}`))).toEqual([s.toMerged('uid', id), s.toMerged('gid', id)])
      expect(owner(path.join(mnt, 'f1'))).toEqual([7, 0])
      as(110005, 220007, 'sh', '-c', `: > ${mnt}/open/x`)
      expect(owner(path.join(upper, 'open', 'x'))).toEqual([s.toHost('uid', 110005), s.toHost('gid', 220007)])
      expect(owner(path.join(mnt, 'open', 'x'))).toEqual([7, 0])
      fs.chownSync(path.join(mnt, 'f0'), 110020, 220021)
      expect(owner(path.join(upper, 'f0'))).toEqual([21, 22])
    })
  })

  it('squash_to_gid alone squashes the gid only and leaves the uid mapped', async () => {
    const sq = `${opts},squash_to_gid=8`
    const s = IdMapping.fromOptions(fromMountOptions(sq.split(',')))
    await withMount(sq, (lower) => touchOwned(lower, 'f', 1, 1), ({ mnt }) => {
      expect(owner(path.join(mnt, 'f'))).toEqual([s.toMerged('uid', 1), s.toMerged('gid', 1)])
      expect(owner(path.join(mnt, 'f'))).toEqual([110000, 8])
    })
  })

  it('static_nlink: directories report what staticNlink predicts, files keep theirs', async () => {
    const prepare = (lower: string): void => {
      fs.mkdirSync(path.join(lower, 'd', 's1'), { recursive: true })
      fs.mkdirSync(path.join(lower, 'd', 's2'))
      fs.writeFileSync(path.join(lower, 'f'), '')
      fs.linkSync(path.join(lower, 'f'), path.join(lower, 'g'))
    }
    await withMount('static_nlink', prepare, ({ mnt, lower }) => {
      for (const n of ['', 'd', 'd/s1', 'f']) {
        const real = fs.lstatSync(path.join(lower, n))
        expect(fs.lstatSync(path.join(mnt, n)).nlink, n).toBe(staticNlink({ mode: real.mode, nlink: real.nlink }).nlink)
      }
      expect(fs.lstatSync(path.join(mnt, 'f')).nlink).toBe(2)
    })
    await withMount('', prepare, ({ mnt }) => {
      expect(fs.lstatSync(path.join(mnt, 'd')).nlink).toBe(4) // without: 2 + merged subdirectories
    })
  })

  it('ranges separated by "," are cut off: fuse-overlayfs maps only the first, as fromMountOptions does', async () => {
    const list = `uidmapping=0:1000:1,1:110000:65536`
    const o = fromMountOptions(list.split(','))
    expect(o.warnings).toHaveLength(1)
    const cut = IdMapping.fromOptions(o, readKernelOverflowIds())
    await withMount(list, (lower) => {
      touchOwned(lower, 'a', 0, 0)
      touchOwned(lower, 'b', 1, 1)
    }, ({ mnt }) => {
      expect(owner(path.join(mnt, 'a'))[0]).toBe(cut.toMerged('uid', 0))
      expect(owner(path.join(mnt, 'b'))[0]).toBe(cut.toMerged('uid', 1))
      expect(cut.toMerged('uid', 1)).toBe(OVERFLOW_ID)
    })
  })

  it('refuses at mount what fromMountOptions refuses', () => {
    for (const bad of ['uidmapping=0:x:1', 'gidmapping=0:1000', 'squash_to_uid=abc', 'xattr_permissions=3']) {
      expect(() => fromMountOptions([bad])).toThrow(MappingOptionError)
      expect(() => mountFovl(bad, () => {}), bad).toThrow(/fuse-overlayfs failed \(1\)/)
    }
  })

  const hasAclTools = spawnSync('sh', ['-c', 'command -v setfacl && command -v getfacl']).status === 0
  it.skipIf(!hasAclTools)('fuse-overlayfs stores ACL entry ids untranslated (aclToHost is ovlfs\'s deliberate difference)', async () => {
    await withMount(opts, (lower) => touchOwned(lower, 'f', 0, 0), ({ mnt, upper }) => {
      const r = spawnSync('setfacl', ['-m', 'u:110005:r,g:220006:w', path.join(mnt, 'f')], { encoding: 'utf8' })
      expect(r.status, r.stderr).toBe(0)
      const text = spawnSync('getfacl', ['-n', '-c', path.join(upper, 'f')], { encoding: 'utf8' }).stdout
      expect(text).toMatch(/^user:110005:r--$/m) // the merged id, while the owner on disk is a host id
      expect(text).toMatch(/^group:220006:-w-$/m)
      const mapped = m.aclToHost(acl([[0x02, 4, 110005], [0x08, 2, 220006]]))
      expect([mapped.readUInt32LE(8), mapped.readUInt32LE(16)]).toEqual([6, 7])
    })
  })
})
