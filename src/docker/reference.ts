import { userError } from './errors'

/**
 * Image references parsed the way Docker parses them
 * (github.com/distribution/reference: ParseAnyReference,
 * ParseNormalizedNamed, splitDockerDomain, familiarizeName, TagNameOnly),
 * and the keys the reference store files them under.
 */

/** A bare 64-hex image ID or a full `alg:hex` digest: names an image ID directly. */
export interface DigestReference {
  kind: 'digest'
  digest: string
}

/** A repository name (normalized: domain + path) with an optional tag and digest. */
export interface NamedReference {
  kind: 'named'
  domain: string
  path: string
  tag?: string
  digest?: string
}

export type ParsedReference = DigestReference | NamedReference

const DEFAULT_DOMAIN = 'docker.io'
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io'
const OFFICIAL_REPO_PREFIX = 'library/'
const DEFAULT_TAG = 'latest'
const NAME_TOTAL_LENGTH_MAX = 255
/** Far above any valid reference; bounds regex work on hostile input. */
const INPUT_LENGTH_MAX = 4096

// The grammar of distribution/reference regexp.go, verbatim.
const alphanumeric = '[a-z0-9]+'
const separator = '(?:[._]|__|[-]+)'
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const optionalPort = '(?::[0-9]+)?'
const tagPat = '[\\w][\\w.-]{0,127}'
const digestPat = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}'
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]'
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`
const host = `(?:${domainName}|${ipv6address})`
const domainAndPort = host + optionalPort
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`
const remoteName = `${pathComponent}(?:/${pathComponent})*`
const namePat = `(?:${domainAndPort}/)?${remoteName}`

const referenceRegexp = new RegExp(`^(${namePat})(?::(${tagPat}))?(?:@(${digestPat}))?$`)
const anchoredNameRegexp = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`)
const anchoredIdentifierRegexp = /^[a-f0-9]{64}$/

/** Hex lengths of the digest algorithms the daemon registers (go-digest). */
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 }

/**
 * Why `text` is not a valid digest (go-digest Digest.Validate), or undefined
 * when it is one. `invalid-length` matters to ID-prefix search.
 */
export function digestProblem (text: string): 'invalid-format' | 'invalid-length' | 'unsupported' | undefined {
  const i = text.indexOf(':')
  if (i <= 0 || i + 1 === text.length) return 'invalid-format'
  const algorithm = text.slice(0, i)
  const encoded = text.slice(i + 1)
  const size = DIGEST_HEX_LENGTH[algorithm]
  if (size === undefined) {
    return /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(text) ? 'unsupported' : 'invalid-format'
  }
  if (encoded.length !== size) return 'invalid-length'
  return /^[a-f0-9]+$/.test(encoded) ? undefined : 'invalid-format'
}

function invalid (input: string, why: string): Error {
  return userError(`invalid reference ${JSON.stringify(input)}: ${why}`)
}

/** splitDockerDomain: the registry domain and the remote name (with tag/digest still attached). */
function splitDockerDomain (name: string): [string, string] {
  const slash = name.indexOf('/')
  if (slash === -1) return [DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name]
  const maybeDomain = name.slice(0, slash)
  const maybeRemote = name.slice(slash + 1)
  let domain: string
  let remote: string
  if (maybeDomain === LEGACY_DEFAULT_DOMAIN) {
    [domain, remote] = [DEFAULT_DOMAIN, maybeRemote]
  } else if (maybeDomain === 'localhost' || /[.:]/.test(maybeDomain) || maybeDomain.toLowerCase() !== maybeDomain) {
    [domain, remote] = [maybeDomain, maybeRemote]
  } else {
    [domain, remote] = [DEFAULT_DOMAIN, name]
  }
  if (domain === DEFAULT_DOMAIN && !remote.includes('/')) remote = OFFICIAL_REPO_PREFIX + remote
  return [domain, remote]
}

/** reference.Parse on an already domain-qualified string. */
function parseQualified (input: string, qualified: string): NamedReference {
  const match = referenceRegexp.exec(qualified)
  if (match === null) {
    const lower = qualified.toLowerCase()
    if (lower !== qualified && referenceRegexp.test(lower)) throw invalid(input, 'repository name must be lowercase')
    throw invalid(input, 'invalid reference format')
  }
  const name = match[1] as string
  const nameMatch = anchoredNameRegexp.exec(name)
  const domain = nameMatch?.[1] ?? ''
  const path = nameMatch?.[2] ?? name
  if (path.length > NAME_TOTAL_LENGTH_MAX) throw invalid(input, `repository name must not be longer than ${NAME_TOTAL_LENGTH_MAX} characters`)
  const ref: NamedReference = { kind: 'named', domain, path }
  if (match[2] !== undefined) ref.tag = match[2]
  if (match[3] !== undefined) {
    const problem = digestProblem(match[3])
    if (problem !== undefined) throw invalid(input, `digest ${problem.replace('-', ' ')}`)
    ref.digest = match[3]
  }
  return ref
}

/** ParseNormalizedNamed: familiar input to a fully qualified named reference. */
export function parseNormalizedNamed (input: string): NamedReference {
  if (anchoredIdentifierRegexp.test(input)) throw invalid(input, 'cannot specify 64-byte hexadecimal strings as a repository name')
  const [domain, remainder] = splitDockerDomain(input)
  const tagSep = remainder.indexOf(':')
  const remote = tagSep > -1 ? remainder.slice(0, tagSep) : remainder
  if (remote.toLowerCase() !== remote) throw invalid(input, 'repository name must be lowercase')
  return parseQualified(input, `${domain}/${remainder}`)
}

/** ParseAnyReference: a 64-hex ID or full digest names an image ID; anything else is a name. */
export function parseAnyReference (input: string): ParsedReference {
  if (input === '') throw invalid(input, 'empty reference')
  if (input.length > INPUT_LENGTH_MAX) throw invalid(input, 'too long')
  if (anchoredIdentifierRegexp.test(input)) return { kind: 'digest', digest: `sha256:${input}` }
  if (digestProblem(input) === undefined) return { kind: 'digest', digest: input }
  return parseNormalizedNamed(input)
}

/** FamiliarName: `nginx`, `user/app`, `ghcr.io/org/app`. */
export function familiarName (ref: NamedReference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return ref.domain === '' ? ref.path : `${ref.domain}/${ref.path}`
  if (ref.path.startsWith(OFFICIAL_REPO_PREFIX)) {
    const rest = ref.path.slice(OFFICIAL_REPO_PREFIX.length)
    if (!rest.includes('/')) return rest
  }
  return ref.path
}

/** FamiliarString: familiar name plus `:tag` and/or `@digest`. */
export function familiarString (ref: NamedReference): string {
  let text = familiarName(ref)
  if (ref.tag !== undefined) text += `:${ref.tag}`
  if (ref.digest !== undefined) text += `@${ref.digest}`
  return text
}

/**
 * Where refStore.Get looks a named reference up in repositories.json: a
 * digest wins over a tag (favorDigest), a bare name gets `:latest`.
 */
export function refStoreKey (ref: NamedReference): { repository: string, key: string } {
  const lookup: NamedReference = ref.digest !== undefined
    ? { kind: 'named', domain: ref.domain, path: ref.path, digest: ref.digest }
    : { kind: 'named', domain: ref.domain, path: ref.path, tag: ref.tag ?? DEFAULT_TAG }
  return { repository: familiarName(lookup), key: familiarString(lookup) }
}
