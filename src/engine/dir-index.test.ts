// DirIndex: lower listings read once, held compactly, bounded; a directory
// that is too large, or keeps being evicted and read again, is read a bounded
// number of times (lookups there fall back to lstat probes).
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as sys from '../native/sys'
import { CompactListing, DirIndex } from './dir-index'

let tmp: string
beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-dirindex-')) })
afterEach(() => {
  vi.restoreAllMocks()
  fs.rmSync(tmp, { recursive: true, force: true })
})

function makeDir (name: string, n: number): string {
  const d = path.join(tmp, name)
  fs.mkdirSync(d)
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(d, `f${i}`), '')
  fs.mkdirSync(path.join(d, 'sub'))
  fs.symlinkSync('x', path.join(d, 'ln'))
  return d
}

describe('DirIndex', () => {
  it('answers names, types and inode numbers from one read', async () => {
    const d = makeDir('a', 50)
    const reads = vi.spyOn(sys, 'readdirRaw')
    const idx = new DirIndex(1000)
    const l = await idx.get(d)
    expect(l).toBeInstanceOf(CompactListing)
    expect(l?.size).toBe(52)
    expect(l?.typeOf('f7')).toBe('file')
    expect(l?.typeOf('sub')).toBe('dir')
    expect(l?.get('ln')).toEqual({ type: 'symlink', ino: fs.lstatSync(path.join(d, 'ln')).ino })
    expect(l?.has('nope')).toBe(false)
    expect(new Set(Array.from({ length: l?.size ?? 0 }, (_v, i) => l?.nameAt(i))).size).toBe(52)
    for (let i = 0; i < 20; i++) await idx.get(d)
    expect(reads).toHaveBeenCalledTimes(1)
  })

  it('reads a directory larger than the bound once, then answers null without reading it again', async () => {
    const d = makeDir('big', 30)
    const reads = vi.spyOn(sys, 'readdirRaw')
    const idx = new DirIndex(10)
    for (let i = 0; i < 50; i++) expect(await idx.get(d)).toBeNull()
    expect(reads).toHaveBeenCalledTimes(1)
  })

  it('stops re-reading directories that keep evicting each other (working set over the bound)', async () => {
    const a = makeDir('a', 30)
    const b = makeDir('b', 30)
    const reads = vi.spyOn(sys, 'readdirRaw')
    const idx = new DirIndex(40)
    for (let i = 0; i < 100; i++) {
      await idx.get(a)
      await idx.get(b)
    }
    expect(reads.mock.calls.length).toBeLessThanOrEqual(8)
    expect(idx.size).toBeLessThanOrEqual(40)
  })
})
