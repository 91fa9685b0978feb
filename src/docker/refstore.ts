import { isDigest, type Digest } from './digest'
import { fileError, quote } from './errors'
import { isJsonObject, parseJson, readOptionalBytes } from './metafile'
import { refStoreKey, type NamedReference } from './reference'

/**
 * The reference store `image/<driver>/repositories.json`
 * (daemon/internal/refstore/store.go): familiar name → familiar string
 * (`name:tag` or `name@digest`) → image ID.
 */
export interface RefStore {
  readonly file: string
  /** The image ID a named reference points at (refStore.Get), or undefined. */
  lookup: (ref: NamedReference) => Digest | undefined
  /** Every familiar string pointing at `imageId`, sorted. */
  refsFor: (imageId: Digest) => string[]
}

type Repositories = Map<string, Map<string, string>>

function parseRepositories (file: string, value: unknown): Repositories {
  if (!isJsonObject(value)) throw fileError(file, 'is not a JSON object')
  const repositories: Repositories = new Map()
  const raw = value.Repositories
  if (raw === undefined || raw === null) return repositories
  if (!isJsonObject(raw)) throw fileError(file, '"Repositories" is not an object')
  for (const [name, refs] of Object.entries(raw)) {
    if (refs === null) continue
    if (!isJsonObject(refs)) throw fileError(file, `repository ${quote(name)} is not an object`)
    const entries = new Map<string, string>()
    for (const [key, id] of Object.entries(refs)) {
      if (typeof id !== 'string') throw fileError(file, `${quote(key)} maps to a ${typeof id}, not an image ID string`)
      entries.set(key, id)
    }
    repositories.set(name, entries)
  }
  return repositories
}

/** Loads the reference store; a missing file is an empty store (no image was ever tagged). */
export async function loadRefStore (file: string): Promise<RefStore> {
  const bytes = await readOptionalBytes(file)
  const repositories = bytes === undefined ? new Map() as Repositories : parseRepositories(file, parseJson(file, bytes))
  return {
    file,
    lookup (ref) {
      const { repository, key } = refStoreKey(ref)
      const id = repositories.get(repository)?.get(key)
      if (id === undefined || isDigest(id)) return id
      throw fileError(file, `${quote(key)} maps to ${quote(id)}, not a sha256 image ID`)
    },
    refsFor (imageId) {
      const refs: string[] = []
      for (const entries of repositories.values()) {
        for (const [key, id] of entries) if (id === imageId) refs.push(key)
      }
      return refs.sort()
    }
  }
}
