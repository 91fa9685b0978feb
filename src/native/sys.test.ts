// Unit tests for the ovlfs_sys addon wrappers. Run as root on temp dirs under
// os.tmpdir() (ext4 on the project's machines: supports trusted.* xattrs,
// RENAME_WHITEOUT and SEEK_DATA/SEEK_HOLE). Needs `node-gyp rebuild` first.
import { execFileSync } from 'child_process'
import fs from 'fs'
import os from 'os'
import path from 'path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  copyData,
  errnoName,
  fsyncPath,
  futimens,
  lgetxattr,
  llistxattr,
  llistxattrRaw,
  lremovexattr,
  lsetxattr,
  major,
  makedev,
  minor,
  mknod,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  renameat2,
  statfs,
  SysError,
  utimensat,
  UTIME_NOW,
  UTIME_OMIT,
  XATTR_CREATE,
  XATTR_REPLACE,
} from './sys'

const { S_IFCHR, S_IFIFO, S_IFMT } = fs.constants
const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

let root: string
let seq = 0
/** A fresh path inside the test root. */
const tmp = (name: string): string => path.join(root, `${seq++}-${name}`)
const file = (name: string, content: string | Buffer = ''): string => {
  const p = tmp(name)
  fs.writeFileSync(p, content)
  return p
}

/** Await a rejection and return it as a SysError with the given code. */
async function sysErr(p: Promise<unknown>, code: string): Promise<SysError> {
  const e: unknown = await p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(SysError)
  const se = e as SysError
  expect(se.code).toBe(code)
  expect(se.errno).toBe(os.constants.errno[code as keyof typeof os.constants.errno])
  return se
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-sys-'))
})
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true })
})

