// LowerStat: lower-layer lstats answered on the JS thread while the layer is
// fast; a layer whose lstat is slow goes through the libuv pool for a while;
// the upper layer always does.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Layer } from './layers'
import { LowerStat } from './lower-stat'

let tmp: string
beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-lowerstat-')) })
afterEach(() => {
  vi.restoreAllMocks()
  fs.rmSync(tmp, { recursive: true, force: true })
})

const lower: Layer = { index: 1, root: '/nonexistent-lower', isUpper: false, dev: 0 }
const upper: Layer = { index: 0, root: '/nonexistent-upper', isUpper: true, dev: 0 }

describe('LowerStat', () => {
  it('answers a lower lstat synchronously, with the same result as fs.lstat', () => {
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, 'abc')
    const st = new LowerStat().lstat(lower, f)
    expect(st).not.toBeInstanceOf(Promise)
    const want = fs.lstatSync(f, { bigint: true })
    expect(st).toMatchObject({ ino: want.ino, size: 3n, mode: want.mode, mtimeNs: want.mtimeNs })
  })

  it('gives undefined for a missing name and throws other errors as they are', () => {
    const ls = new LowerStat()
    expect(ls.lstat(lower, path.join(tmp, 'missing'))).toBeUndefined()
    fs.writeFileSync(path.join(tmp, 'file'), '')
    expect(() => ls.lstat(lower, path.join(tmp, 'file', 'below'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }))
  })

  it('uses the pool for the upper layer', async () => {
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, 'abcd')
    const st = new LowerStat().lstat(upper, f)
    expect(st).toBeInstanceOf(Promise)
    expect((await st)?.size).toBe(4n)
    expect(await new LowerStat().lstat(upper, path.join(tmp, 'missing'))).toBeUndefined()
  })

  it('sends a layer to the pool for a while after a slow lstat, then tries again', async () => {
    const f = path.join(tmp, 'f')
    fs.writeFileSync(f, '')
    const ls = new LowerStat()
    let now = 1_000
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now)
    // The lstat "takes" SLOW_MS + 1 ms: the clock moves between the readings before and after it
    // (the first reading is the check whether the layer is marked slow).
    clock.mockImplementationOnce(() => now).mockImplementationOnce(() => now).mockImplementationOnce(() => { now += LowerStat.SLOW_MS + 1; return now })
    expect(ls.lstat(lower, f)).not.toBeInstanceOf(Promise)
    expect(ls.isSlow(lower)).toBe(true)
    const pooled = ls.lstat(lower, f)
    expect(pooled).toBeInstanceOf(Promise)
    expect(await pooled).toBeDefined()
    // Another lower layer is not affected.
    expect(ls.lstat({ ...lower, index: 2 }, f)).not.toBeInstanceOf(Promise)
    now += LowerStat.SLOW_BACKOFF_MS + 1
    expect(ls.isSlow(lower)).toBe(false)
    expect(ls.lstat(lower, f)).not.toBeInstanceOf(Promise)
  })
})
