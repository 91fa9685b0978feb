/**
 * Unique-prefix lookup as Docker does it for IDs (digestset.Lookup for
 * images, ViewDB.GetByPrefix for containers): an exact match wins, one
 * prefix match is the answer, several are an error listing the candidates.
 */

export type PrefixMatch<T> =
  | { kind: 'unique', value: T }
  | { kind: 'ambiguous', candidates: T[] }
  | { kind: 'none' }

export function matchPrefix<T> (items: readonly T[], keyOf: (item: T) => string, prefix: string): PrefixMatch<T> {
  if (prefix === '') return { kind: 'none' }
  const exact = items.find((item) => keyOf(item) === prefix)
  if (exact !== undefined) return { kind: 'unique', value: exact }
  const matches = items.filter((item) => keyOf(item).startsWith(prefix))
  if (matches.length === 1) return { kind: 'unique', value: matches[0] as T }
  if (matches.length > 1) return { kind: 'ambiguous', candidates: matches }
  return { kind: 'none' }
}

const LISTED_MAX = 10

/** Candidates for an error message, on one line: `a, b, c and 4 more`. */
export function listCandidates (candidates: readonly string[]): string {
  const shown = candidates.slice(0, LISTED_MAX).join(', ')
  const rest = candidates.length - LISTED_MAX
  return rest > 0 ? `${shown} and ${rest} more` : shown
}