describe('xattrs', () => {
  it('user.* set/get/list/remove round trip, including binary and empty values', async () => {
    const p = file('x')
    const bin = Buffer.from([0, 1, 2, 255, 0, 128])
    await lsetxattr(p, 'user.bin', bin)
    await lsetxattr(p, Buffer.from('user.empty'), Buffer.alloc(0))
    expect(await lgetxattr(p, 'user.bin')).toEqual(bin)
    expect(await lgetxattr(p, 'user.empty')).toEqual(Buffer.alloc(0))
    expect((await llistxattr(p)).sort()).toEqual(['user.bin', 'user.empty'])
    await lremovexattr(p, 'user.bin')
    expect(await lgetxattr(p, 'user.bin')).toBeNull()
    expect(await llistxattr(p)).toEqual(['user.empty'])
  })

  it('trusted.* round trip (root), large value', async () => {
    const p = file('t')
    const big = Buffer.alloc(3000, 'z')
    await lsetxattr(p, 'trusted.overlay.opaque', Buffer.from('y'))
    await lsetxattr(p, 'trusted.big', big)
    expect((await lgetxattr(p, 'trusted.overlay.opaque'))?.toString()).toBe('y')
    expect(await lgetxattr(p, 'trusted.big')).toEqual(big)
    expect((await llistxattr(p)).sort()).toEqual(['trusted.big', 'trusted.overlay.opaque'])
    await lremovexattr(p, 'trusted.overlay.opaque')
    expect(await lgetxattr(p, 'trusted.overlay.opaque')).toBeNull()
  })

  it('XATTR_CREATE / XATTR_REPLACE flags', async () => {
    const p = file('f')
    await sysErr(lsetxattr(p, 'user.a', Buffer.from('1'), XATTR_REPLACE), 'ENODATA')
    await lsetxattr(p, 'user.a', Buffer.from('1'), XATTR_CREATE)
    await sysErr(lsetxattr(p, 'user.a', Buffer.from('2'), XATTR_CREATE), 'EEXIST')
    await lsetxattr(p, 'user.a', Buffer.from('3'), XATTR_REPLACE)
    expect((await lgetxattr(p, 'user.a'))?.toString()).toBe('3')
  })

  it('missing attribute gives null, an empty list is []', async () => {
    const p = file('n')
    expect(await lgetxattr(p, 'user.nope')).toBeNull()
    expect(await lgetxattr(p, 'trusted.nope')).toBeNull()
    expect(await llistxattr(p)).toEqual([])
    await sysErr(lremovexattr(p, 'user.nope'), 'ENODATA')
  })

  it('ENOENT rejects with code, errno, syscall and path', async () => {
    const p = tmp('missing')
    const e = await sysErr(lgetxattr(p, 'user.a'), 'ENOENT')
    expect(e.errno).toBe(2)
    expect(e.syscall).toBe('lgetxattr')
    expect(e.path).toBe(p)
    expect(e.message).toContain('ENOENT')
    expect(e.message).toContain(p)
    await sysErr(llistxattr(p), 'ENOENT')
    await sysErr(lsetxattr(p, 'user.a', Buffer.from('v')), 'ENOENT')
    await sysErr(lremovexattr(p, 'user.a'), 'ENOENT')
  })

  it('does not follow symlinks', async () => {
    const target = file('target')
    const link = tmp('link')
    fs.symlinkSync(target, link)
    await lsetxattr(link, 'trusted.onlink', Buffer.from('L'))
    expect((await lgetxattr(link, 'trusted.onlink'))?.toString()).toBe('L')
    expect(await lgetxattr(target, 'trusted.onlink')).toBeNull()
    expect(await llistxattr(link)).toEqual(['trusted.onlink'])
    expect(await llistxattr(target)).toEqual([])
    // user.* xattrs are not permitted on symlinks themselves: proves no follow
    await sysErr(lsetxattr(link, 'user.x', Buffer.from('1')), 'EPERM')
  })

  it('raw byte paths and names that are not UTF-8', async () => {
    const p = Buffer.concat([Buffer.from(root + '/'), Buffer.from([0x66, 0xff, 0xfe])])
    fs.writeFileSync(p, '')
    const name = Buffer.concat([Buffer.from('user.'), Buffer.from([0xc3, 0x28])])
    await lsetxattr(p, name, Buffer.from('raw'))
    expect((await lgetxattr(p, name))?.toString()).toBe('raw')
    expect(await llistxattrRaw(p)).toEqual([name])
    await lremovexattr(p, name)
    expect(await llistxattrRaw(p)).toEqual([])
    fs.unlinkSync(p)
  })

  it('a path with a NUL byte rejects with a TypeError', async () => {
    await expect(lgetxattr('/tmp/a\0b', 'user.a')).rejects.toThrow(TypeError)
    await expect(lgetxattr(file('nul'), 'user.a\0b')).rejects.toThrow(TypeError)
  })

  it('200 concurrent lgetxattr calls all resolve (thread pool)', async () => {
    const dir = tmp('many')
    fs.mkdirSync(dir)
    const paths = Array.from({ length: 100 }, (_, i) => path.join(dir, `f${i}`))
    await Promise.all(
      paths.map((p, i) => {
        fs.writeFileSync(p, '')
        return lsetxattr(p, 'user.i', Buffer.from(String(i)))
      }),
    )
    const calls = [
      ...paths.map((p) => lgetxattr(p, 'user.i')),
      ...paths.map((p) => lgetxattr(p, 'user.none')),
    ]
    expect(calls).toHaveLength(200)
    const res = await Promise.all(calls)
    expect(res.slice(0, 100).map((b) => b?.toString())).toEqual(paths.map((_, i) => String(i)))
    expect(res.slice(100).every((b) => b === null)).toBe(true)
  })
})

describe('errno names', () => {
  it('maps numbers to the names Node fs uses, with a fallback', () => {
    expect(errnoName(2)).toBe('ENOENT')
    expect(errnoName(61)).toBe('ENODATA')
    expect(errnoName(18)).toBe('EXDEV')
    expect(errnoName(11)).toBe('EAGAIN')
    expect(errnoName(95)).toBe('ENOTSUP')
    expect(errnoName(117, 'EUCLEAN')).toBe('EUCLEAN') // not in os.constants.errno
    expect(errnoName(9999)).toBe('E9999')
  })
})

