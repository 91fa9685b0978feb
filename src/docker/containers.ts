import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { isDigest, isHex64, shortId, type Digest } from './digest'
import { fileError, fsError, isNotFound, quote, userError } from './errors'
import { parseDigestFile } from './layerdb'
import { isJsonObject, parseJson, readBytes, readOptionalText, readText } from './metafile'
import { listCandidates, matchPrefix } from './prefix'

/**
 * Containers: `containers/<id>/config.v2.json` (daemon/container/container.go)
 * looked up as Daemon.GetContainer does, and their RW layer records
 * `image/<driver>/layerdb/mounts/<id>/` (filestore.go GetMountID/GetInitID/GetMountParent).
 */

export interface ContainerConfig {
  id: string
  /** With Docker's leading '/'. */
  name: string
  imageId: Digest
  /** The storage driver (or containerd snapshotter) the container was created with. */
  driver: string
  /** State.Running as last recorded by the daemon. */
  stateRunning: boolean
  file: string
}

export interface MountRecord {
  containerId: string
  dir: string
  mountId: string
  initId?: string
  /** Chain ID of the image's top layer; absent for a zero-layer image. */
  parent?: Digest
}

/** Docker's own ID rule for mount-id and init-id (filestore.go isValidID). */
const MOUNT_ID = /^[a-f0-9]{64}(-init)?$/

export function configFileOf (containersDir: string, id: string): string {
  return join(containersDir, id, 'config.v2.json')
}

function stringField (file: string, json: Record<string, unknown>, key: string): string {
  const value = json[key] ?? ''
  if (typeof value !== 'string') throw fileError(file, `"${key}" is not a string`)
  return value
}

/** Reads and checks a container's config.v2.json (its ID must equal the directory name). */
export async function readContainerConfig (containersDir: string, id: string): Promise<ContainerConfig> {
  const file = configFileOf(containersDir, id)
  const json = parseJson(file, await readBytes(file))
  if (!isJsonObject(json)) throw fileError(file, 'is not a JSON object')
  const configId = stringField(file, json, 'ID')
  if (configId !== id) throw fileError(file, `"ID" is ${quote(configId)}, not the directory name ${id}`)
  const imageId = stringField(file, json, 'Image')
  if (!isDigest(imageId)) throw fileError(file, `"Image" is ${quote(imageId)}, not a sha256 image ID`)
  const state = json.State
  const running = isJsonObject(state) && state.Running === true
  return {
    id,
    name: stringField(file, json, 'Name'),
    imageId,
    driver: stringField(file, json, 'Driver'),
    stateRunning: running,
    file
  }
}

/** IDs of all container directories (names that are 64 hex), sorted. */
export async function listContainerIds (containersDir: string): Promise<string[]> {
  try {
    return (await readdir(containersDir)).filter(isHex64).sort()
  } catch (err) {
    if (isNotFound(err)) return []
    throw fsError(containersDir, err)
  }
}

/** The name of a container for messages, or '' when its config cannot be read. */
async function nameOrEmpty (containersDir: string, id: string): Promise<string> {
  return await readContainerConfig(containersDir, id).then((config) => config.name, () => '')
}

/** The outcome of a container lookup: the container, or nothing and the configs that could not be read. */
export interface ContainerLookup {
  found?: ContainerConfig
  /** One-line errors of configs skipped while searching by name. */
  unreadable: string[]
}

/** GetByName: the container whose Name equals `name` (a leading '/' is implied); unreadable configs are skipped. */
async function findByName (containersDir: string, ids: readonly string[], name: string): Promise<ContainerLookup> {
  const wanted = name.startsWith('/') ? name : `/${name}`
  const unreadable: string[] = []
  for (const id of ids) {
    try {
      const config = await readContainerConfig(containersDir, id)
      if (config.name === wanted) return { found: config, unreadable }
    } catch (err) {
      unreadable.push(err instanceof Error ? err.message : String(err))
    }
  }
  return { unreadable }
}

/**
 * Daemon.GetContainer: exact full ID, then exact name, then unique ID
 * prefix. An ambiguous prefix is an error listing the candidates.
 */
export async function findContainer (containersDir: string, ref: string): Promise<ContainerLookup> {
  if (ref === '') return { unreadable: [] }
  const ids = await listContainerIds(containersDir)
  if (ids.includes(ref)) return { found: await readContainerConfig(containersDir, ref), unreadable: [] }
  const byName = await findByName(containersDir, ids, ref)
  if (byName.found !== undefined) return byName
  const match = matchPrefix(ids, (id) => id, ref)
  if (match.kind === 'unique') return { found: await readContainerConfig(containersDir, match.value), unreadable: [] }
  if (match.kind === 'ambiguous') {
    const described = await Promise.all(match.candidates.map(async (id) => {
      const name = await nameOrEmpty(containersDir, id)
      return name === '' ? shortId(id) : `${shortId(id)} (${name})`
    }))
    throw userError(`ambiguous container ID prefix ${quote(ref)}: matches ${listCandidates(described)}`)
  }
  return byName
}

function parseMountIdFile (file: string, text: string, what: string): string {
  const value = text.trim()
  if (!MOUNT_ID.test(value)) throw fileError(file, `invalid ${what} value ${quote(value)} (expected 64 hex characters, optionally with -init)`)
  return value
}

/** The container's RW layer record `layerdb/mounts/<container-id>/`. */
export async function readMount (layerdbDir: string, containerId: string): Promise<MountRecord> {
  const dir = join(layerdbDir, 'mounts', containerId)
  const mountIdFile = join(dir, 'mount-id')
  const mountId = parseMountIdFile(mountIdFile, await readText(mountIdFile), 'mount id')
  const record: MountRecord = { containerId, dir, mountId }
  const initText = await readOptionalText(join(dir, 'init-id'))
  if (initText !== undefined) record.initId = parseMountIdFile(join(dir, 'init-id'), initText, 'init id')
  const parentText = await readOptionalText(join(dir, 'parent'))
  if (parentText !== undefined) record.parent = parseDigestFile(join(dir, 'parent'), parentText)
  return record
}
