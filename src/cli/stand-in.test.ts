import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { STAND_IN_ENV, removeStandIn, standInOf } from './stand-in'

const root = mkdtempSync(join(tmpdir(), 'ovlfs-stand-in-test-'))
afterAll(() => { rmSync(root, { recursive: true, force: true }) })

describe('the empty stand-in lowerdir', () => {
  it('is the only lowerdir the variable names, also through a symlink; anything else is not', () => {
    const dir = join(root, 'empty-1')
    mkdirSync(dir)
    symlinkSync(dir, join(root, 'link-1'))
    expect(standInOf([dir], { [STAND_IN_ENV]: dir })).toBe(dir)
    expect(standInOf([join(root, 'link-1')], { [STAND_IN_ENV]: dir })).toBe(join(root, 'link-1'))
    expect(standInOf([dir], {})).toBeUndefined()
    expect(standInOf([dir], { [STAND_IN_ENV]: '' })).toBeUndefined()
    expect(standInOf([dir, root], { [STAND_IN_ENV]: dir }), 'two lowerdirs: not a zero-layer image').toBeUndefined()
    expect(standInOf([root], { [STAND_IN_ENV]: dir }), 'another dir').toBeUndefined()
    expect(standInOf([dir], { [STAND_IN_ENV]: join(root, 'missing') })).toBeUndefined()
  })

  it('is removed only while empty, never recursively', () => {
    const dir = join(root, 'empty-2')
    mkdirSync(dir)
    writeFileSync(join(dir, 'kept'), 'x')
    expect(removeStandIn(dir)).toBe(false)
    expect(existsSync(join(dir, 'kept'))).toBe(true)
    rmSync(join(dir, 'kept'))
    expect(removeStandIn(dir)).toBe(true)
    expect(existsSync(dir)).toBe(false)
    expect(removeStandIn(dir), 'already gone').toBe(true)
  })
})