describe('mknod and dev_t helpers', () => {
  it('makedev/major/minor match glibc and fs.Stats.rdev', () => {
    expect(makedev(0, 0)).toBe(0)
    expect(makedev(8, 1)).toBe(0x801)
    expect(makedev(1, 3)).toBe(fs.statSync('/dev/null').rdev)
    expect(major(fs.statSync('/dev/null').rdev)).toBe(1)
    expect(minor(fs.statSync('/dev/null').rdev)).toBe(3)
    // glibc: minor bits 8..31 go to bits 20..43, major bits 12..31 to 44..63
    expect(makedev(259, 0x12345)).toBe(0x12310345)
    expect(makedev(0x1000, 0)).toBe(2 ** 44)
    for (const [M, m] of [[0, 0], [253, 7], [4095, 0xfffff], [0x1000, 0x100], [0x12345, 0xabcdef]]) {
      expect([major(makedev(M, m)), minor(makedev(M, m))]).toEqual([M, m])
    }
  })

  it('creates a whiteout (char device 0/0)', async () => {
    const p = tmp('wh')
    await mknod(p, S_IFCHR | 0o000, makedev(0, 0))
    const st = fs.lstatSync(p)
    expect(st.isCharacterDevice()).toBe(true)
    expect(st.rdev).toBe(0)
  })

  it('creates a char device with a real number', async () => {
    const p = tmp('null')
    await mknod(Buffer.from(p), S_IFCHR | 0o600, makedev(1, 3))
    const st = fs.lstatSync(p)
    expect(st.isCharacterDevice()).toBe(true)
    expect(st.rdev).toBe(makedev(1, 3))
    expect([major(st.rdev), minor(st.rdev)]).toEqual([1, 3])
  })

  it('creates a fifo; EEXIST on an existing name', async () => {
    const p = tmp('fifo')
    await mknod(p, S_IFIFO | 0o640, 0)
    const st = fs.lstatSync(p)
    expect(st.isFIFO()).toBe(true)
    expect(st.mode & S_IFMT).toBe(S_IFIFO)
    const e = await sysErr(mknod(p, S_IFIFO | 0o640, 0), 'EEXIST')
    expect(e.syscall).toBe('mknod')
    expect(e.path).toBe(p)
  })
})

describe('renameat2', () => {
  it('RENAME_NOREPLACE: EEXIST when the target exists, renames otherwise', async () => {
    const a = file('a', 'A')
    const b = file('b', 'B')
    const e = await sysErr(renameat2(a, b, RENAME_NOREPLACE), 'EEXIST')
    expect(e.syscall).toBe('renameat2')
    expect(e.path).toBe(a)
    expect(e.dest).toBe(b)
    expect(fs.readFileSync(b, 'utf8')).toBe('B')
    const c = tmp('c')
    await renameat2(a, c, RENAME_NOREPLACE)
    expect(fs.existsSync(a)).toBe(false)
    expect(fs.readFileSync(c, 'utf8')).toBe('A')
  })

  it('RENAME_EXCHANGE swaps two files (and a file with a dir)', async () => {
    const a = file('a', 'first')
    const b = file('b', 'second')
    await renameat2(a, b, RENAME_EXCHANGE)
    expect(fs.readFileSync(a, 'utf8')).toBe('second')
    expect(fs.readFileSync(b, 'utf8')).toBe('first')
    const d = tmp('d')
    fs.mkdirSync(d)
    await renameat2(a, d, RENAME_EXCHANGE)
    expect(fs.lstatSync(a).isDirectory()).toBe(true)
    expect(fs.readFileSync(d, 'utf8')).toBe('second')
    await sysErr(renameat2(a, tmp('none'), RENAME_EXCHANGE), 'ENOENT')
  })

  it('RENAME_WHITEOUT leaves a 0/0 char device at the old name', async () => {
    const a = file('a', 'payload')
    const b = tmp('b')
    await renameat2(a, b, RENAME_WHITEOUT)
    const st = fs.lstatSync(a)
    expect(st.isCharacterDevice()).toBe(true)
    expect(st.rdev).toBe(0)
    expect(fs.readFileSync(b, 'utf8')).toBe('payload')
  })

  it('flags 0 is a plain rename; bad flags are EINVAL', async () => {
    const a = file('a', '1')
    const b = file('b', '2')
    await renameat2(a, b, 0)
    expect(fs.readFileSync(b, 'utf8')).toBe('1')
    await sysErr(renameat2(b, tmp('c'), RENAME_NOREPLACE | RENAME_EXCHANGE), 'EINVAL')
  })
})

