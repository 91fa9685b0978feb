// LayerIo: metadata syscalls on a layer answered on the JS thread while the
// layer is fast; a layer whose call is slow goes through the libuv pool for a
// while.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Layer } from './layers'
import { LayerIo } from './layer-io'

let tmp: string
beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-layerio-')) })
afterEach(() => {
  vi.restoreAllMocks()
  fs.rmSync(tmp, { recursive: true, force: true })
})

const lower: Layer = { index: 1, root: '/nonexistent-lower', isUpper: false, dev: 0 }
const upper: Layer = { index: 0, root: '/nonexistent-upper', isUpper: true, dev: 0 }

describe('LayerIo', () => {
  it('answers a lower lstat synchronously, with the same result as fs.lstat', () => {
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, 'abc')
    const st = new LayerIo().lstat(lower, f)
    expect(st).not.toBeInstanceOf(Promise)
    const want = fs.lstatSync(f, { bigint: true })
    expect(st).toMatchObject({ ino: want.ino, size: 3n, mode: want.mode, mtimeNs: want.mtimeNs })
  })

  it('gives undefined for a missing name and throws other errors as they are', () => {
    const ls = new LayerIo()
    expect(ls.lstat(lower, path.join(tmp, 'missing'))).toBeUndefined()
    fs.writeFileSync(path.join(tmp, 'file'), '')
    expect(() => ls.lstat(lower, path.join(tmp, 'file', 'below'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }))
  })

  it('answers the upper layer on the JS thread too: lstat, xattrs, chmod, chown, utimens, open, fstat, close', () => {
    const io = new LayerIo()
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, 'abcd')
    const st = io.lstat(upper, f)
    expect(st).not.toBeInstanceOf(Promise)
    expect((st as fs.BigIntStats).size).toBe(4n)
    expect(io.lstat(upper, path.join(tmp, 'missing'))).toBeUndefined()
    expect(io.llistxattr(upper, f)).toEqual([])
    expect(io.lgetxattr(upper, f, 'user.none')).toBeNull()
    expect(io.chmod(upper, f, 0o640)).toBeUndefined()
    expect(fs.statSync(f).mode & 0o7777).toBe(0o640)
    expect(io.lchown(upper, f, 123, 456)).toBeUndefined()
    expect(fs.statSync(f)).toMatchObject({ uid: 123, gid: 456 })
    expect(io.utimens(upper, f, { sec: 1, nsec: 5 }, { sec: 2, nsec: 7 })).toBeUndefined()
    expect(fs.statSync(f, { bigint: true }).mtimeNs).toBe(2_000_000_007n)
    const fd = io.open(upper, path.join(tmp, 'g'), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600)
    expect(typeof fd).toBe('number')
    expect((io.fstat(upper, fd as number) as fs.BigIntStats).isFile()).toBe(true)
    expect(io.close(upper, fd as number)).toBeUndefined()
    expect(() => io.open(upper, path.join(tmp, 'g'), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600)).toThrow(expect.objectContaining({ code: 'EEXIST' }))
    expect(() => io.lgetxattr(upper, path.join(tmp, 'missing'), 'user.x')).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'lgetxattr' }))
  })

  it('gives the same answers through the pool', async () => {
    const io = new LayerIo()
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, 'abcd')
    vi.spyOn(io, 'isSlow').mockReturnValue(true)
    const st = io.lstat(upper, f)
    expect(st).toBeInstanceOf(Promise)
    expect((await st)?.size).toBe(4n)
    expect(await io.lstat(upper, path.join(tmp, 'missing'))).toBeUndefined()
    expect(await io.llistxattr(upper, f)).toEqual([])
    expect(await io.lgetxattr(upper, f, 'user.none')).toBeNull()
    await io.chmod(upper, f, 0o604)
    expect(fs.statSync(f).mode & 0o7777).toBe(0o604)
    const fd = await io.open(upper, f, fs.constants.O_RDONLY)
    expect((await io.fstat(upper, fd)).size).toBe(4n)
    await io.close(upper, fd)
    await expect(io.lgetxattr(upper, path.join(tmp, 'missing'), 'user.x')).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('sends a layer to the pool for a while after a slow lstat, then tries again', async () => {
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, '')
    const ls = new LayerIo()
    let now = 1_000
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now)
    // The lstat "takes" SLOW_MS + 1 ms: the clock moves between the readings before and after it
    // (the first reading is the check whether the layer is marked slow).
    clock.mockImplementationOnce(() => now).mockImplementationOnce(() => now).mockImplementationOnce(() => { now += LayerIo.SLOW_MS + 1; return now })
    expect(ls.lstat(lower, f)).not.toBeInstanceOf(Promise)
    expect(ls.isSlow(lower)).toBe(true)
    const pooled = ls.lstat(lower, f)
    expect(pooled).toBeInstanceOf(Promise)
    expect(await pooled).toBeDefined()
    // Another lower layer is not affected.
    expect(ls.lstat({ ...lower, index: 2 }, f)).not.toBeInstanceOf(Promise)
    now += LayerIo.SLOW_BACKOFF_MS + 1
    expect(ls.isSlow(lower)).toBe(false)
    expect(ls.lstat(lower, f)).not.toBeInstanceOf(Promise)
  })
})
