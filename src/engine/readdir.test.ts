// readdir: the merged listing of all layers, each name once from its
// top-most layer, no whiteouts, no `.wh.*` names, d_type of the top object.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  WH, chr, dir, expectErrno, fifo, file, names, opaqueDir, sock, stack, symlink, useTmp,
} from './test-helpers'

useTmp()

describe('readdir', () => {
  it('merges all layers without duplicates', async () => {
    const s = await stack({
      upper: { a: 'u', u: 'u' },
      lowers: [{ a: 'l0', b: 'l0', m: 'l0' }, { a: 'l1', b: 'l1', c: 'l1' }],
    })
    const list = await s.engine.readdir('')
    expect(list.map(e => e.name).sort()).toEqual(['a', 'b', 'c', 'm', 'u'])
  })

  it('leaves out whiteouts, whited-out names and every `.wh.*` name', async () => {
    const s = await stack({
      upper: { d: dir({ gone: WH, '.wh.alsogone': '', '.wh..wh.plnk': dir(), '.wh..wh..opq.not': '' }) },
      lowers: [
        { d: dir({ gone: 'l0', alsogone: 'l0', '.wh.l1only': '', keep: 'k', '.wh..wh..opq': '' }) },
        { d: dir({ l1only: 'x', below: 'hidden by the opq in l0' }) },
      ],
    })
    expect(await names(s.engine, '/d')).toEqual(['keep'])
  })

  it('a layer root is never opaque (as in the kernel, which ignores opaque roots)', async () => {
    const s = await stack({
      lowers: [{ a: 'a', '.wh..wh..opq': '' }, { b: 'b' }],
    })
    expect(await names(s.engine, '')).toEqual(['a', 'b'])
  })

  it('reports the type of the top-most object', async () => {
    const s = await stack({
      upper: { d: 'now a file' },
      lowers: [{
        f: 'f', d: dir(), l: symlink('f'), p: fifo(), c: chr(1, 3), so: sock(), dl: symlink('d'), dd: dir({ x: 'x' }),
      }, { f: dir(), l: dir(), dd: 'file below' }],
    })
    const types = Object.fromEntries((await s.engine.readdir('')).map(e => [e.name, e.type]))
    expect(types).toEqual({ f: 'file', d: 'file', l: 'symlink', p: 'fifo', c: 'chr', so: 'sock', dl: 'symlink', dd: 'dir' })
  })

  it('lists an opaque directory with only its own layer and the ones above', async () => {
    const s = await stack({
      upper: { d: dir({ u: 'u', gone: WH }) },
      lowers: [{ d: opaqueDir({ a: 'a', gone: 'g' }) }, { d: dir({ b: 'b' }) }],
    })
    expect(await names(s.engine, '/d')).toEqual(['a', 'u'])
  })

  it('an empty merged directory lists nothing; a file is ENOTDIR; a missing name ENOENT', async () => {
    const s = await stack({ upper: { e: dir({ x: WH }) }, lowers: [{ e: dir({ x: 'x' }), f: 'f' }] })
    expect(await s.engine.readdir('/e')).toEqual([])
    await expectErrno(s.engine.readdir('/f'), 'ENOTDIR')
    await expectErrno(s.engine.readdir('/none'), 'ENOENT')
  })

  it('readdirWithIno gives each entry the st_ino that getattr reports', async () => {
    const s = await stack({ upper: { d: dir({ u: 'u' }) }, lowers: [{ d: dir({ a: 'a' }), f: file('f') }] })
    for (const p of ['', '/d']) {
      for (const e of await s.engine.readdirWithIno(p)) {
        expect(e.ino).toBe((await s.engine.getattr(`${p}/${e.name}`)).ino)
      }
    }
  })

  it('sees changes made through the engine', async () => {
    const s = await stack({ lowers: [{ d: dir({ a: 'a', b: 'b' }) }] })
    expect(await names(s.engine, '/d')).toEqual(['a', 'b'])
    await s.engine.unlink('/d/a')
    await s.engine.mknod('/d/c', 0o100644, 0, { uid: 0, gid: 0 })
    expect(await names(s.engine, '/d')).toEqual(['b', 'c'])
  })

  it('lists a 100,000-entry directory spread over 3 layers exactly once each', async () => {
    const s = await stack({ upper: {}, lowers: [{ big: dir() }, { big: dir() }], base: 'fast' })
    const N = 100_000
    const dirs = [s.up('/big'), s.low(0, '/big'), s.low(1, '/big')]
    fs.mkdirSync(dirs[0] as string)
    const seeds = [s.up('/seed'), s.low(0, '/seed'), s.low(1, '/seed')]
    for (const p of seeds) fs.writeFileSync(p, '')
    for (let i = 0; i < N; i++) {
      const name = `entry-${i}`
      // Each name in one layer; every 50th also in the layer below it (a shadowed duplicate).
      // Hard links to one file per layer: far cheaper to make than 100k inodes.
      const layer = i % 3
      fs.linkSync(seeds[layer] as string, path.join(dirs[layer] as string, name))
      if (i % 50 === 0 && layer < 2) fs.linkSync(seeds[layer + 1] as string, path.join(dirs[layer + 1] as string, name))
    }
    const t0 = Date.now()
    const list = await s.engine.readdir('/big')
    const elapsed = Date.now() - t0
    expect(list.length).toBe(N)
    const seen = new Set(list.map(e => e.name))
    expect(seen.size).toBe(N)
    expect(seen.has('seed')).toBe(false) // the seeds are beside big/, not in it
    for (let i = 0; i < N; i += 997) expect(seen.has(`entry-${i}`)).toBe(true)
    expect(list.every(e => e.type === 'file')).toBe(true)
    expect(elapsed).toBeLessThan(10_000)
  })
})

describe('readdir merge against a model', () => {
  // Random layers (upper + 1 to 7 lowers, so both ways of finding names held above are taken:
  // probing the listings above, and a set of the names seen) of names that are files, char 0/0
  // whiteouts, or `.wh.` files; the listing must be what a top-down reading of the rules gives.
  it('lists each name once from its top-most layer, unless a whiteout at or a `.wh.` above hides it', async () => {
    let seed = 12345
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    const pool = Array.from({ length: 12 }, (_v, i) => `n${i}`)
    for (let round = 0; round < 24; round++) {
      const layerCount = 2 + (round % 7)
      const layers = Array.from({ length: layerCount }, () => {
        const t: Record<string, ReturnType<typeof file> | typeof WH> = {}
        for (const n of pool) {
          const r = rand(6)
          if (r === 0) t[n] = file(n)
          else if (r === 1) t[n] = WH
          else if (r === 2) t[`.wh.${n}`] = file()
          else if (r === 3) { t[n] = file(n); t[`.wh.${n}`] = file() }
        }
        return t
      })
      const expected: string[] = []
      for (const n of pool) {
        for (const t of layers) {
          const e = t[n]
          if (e !== undefined) {
            if (e !== WH) expected.push(n)
            break
          }
          if (t[`.wh.${n}`] !== undefined) break
        }
      }
      const s = await stack({ upper: { d: dir(layers[0]) }, lowers: layers.slice(1).map(t => ({ d: dir(t) })) })
      expect(await names(s.engine, '/d'), `round ${round}, ${layerCount} layers`).toEqual(expected.sort())
    }
  })
})