describe('utimensat / futimens', () => {
  const ns = (sec: number, nsec: number): bigint => BigInt(sec) * 1_000_000_000n + BigInt(nsec)

  it('sets nanosecond-exact times', async () => {
    const p = file('t')
    await utimensat(p, { sec: 1_600_000_000, nsec: 123_456_789 }, { sec: 1_500_000_000, nsec: 987_654_321 }, false)
    const st = fs.lstatSync(p, { bigint: true })
    expect(st.atimeNs).toBe(ns(1_600_000_000, 123_456_789))
    expect(st.mtimeNs).toBe(ns(1_500_000_000, 987_654_321))
    // beyond 2038 and before 1970
    await utimensat(p, { sec: 4_102_444_800, nsec: 1 }, { sec: -1_000, nsec: 999_999_999 }, false)
    const st2 = fs.lstatSync(p, { bigint: true })
    expect(st2.atimeNs).toBe(ns(4_102_444_800, 1))
    expect(st2.mtimeNs).toBe(ns(-1_000, 999_999_999))
  })

  it('UTIME_OMIT leaves a time unchanged, UTIME_NOW sets now', async () => {
    const p = file('o')
    await utimensat(p, { sec: 1_000, nsec: 5 }, { sec: 2_000, nsec: 6 }, false)
    await utimensat(p, { sec: 0, nsec: UTIME_OMIT }, { sec: 3_000, nsec: 7 }, false)
    let st = fs.lstatSync(p, { bigint: true })
    expect(st.atimeNs).toBe(ns(1_000, 5))
    expect(st.mtimeNs).toBe(ns(3_000, 7))
    const before = BigInt(Date.now() - 5_000) * 1_000_000n
    await utimensat(p, { sec: 0, nsec: UTIME_NOW }, { sec: 0, nsec: UTIME_OMIT }, false)
    st = fs.lstatSync(p, { bigint: true })
    expect(st.atimeNs > before).toBe(true)
    expect(st.mtimeNs).toBe(ns(3_000, 7))
  })

  it('nofollow sets the symlink itself; without it the target', async () => {
    const target = file('target')
    const link = tmp('link')
    fs.symlinkSync(target, link)
    await utimensat(target, { sec: 100, nsec: 0 }, { sec: 100, nsec: 0 }, false)
    await utimensat(link, { sec: 200, nsec: 1 }, { sec: 300, nsec: 2 }, true)
    expect(fs.lstatSync(link, { bigint: true }).mtimeNs).toBe(ns(300, 2))
    expect(fs.lstatSync(link, { bigint: true }).atimeNs).toBe(ns(200, 1))
    expect(fs.lstatSync(target, { bigint: true }).mtimeNs).toBe(ns(100, 0))
    await utimensat(link, { sec: 400, nsec: 4 }, { sec: 500, nsec: 5 }, false)
    expect(fs.lstatSync(target, { bigint: true }).mtimeNs).toBe(ns(500, 5))
    expect(fs.lstatSync(link, { bigint: true }).mtimeNs).toBe(ns(300, 2))
  })

  it('rejects ENOENT and EINVAL', async () => {
    const e = await sysErr(utimensat(tmp('none'), { sec: 1, nsec: 0 }, { sec: 1, nsec: 0 }, false), 'ENOENT')
    expect(e.syscall).toBe('utimensat')
    await sysErr(utimensat(file('x'), { sec: 1, nsec: 1_000_000_000 }, { sec: 1, nsec: 0 }, false), 'EINVAL')
  })

  it('futimens on an fd, nanosecond-exact, with UTIME_OMIT', async () => {
    const p = file('fd')
    const fd = fs.openSync(p, 'r+')
    try {
      await futimens(fd, { sec: 1_234_567_890, nsec: 111_111_111 }, { sec: 1_234_567_891, nsec: 222_222_222 })
      await futimens(fd, { sec: 0, nsec: UTIME_OMIT }, { sec: 42, nsec: 42 })
    } finally {
      fs.closeSync(fd)
    }
    const st = fs.lstatSync(p, { bigint: true })
    expect(st.atimeNs).toBe(ns(1_234_567_890, 111_111_111))
    expect(st.mtimeNs).toBe(ns(42, 42))
    const e = await sysErr(futimens(fd, { sec: 1, nsec: 0 }, { sec: 1, nsec: 0 }), 'EBADF')
    expect(e.syscall).toBe('futimens')
    expect(e.path).toBeUndefined()
  })
})

