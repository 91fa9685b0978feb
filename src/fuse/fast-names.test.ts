// Fast names' hand-over of a large listing to the addon (FastNames.listed),
// against a stand-in table that keeps the addon's rules for
// fuse_native_fast_put: a put that does not fit empties the table first
// (its epoch changes) unless it names the epoch it expects, when it is
// refused instead. What must hold: the names go in several puts of about
// 1 MiB; the completeness (kind 2) and readdir's answer (kind 5) come last;
// a completeness is never accepted unless every name of the listing is in
// the table at that epoch.
import * as fs from 'node:fs'
import * as path from 'node:path'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { stack, useTmp } from '../engine/test-helpers'
import { FastNames, type FastTable } from './fast-names'

useTmp()

interface Put { kinds: number[], keys: string[], epochArg: number, answer: number, bytes: number }

/** The addon's table as far as fast_put goes: names held since the last emptying, at most `cap`. */
class StandIn implements FastTable {
  epoch = 0
  held = new Set<string>()
  puts: Put[] = []
  /** Completeness accepted, each with whether every name of the directory was held then. */
  completes: Array<{ dir: string, whole: boolean }> = []

  constructor (private readonly cap: number, private readonly names: () => string[]) {}

  fastPut (_gen: number, _entryMs: number, _attrMs: number, records: Buffer, epoch = -1): number {
    const kinds: number[] = []
    const keys: string[] = []
    for (let at = 0; at + 40 <= records.length;) {
      const keyLen = records.readUInt32LE(at + 32)
      const relLen = records.readUInt32LE(at + 36)
      kinds.push(records.readUInt32LE(at))
      keys.push(records.toString('utf8', at + 40, at + 40 + keyLen))
      at += (40 + keyLen + (relLen === 0xffffffff ? 0 : relLen) + 3) & ~3
    }
    const fits = this.held.size + kinds.length <= this.cap
    let answer = -1
    if (epoch < 0 || (fits && epoch === this.epoch)) {
      if (!fits) {
        this.held.clear()
        this.epoch++
      }
      kinds.forEach((k, i) => {
        const key = keys[i] as string
        this.held.add(`${k === 2 ? 'complete' : k === 5 ? 'packed' : 'name'}:${key}`)
        if (k === 2) this.completes.push({ dir: key, whole: this.names().every(n => this.held.has(`name:${key}/${n}`)) })
      })
      answer = this.epoch
    }
    this.puts.push({ kinds, keys, epochArg: epoch, answer, bytes: records.length })
    return answer
  }

  fastClear = (): number => 0
  fastChange = (): number => 0
  fastStats = (): number[] => []
  fastMove = (): number => 0
  fastLend = (): boolean => false
  fastCreates = (): void => {}
  fastAdopted = (): Buffer | null => null
  fastWhiteout = (): void => {}
}

const N = 40_000

async function bigDir (): Promise<{ names: string[], fast: (t: StandIn) => FastNames, list: (f: FastNames) => Promise<void> }> {
  const s = await stack({ lowers: [{}], base: 'fast' })
  const d = path.join(s.lowers[0] as string, 'big')
  fs.mkdirSync(d)
  const seed = path.join(s.lowers[0] as string, 'seed')
  fs.writeFileSync(seed, '')
  const names: string[] = []
  for (let i = 0; i < N; i++) {
    const n = `name-${i}`
    fs.linkSync(seed, path.join(d, n))
    names.push(n)
  }
  return {
    names,
    fast: (t) => new FastNames(() => t, s.engine, 1000, pino({ level: 'silent' })),
    list: async (f) => {
      const listing = await s.engine.listing('/big')
      f.listed('/big', listing, f.generation, Buffer.alloc(64))
    },
  }
}

describe('fast names: a large listing handed over', () => {
  it('goes in puts of about 1 MiB, each after the first naming its epoch, with the completeness and readdir\'s answer last', async () => {
    const d = await bigDir()
    const t = new StandIn(1 << 18, () => d.names)
    await d.list(d.fast(t))
    expect(t.puts.length).toBeGreaterThanOrEqual(3)
    for (const p of t.puts) expect(p.bytes).toBeLessThan((1 << 20) + 4096)
    expect(t.puts[0]?.epochArg).toBe(-1)
    for (const p of t.puts.slice(1)) expect(p.epochArg).toBe(t.puts[0]?.answer)
    const last = t.puts[t.puts.length - 1] as Put
    expect(last.kinds.slice(-2)).toEqual([2, 5])
    for (const p of t.puts.slice(0, -1)) expect(p.kinds.every(k => k !== 2 && k !== 5)).toBe(true)
    expect(t.puts.flatMap(p => p.kinds).filter(k => k !== 2 && k !== 5)).toHaveLength(N)
    expect(t.completes).toEqual([{ dir: '/big', whole: true }])
  })

  it('is begun again when the table has no room mid-way, and its completeness stands only with every name', async () => {
    const d = await bigDir()
    const t = new StandIn(50_000, () => d.names)
    // Names from elsewhere fill the table: the listing's first puts fit, a later one does not.
    for (let i = 0; i < 30_000; i++) t.held.add(`name:/other/${i}`)
    await d.list(d.fast(t))
    const refused = t.puts.findIndex(p => p.answer < 0)
    expect(refused).toBeGreaterThan(0)
    // Refused without emptying; then the listing again from the start, whose first put empties the table.
    expect(t.puts[refused + 1]?.epochArg).toBe(-1)
    expect(t.puts[refused + 1]?.answer).toBe(1)
    expect(t.completes).toEqual([{ dir: '/big', whole: true }])
    expect([...t.held].filter(k => k.startsWith('name:/other/'))).toHaveLength(0)
  })

  it('never claims completeness when the names cannot all be held', async () => {
    const d = await bigDir()
    const t = new StandIn(30_000, () => d.names)
    await d.list(d.fast(t))
    expect(t.completes).toEqual([])
    // Two attempts at most, each ending at its first refusal.
    expect(t.puts.filter(p => p.answer < 0).length).toBeLessThanOrEqual(2)
  })
})
