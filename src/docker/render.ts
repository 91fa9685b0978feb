import { shortId } from './digest'
import type { ResolvedStack } from './types'

/** Pure renderings of a resolved stack for `ovlfs layers`. */

/** The `--json` object, with exactly the contract's keys in the contract's order. */
export interface LayersJson {
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  image: { id: string, refs: string[] }
  layers: Array<{ chainId: string, diffId: string, cacheId: string, size: number, createdBy: string }>
}

export function stackJson (stack: ResolvedStack): LayersJson {
  return {
    lowerdirs: [...stack.lowerdirs],
    ...(stack.upperdir === undefined ? {} : { upperdir: stack.upperdir }),
    ...(stack.workdir === undefined ? {} : { workdir: stack.workdir }),
    image: { id: stack.image.id, refs: [...stack.image.refs] },
    layers: stack.layers.map((l) => ({ chainId: l.chainId, diffId: l.diffId, cacheId: l.cacheId, size: l.size, createdBy: l.createdBy }))
  }
}

/** `ovlfs layers --json` output: one JSON object and a newline. */
export function renderJson (stack: ResolvedStack): string {
  return JSON.stringify(stackJson(stack), null, 2) + '\n'
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB']

/** Decimal human size with 3 significant digits, as `docker history` prints it: 512B, 2.05kB, 7.34MB. */
export function humanSize (bytes: number): string {
  if (!Number.isFinite(bytes) || Math.abs(bytes) < 1000) return `${bytes}B`
  let value = Math.abs(bytes)
  let unit = 0
  while (unit < UNITS.length - 1 && Number(value.toPrecision(3)) >= 1000) {
    value /= 1000
    unit++
  }
  return `${bytes < 0 ? '-' : ''}${Number(value.toPrecision(3))}${UNITS[unit] ?? ''}`
}

const CREATED_BY_MAX = 60

/** The history instruction, shortened for a table row. */
export function shortInstruction (createdBy: string): string {
  const text = createdBy.replace(/^\/bin\/sh -c #\(nop\)\s*/, '').replace(/\s+/g, ' ').trim()
  if (text === '') return '-'
  return text.length > CREATED_BY_MAX ? `${text.slice(0, CREATED_BY_MAX - 1)}…` : text
}

function table (rows: string[][]): string[] {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length))) ?? []
  return rows.map((row) => row.map((cell, col) => col === row.length - 1 ? cell : cell.padEnd((widths[col] ?? 0) + 3)).join('').trimEnd())
}

/** The human-readable view: what it is, then one row per layer (top first, like `docker history`) and the total. */
export function renderTable (stack: ResolvedStack): string {
  const refs = stack.image.refs.length > 0 ? ` (${stack.image.refs.join(', ')})` : ''
  const lines = [`image ${stack.image.id}${refs}, ${stack.driver}`]
  if (stack.container !== undefined) {
    const c = stack.container
    lines.push(`container ${c.name} (${shortId(c.id)}), ${c.running ? 'running' : 'not running'}${stack.upperdir !== undefined ? `, upper ${stack.upperdir}` : ''}`)
  }
  const total = stack.layers.reduce((sum, layer) => sum + layer.size, 0)
  const count = `${stack.layers.length} layer${stack.layers.length === 1 ? '' : 's'}`
  const rows = [
    ['LAYER', 'CACHE ID', 'SIZE', 'CREATED BY'],
    ...stack.layers.map((l) => [shortId(l.chainId), shortId(l.cacheId), humanSize(l.size), shortInstruction(l.createdBy)]),
    ['total', '', humanSize(total), count]
  ]
  return [...lines, ...table(rows)].join('\n') + '\n'
}
