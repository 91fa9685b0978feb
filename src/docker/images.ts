import { hexOf, isDigest, shortId, type Digest } from './digest'
import { fileError, quote, userError } from './errors'
import { configFile, listImageIds } from './imagedb'
import { fileExists } from './metafile'
import { listCandidates, matchPrefix } from './prefix'
import { digestProblem, parseAnyReference, refStoreKey } from './reference'
import type { RefStore } from './refstore'

/**
 * Image lookup as ImageService.GetImage does it (daemon/images/image.go):
 * a 64-hex ID or full digest names the image directly; a name goes through
 * the reference store; failing that, the input is tried as an ID prefix
 * (digestset.Lookup), e.g. `45e9` or `sha256:45e9`.
 */

/** What an ID-prefix search looks for: a hex prefix, and the algorithm if one was given. */
export function idSearchKey (input: string): { algorithm: string, hex: string } {
  if (digestProblem(input) === 'invalid-format') return { algorithm: '', hex: input }
  const colon = input.indexOf(':')
  return { algorithm: input.slice(0, colon), hex: input.slice(colon + 1) }
}

/** digestset.Lookup over `ids`: exact match wins, a unique prefix matches, several are ambiguous. */
export function searchImageIds (ids: readonly Digest[], input: string): ReturnType<typeof matchPrefix<Digest>> {
  const { algorithm, hex } = idSearchKey(input)
  if (algorithm !== '' && algorithm !== 'sha256') return { kind: 'none' }
  return matchPrefix(ids, hexOf, hex)
}

function describeImage (refs: RefStore, id: Digest): string {
  const names = refs.refsFor(id)
  return names.length === 0 ? shortId(id) : `${shortId(id)} (${names.join(', ')})`
}

/**
 * The image ID `input` names, or undefined when no image matches.
 * Invalid references and ambiguous prefixes are errors.
 */
export async function findImageId (imagedbDir: string, refs: RefStore, input: string): Promise<Digest | undefined> {
  const ref = parseAnyReference(input)
  if (ref.kind === 'digest') {
    if (!isDigest(ref.digest)) return undefined
    return await fileExists(configFile(imagedbDir, ref.digest)) ? ref.digest : undefined
  }
  const id = refs.lookup(ref)
  if (id !== undefined) {
    const file = configFile(imagedbDir, id)
    if (await fileExists(file)) return id
    throw fileError(file, `does not exist, though ${refs.file} maps ${quote(refStoreKey(ref).key)} to ${id}`)
  }
  const match = searchImageIds(await listImageIds(imagedbDir), input)
  if (match.kind === 'unique') return match.value
  if (match.kind === 'ambiguous') {
    throw userError(`ambiguous image ID prefix ${quote(input)}: matches ${listCandidates(match.candidates.map((c) => describeImage(refs, c)))}`)
  }
  return undefined
}
