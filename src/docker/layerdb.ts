import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { hexOf, isDigest, sha256Digest, type Digest } from './digest'
import { describeFsError, fileError, quote } from './errors'
import { readOptionalText, readText } from './metafile'

/**
 * The layer DB `image/<driver>/layerdb/sha256/<chain-hex>/`
 * (daemon/internal/layer/filestore.go, layer_store.go): each read-only layer's
 * diff ID, size, graph-driver cache ID and parent chain ID, read exactly as
 * the daemon reads them.
 */

/** maxLayerDepth in layer_store.go: 127 in some drivers, minus the init and RW layers. */
export const MAX_LAYER_DEPTH = 125

export interface LayerRecord {
  chainId: Digest
  diffId: Digest
  /** The graph-driver directory name of the layer. */
  cacheId: string
  size: number
  parent?: Digest
}

/** ChainID of a layer: its diff ID on its own, else sha256("<parent chain> <diff>"). */
export function chainIdOf (parent: Digest | undefined, diffId: Digest): Digest {
  return parent === undefined ? diffId : sha256Digest(`${parent} ${diffId}`)
}

/** ChainIDs of a rootfs (identity.ChainIDs): one per diff ID, bottom first. */
export function chainIds (diffIds: readonly Digest[]): Digest[] {
  const chain: Digest[] = []
  for (const diffId of diffIds) chain.push(chainIdOf(chain[chain.length - 1], diffId))
  return chain
}

/** The layer DB directory of a chain ID. */
export function layerDir (layerdbDir: string, chainId: Digest): string {
  return join(layerdbDir, 'sha256', hexOf(chainId))
}

/**
 * A graph-driver ID read from a file is used as a directory name: it must not
 * be able to leave the driver's home.
 */
export function assertSafeId (file: string, id: string, what: string): string {
  if (id === '' || id === '.' || id.includes('/') || id.includes('..') || /[\u0000-\u001f]/.test(id)) {
    throw fileError(file, `unsafe ${what} ${quote(id)} (empty, or contains '/', '..' or control characters)`)
  }
  return id
}

/** A digest file the daemon trims and parses with digest.Parse (diff, parent). */
export function parseDigestFile (file: string, text: string): Digest {
  const value = text.trim()
  if (!isDigest(value)) throw fileError(file, `invalid digest ${quote(value)}`)
  return value
}

const INT64_MAX = (1n << 63n) - 1n
const INT64_MIN = -(1n << 63n)

/** GetSize: strconv.ParseInt(content, 10, 64) without trimming; a trailing newline is an error. */
export function parseSizeFile (file: string, text: string): number {
  if (!/^[+-]?[0-9]+$/.test(text)) {
    throw fileError(file, `invalid size value ${quote(text)} (a decimal integer without whitespace; the daemon does not trim this file)`)
  }
  const value = BigInt(text)
  if (value > INT64_MAX || value < INT64_MIN) throw fileError(file, `size value ${quote(text)} is out of range`)
  return Number(value)
}

/** GetCacheID: trimmed, non-empty, and (our rule) a plain directory name. */
export function parseCacheIdFile (file: string, text: string): string {
  const value = text.trim()
  if (value === '') throw fileError(file, 'invalid cache id value (empty)')
  return assertSafeId(file, value, 'cache id')
}

async function requireLayerDir (dir: string, chainId: Digest): Promise<void> {
  const info = await stat(dir).catch((err: unknown) => {
    throw fileError(dir, `layer ${chainId} is not in the layer store: ${describeFsError(err)}`)
  })
  if (!info.isDirectory()) throw fileError(dir, `layer ${chainId} is not in the layer store: not a directory`)
}

/** Reads one layer's metadata; every problem names the file. */
export async function readLayer (layerdbDir: string, chainId: Digest): Promise<LayerRecord> {
  const dir = layerDir(layerdbDir, chainId)
  await requireLayerDir(dir, chainId)
  const diffId = parseDigestFile(join(dir, 'diff'), await readText(join(dir, 'diff')))
  const size = parseSizeFile(join(dir, 'size'), await readText(join(dir, 'size')))
  const cacheIdText = await readOptionalText(join(dir, 'cache-id'))
  if (cacheIdText === undefined) {
    throw fileError(join(dir, 'cache-id'), `does not exist: layer ${chainId} has no graph-driver directory (the daemon drops it and every image above it)`)
  }
  const cacheId = parseCacheIdFile(join(dir, 'cache-id'), cacheIdText)
  const parentText = await readOptionalText(join(dir, 'parent'))
  const record: LayerRecord = { chainId, diffId, cacheId, size }
  if (parentText !== undefined) record.parent = parseDigestFile(join(dir, 'parent'), parentText)
  const expected = chainIdOf(record.parent, diffId)
  if (expected !== chainId) {
    const basis = record.parent === undefined ? 'with no parent' : `on parent ${record.parent}`
    throw fileError(join(dir, 'diff'), `diff ${diffId} ${basis} gives chain ID ${expected}, not ${chainId}`)
  }
  return record
}

/**
 * The chain of layers from `top` down to the base, top-most first, following
 * `parent` files; refuses chains deeper than the layer store allows.
 */
export async function walkChain (layerdbDir: string, top: Digest): Promise<LayerRecord[]> {
  const layers: LayerRecord[] = []
  let next: Digest | undefined = top
  while (next !== undefined) {
    if (layers.length === MAX_LAYER_DEPTH) {
      throw fileError(layerDir(layerdbDir, top), `chain is deeper than ${MAX_LAYER_DEPTH} layers (the layer store's limit)`)
    }
    const layer = await readLayer(layerdbDir, next)
    layers.push(layer)
    next = layer.parent
  }
  return layers
}