describe('copyData', () => {
  const writeAt = (fd: number, buf: Buffer, pos: number): void => {
    expect(fs.writeSync(fd, buf, 0, buf.length, pos)).toBe(buf.length)
  }

  it('copies a sparse file: same bytes, same size, holes kept', async () => {
    const src = tmp('sparse')
    const d1 = Buffer.alloc(4 * KiB, 'a')
    const d2 = Buffer.alloc(4 * KiB, 'b')
    const fd = fs.openSync(src, 'w')
    writeAt(fd, d1, 1 * MiB)
    writeAt(fd, d2, 1 * MiB + 4 * KiB + 8 * MiB)
    fs.ftruncateSync(fd, 1 * MiB + 4 * KiB + 8 * MiB + 4 * KiB + 1 * MiB)
    fs.closeSync(fd)
    const dst = tmp('sparse-copy')
    const n = await copyData(src, dst, 0o640)
    const s = fs.statSync(src)
    const d = fs.statSync(dst)
    expect(d.size).toBe(s.size)
    expect(d.size).toBe(10 * MiB + 8 * KiB)
    expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true)
    expect(d.blocks).toBeLessThanOrEqual(s.blocks)
    expect(d.blocks * 512).toBeLessThan(1 * MiB) // really sparse, not 10 MiB of zeros
    expect(n).toBeGreaterThanOrEqual(8 * KiB)
    expect(n).toBeLessThanOrEqual(s.size)
    expect(d.mode & 0o7777).toBe(0o640)
    expect(d.isFile()).toBe(true)
  })

  it('copies across file systems (sendfile: copy_file_range refuses them): sparse and dense data, same bytes, holes kept', async () => {
    // /dev/shm is a tmpfs; the test's temp dir is not (the test fails loudly if they are one file system).
    const shm = fs.mkdtempSync('/dev/shm/ovlfs-copy-')
    try {
      const src = path.join(shm, 'src')
      expect(fs.statSync(shm).dev).not.toBe(fs.statSync(path.dirname(tmp('x'))).dev)
      const dense = Buffer.alloc(2 * MiB + 5)
      for (let i = 0; i < dense.length; i++) dense[i] = (i * 131) & 0xff
      const fd = fs.openSync(src, 'w')
      writeAt(fd, dense, 0)
      writeAt(fd, Buffer.from('tail'), 16 * MiB)
      fs.closeSync(fd)
      const dst = tmp('cross-copy')
      const n = await copyData(src, dst, 0o600)
      expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true)
      expect(fs.statSync(dst).size).toBe(16 * MiB + 4)
      expect(fs.statSync(dst).blocks * 512).toBeLessThan(8 * MiB) // the hole stayed a hole
      expect(n).toBeGreaterThanOrEqual(dense.length + 4)
    } finally {
      fs.rmSync(shm, { recursive: true, force: true })
    }
  })

  it('a copy to be fsynced (writeback started per 8 MiB chunk) has the same bytes, within and across file systems', async () => {
    // 20 MiB + 3 bytes: two full chunks and a partial one, so every chunk boundary is crossed.
    const content = Buffer.alloc(20 * MiB + 3)
    for (let i = 0; i < content.length; i++) content[i] = (i * 2654435761) >>> 24
    const shm = fs.mkdtempSync('/dev/shm/ovlfs-copy-')
    try {
      for (const src of [file('synced', content), path.join(shm, 'synced')]) {
        if (!fs.existsSync(src)) fs.writeFileSync(src, content)
        const dst = tmp(`synced-copy-${path.basename(path.dirname(src))}`)
        expect(await copyData(src, dst, 0o600, true)).toBe(content.length)
        expect(fs.readFileSync(dst).equals(content), `copy of ${src}`).toBe(true)
      }
    } finally {
      fs.rmSync(shm, { recursive: true, force: true })
    }
  })

  it('applies the mode exactly, regardless of umask', async () => {
    const src = file('m', 'x')
    const dst = tmp('m-copy')
    const old = process.umask(0o077)
    try {
      expect(await copyData(src, dst, 0o755)).toBe(1)
    } finally {
      process.umask(old)
    }
    expect(fs.statSync(dst).mode & 0o7777).toBe(0o755)
  })

  it('copies a dense file with byte-identical content', async () => {
    const content = Buffer.alloc(3 * MiB + 17)
    for (let i = 0; i < content.length; i++) content[i] = (i * 7919) & 0xff
    const src = file('dense', content)
    const dst = tmp('dense-copy')
    expect(await copyData(src, dst, 0o600)).toBe(content.length)
    expect(fs.readFileSync(dst).equals(content)).toBe(true)
  })

  it('copies an empty file', async () => {
    const src = file('empty')
    const dst = tmp('empty-copy')
    expect(await copyData(src, dst, 0o644)).toBe(0)
    expect(fs.statSync(dst).size).toBe(0)
    expect(fs.statSync(dst).isFile()).toBe(true)
  })

  it('copies a 5 GiB sparse file with data past 4 GiB', async () => {
    const src = tmp('huge')
    const head = Buffer.alloc(4 * KiB, 'h')
    const mid = Buffer.alloc(4 * KiB, 'm')
    const tail = Buffer.alloc(4 * KiB, 't')
    const fd = fs.openSync(src, 'w')
    writeAt(fd, head, 0)
    writeAt(fd, mid, 4 * GiB + 64 * KiB) // offset needs more than 32 bits
    writeAt(fd, tail, 5 * GiB - 4 * KiB) // data right up to EOF
    fs.closeSync(fd)
    const dst = tmp('huge-copy')
    const n = await copyData(src, dst, 0o600)
    expect(n).toBeGreaterThanOrEqual(12 * KiB)
    expect(n).toBeLessThanOrEqual(5 * GiB)
    const d = fs.statSync(dst)
    expect(d.size).toBe(5 * GiB)
    expect(d.blocks).toBeLessThanOrEqual(fs.statSync(src).blocks)
    const rd = fs.openSync(dst, 'r')
    try {
      const read = (pos: number): Buffer => {
        const b = Buffer.alloc(4 * KiB)
        expect(fs.readSync(rd, b, 0, b.length, pos)).toBe(b.length)
        return b
      }
      expect(read(0).equals(head)).toBe(true)
      expect(read(4 * GiB + 64 * KiB).equals(mid)).toBe(true)
      expect(read(5 * GiB - 4 * KiB).equals(tail)).toBe(true)
      expect(read(4 * GiB).equals(Buffer.alloc(4 * KiB))).toBe(true) // a hole reads as zeros
    } finally {
      fs.closeSync(rd)
    }
  })

  it('rejects EEXIST onto an existing dst and leaves it alone', async () => {
    const src = file('s', 'new')
    const dst = file('d', 'old')
    const e = await sysErr(copyData(src, dst, 0o644), 'EEXIST')
    expect(e.syscall).toBe('open')
    expect(e.dest).toBe(dst)
    expect(fs.readFileSync(dst, 'utf8')).toBe('old')
  })

  it('rejects ENOENT / EISDIR without creating dst', async () => {
    const dst = tmp('never')
    const e = await sysErr(copyData(tmp('none'), dst, 0o644), 'ENOENT')
    expect(e.path).toContain('none')
    await sysErr(copyData(root, dst, 0o644), 'EISDIR')
    expect(fs.existsSync(dst)).toBe(false)
  })

  it('unlinks dst when the copy fails midway (ENOSPC on a tiny tmpfs)', async () => {
    const mnt = tmp('tiny')
    fs.mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
    try {
      const src = file('big', Buffer.alloc(2 * MiB, 'q'))
      const dst = path.join(mnt, 'copy')
      const e = await sysErr(copyData(src, dst, 0o644), 'ENOSPC')
      expect(['copy_file_range', 'sendfile', 'write']).toContain(e.syscall)
      expect(fs.existsSync(dst)).toBe(false)
      expect(fs.readdirSync(mnt)).toEqual([])
    } finally {
      execFileSync('umount', [mnt])
    }
  })
})

