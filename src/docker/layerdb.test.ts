import { describe, expect, it } from 'vitest'
import { CliError } from '../cli/errors'
import type { Digest } from './digest'
import { searchImageIds } from './images'
import { createdByPerLayer } from './imagedb'
import { assertSafeId, chainIdOf, chainIds, parseCacheIdFile, parseDigestFile, parseSizeFile } from './layerdb'

// The table of docker-fixture-notes.md / docker-storage-format.md §9.
const diff1 = 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d'
const diff2 = 'sha256:d8c4e306bcdf3ca401cee602e5a011de65451c3a6bd2a17fcc8e1602aedc9ade'
const diff3 = 'sha256:84647e3068feacc72f3645da3f4d71b44440d8d92d1e9d3c093a9c9d9b3dd908'
const diff4 = 'sha256:3c14f8c78e1f4c1aacd98b53d0431786205b57fd3a39bfce015def6756d51426'
const chain2 = 'sha256:7c1d6339ab5385c7f7f4d9059d63813e96e7855220f05e36063f8e28350cc7b8'
const chain3 = 'sha256:cfe7832658f365d7c801e129bf863f77d0fb4f58a661e829d071d1cce3b60699'
const chain4 = 'sha256:b1680d394125acc1c285f121f74bff3bede699694c5106db13644478f6d4e319'

function message (fn: () => unknown): string {
  try { fn() } catch (err) {
    expect(err).toBeInstanceOf(CliError)
    return (err as Error).message
  }
  throw new Error('expected an error')
}

describe('chain IDs', () => {
  it('equal the values of the notes', () => {
    expect(chainIds([diff1, diff2, diff3, diff4])).toEqual([diff1, chain2, chain3, chain4])
  })
  it('hash "<parent> <diff>" with sha256: prefixes (143 bytes)', () => {
    expect(`${diff1} ${diff2}`).toHaveLength(143)
    expect(chainIdOf(diff1, diff2)).toBe(chain2)
    expect(chainIdOf(undefined, diff3)).toBe(diff3)
  })
  it('are empty for a zero-layer image, and differ for duplicate diff IDs', () => {
    expect(chainIds([])).toEqual([])
    const [a, b] = chainIds([diff1, diff1])
    expect(a).not.toBe(b)
  })
})

describe('layer DB files, read as the daemon reads them', () => {
  it('size: ParseInt without trimming', () => {
    expect(parseSizeFile('f', '7340032')).toBe(7340032)
    expect(parseSizeFile('f', '+512')).toBe(512)
    expect(parseSizeFile('f', '0')).toBe(0)
    expect(message(() => parseSizeFile('/x/size', '512\n'))).toMatch(/^\/x\/size: invalid size value "512\\n"/)
    expect(message(() => parseSizeFile('f', ' 512'))).toContain('invalid size')
    expect(message(() => parseSizeFile('f', ''))).toContain('invalid size')
    expect(message(() => parseSizeFile('f', '9223372036854775808'))).toContain('out of range')
  })
  it('diff and parent: trimmed, must be sha256 digests', () => {
    expect(parseDigestFile('f', `${diff1}\n`)).toBe(diff1)
    expect(message(() => parseDigestFile('/x/diff', 'sha256:abc'))).toBe('/x/diff: invalid digest "sha256:abc"')
  })
  it('cache-id: trimmed, not empty, a plain name', () => {
    expect(parseCacheIdFile('f', ' abc\n')).toBe('abc')
    expect(message(() => parseCacheIdFile('/x/cache-id', '\n'))).toBe('/x/cache-id: invalid cache id value (empty)')
    for (const bad of ['../etc', 'a/b', '..', '.', 'a..b', 'a\0b']) {
      expect(message(() => assertSafeId('/x/cache-id', bad, 'cache id'))).toMatch(/^\/x\/cache-id: unsafe cache id/)
    }
  })
})

describe('history → layer instructions', () => {
  it('skips empty_layer entries and pairs the rest with diff IDs in order', () => {
    const history = [
      { createdBy: 'ADD rootfs', emptyLayer: false },
      { createdBy: 'CMD sh', emptyLayer: true },
      { createdBy: 'RUN make', emptyLayer: false },
      { createdBy: 'LABEL x', emptyLayer: true }
    ]
    expect(createdByPerLayer(history, 2)).toEqual(['ADD rootfs', 'RUN make'])
    expect(createdByPerLayer(history, 3)).toEqual(['ADD rootfs', 'RUN make', ''])
    expect(createdByPerLayer(history, 1)).toEqual(['ADD rootfs'])
    expect(createdByPerLayer([], 2)).toEqual(['', ''])
  })
})

describe('image ID prefix search (digestset.Lookup)', () => {
  const ids: Digest[] = [
    'sha256:2f9acc7740378eb7fb9e4abc5e2525c3f6ed5650a37bc570f5b16691c4008b22',
    'sha256:45e956dd474b25999763b7ca198611480d0dd8e707b5b293fc6bdc1dae2049ea',
    'sha256:45e9ffff474b25999763b7ca198611480d0dd8e707b5b293fc6bdc1dae2049ea'
  ]
  it('finds unique prefixes, with or without sha256:', () => {
    expect(searchImageIds(ids, '2')).toEqual({ kind: 'unique', value: ids[0] })
    expect(searchImageIds(ids, 'sha256:45e95')).toEqual({ kind: 'unique', value: ids[1] })
  })
  it('reports ambiguity and misses', () => {
    expect(searchImageIds(ids, '45e9')).toEqual({ kind: 'ambiguous', candidates: [ids[1], ids[2]] })
    expect(searchImageIds(ids, 'sha512:45e95')).toEqual({ kind: 'none' })
    expect(searchImageIds(ids, 'nginx')).toEqual({ kind: 'none' })
  })
})
