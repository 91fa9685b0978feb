import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { hexOf, isDigest, isHex64, sha256Digest, type Digest } from './digest'
import { fileError, fsError, isNotFound, quote } from './errors'
import { isJsonObject, parseJson, readOptionalBytes, type JsonObject } from './metafile'

/**
 * The image DB `image/<driver>/imagedb` (daemon/internal/image/fs.go,
 * image.go, rootfs.go): configs stored under the sha256 of their exact bytes.
 */

export interface ImageConfig {
  id: Digest
  /** The content file the config was read from. */
  file: string
  /** rootfs.diff_ids, bottom layer first (empty for a zero-layer image). */
  diffIds: Digest[]
  /** The history instruction that created each layer, indexed like diffIds ('' when unknown). */
  createdBy: string[]
}

/** Where the config of image `id` is stored. */
export function configFile (imagedbDir: string, id: Digest): string {
  return join(imagedbDir, 'content', 'sha256', hexOf(id))
}

interface HistoryEntry { createdBy: string, emptyLayer: boolean }

function parseHistory (file: string, value: unknown): HistoryEntry[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw fileError(file, '"history" is not an array')
  return value.map((entry: unknown, i): HistoryEntry => {
    if (!isJsonObject(entry)) throw fileError(file, `history[${i}] is not an object`)
    const createdBy = entry.created_by ?? ''
    const emptyLayer = entry.empty_layer ?? false
    if (typeof createdBy !== 'string') throw fileError(file, `history[${i}].created_by is not a string`)
    if (typeof emptyLayer !== 'boolean') throw fileError(file, `history[${i}].empty_layer is not a boolean`)
    return { createdBy, emptyLayer }
  })
}

/**
 * The instruction that created each of `layerCount` layers: history entries
 * flagged `empty_layer` made no layer; the others match diff_ids in order
 * (as `docker history` pairs them). Layers without an entry get ''.
 */
export function createdByPerLayer (history: ReadonlyArray<HistoryEntry>, layerCount: number): string[] {
  const createdBy = new Array<string>(layerCount).fill('')
  let layer = 0
  for (const entry of history) {
    if (entry.emptyLayer) continue
    if (layer >= layerCount) break
    createdBy[layer++] = entry.createdBy
  }
  return createdBy
}

function parseDiffIds (file: string, rootfs: JsonObject): Digest[] {
  const raw = rootfs.diff_ids
  if (raw === undefined || raw === null) return []
  if (!Array.isArray(raw)) throw fileError(file, 'rootfs.diff_ids is not an array')
  return raw.map((value: unknown, i): Digest => {
    if (typeof value !== 'string' || !isDigest(value)) {
      throw fileError(file, `rootfs.diff_ids[${i}] is ${quote(String(value))}, not a sha256 digest`)
    }
    return value
  })
}

/** Parses verified config bytes (image.NewFromJSON: a `rootfs` key is required). */
export function parseImageConfig (file: string, id: Digest, bytes: Buffer): ImageConfig {
  const json = parseJson(file, bytes)
  if (!isJsonObject(json)) throw fileError(file, 'is not a JSON object')
  const rootfs = json.rootfs
  if (rootfs === undefined || rootfs === null) throw fileError(file, 'invalid image config: no "rootfs" key')
  if (!isJsonObject(rootfs)) throw fileError(file, '"rootfs" is not an object')
  const diffIds = parseDiffIds(file, rootfs)
  const history = parseHistory(file, json.history)
  return { id, file, diffIds, createdBy: createdByPerLayer(history, diffIds.length) }
}

/** Reads and verifies (sha256 of the bytes = ID) an image config; undefined when the file is absent. */
export async function readImageConfigIfPresent (imagedbDir: string, id: Digest): Promise<ImageConfig | undefined> {
  const file = configFile(imagedbDir, id)
  const bytes = await readOptionalBytes(file)
  if (bytes === undefined) return undefined
  const actual = sha256Digest(bytes)
  if (actual !== id) throw fileError(file, `digest mismatch: content hashes to ${actual}, expected ${id}`)
  return parseImageConfig(file, id, bytes)
}

/** Reads and verifies an image config; a missing file is an error. */
export async function readImageConfig (imagedbDir: string, id: Digest): Promise<ImageConfig> {
  const config = await readImageConfigIfPresent(imagedbDir, id)
  if (config === undefined) throw fileError(configFile(imagedbDir, id), 'does not exist (image config missing)')
  return config
}

/** Every image ID present in the image DB (file names that are 64 hex), sorted. */
export async function listImageIds (imagedbDir: string): Promise<Digest[]> {
  const dir = join(imagedbDir, 'content', 'sha256')
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return []
    throw fsError(dir, err)
  }
  return names.filter(isHex64).sort().map((hex): Digest => `sha256:${hex}`)
}