describe('fsyncPath and statfs', () => {
  it('fsyncs a file and a directory; ENOENT otherwise', async () => {
    await expect(fsyncPath(file('s', 'data'))).resolves.toBeUndefined()
    await expect(fsyncPath(root)).resolves.toBeUndefined()
    const e = await sysErr(fsyncPath(tmp('none')), 'ENOENT')
    expect(e.syscall).toBe('open')
  })

  it('statfs returns plausible numbers matching fs.statfsSync', async () => {
    const s = await statfs(root)
    const n = fs.statfsSync(root)
    for (const k of ['bsize', 'frsize', 'blocks', 'bfree', 'bavail', 'files', 'ffree', 'favail', 'fsid', 'flag', 'namemax'] as const) {
      expect(Number.isInteger(s[k])).toBe(true)
      expect(s[k]).toBeGreaterThanOrEqual(0)
    }
    expect(s.bsize).toBeGreaterThan(0)
    expect(s.frsize).toBeGreaterThan(0)
    expect(s.blocks).toBeGreaterThan(0)
    expect(s.bfree).toBeLessThanOrEqual(s.blocks)
    expect(s.bavail).toBeLessThanOrEqual(s.bfree)
    expect(s.ffree).toBeLessThanOrEqual(s.files)
    expect(s.namemax).toBe(255)
    expect(s.blocks * s.frsize).toBe(n.blocks * n.bsize)
    expect(s.files).toBe(n.files)
    await sysErr(statfs(tmp('none')), 'ENOENT')
  })
})
