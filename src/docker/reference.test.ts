import { describe, expect, it } from 'vitest'
import { CliError } from '../cli/errors'
import { digestProblem, familiarName, familiarString, parseAnyReference, refStoreKey, type NamedReference } from './reference'

const HEX = '45e956dd474b25999763b7ca198611480d0dd8e707b5b293fc6bdc1dae2049ea'
const DIGEST = `sha256:${HEX}`

function named (input: string): NamedReference {
  const ref = parseAnyReference(input)
  if (ref.kind !== 'named') throw new Error(`${input} parsed as a digest`)
  return ref
}

describe('parseAnyReference (distribution/reference)', () => {
  it('treats 64 hex characters and full digests as image IDs', () => {
    expect(parseAnyReference(HEX)).toEqual({ kind: 'digest', digest: DIGEST })
    expect(parseAnyReference(DIGEST)).toEqual({ kind: 'digest', digest: DIGEST })
  })

  it.each([
    ['nginx', 'docker.io', 'library/nginx', undefined],
    ['nginx:latest', 'docker.io', 'library/nginx', 'latest'],
    ['docker.io/library/nginx:latest', 'docker.io', 'library/nginx', 'latest'],
    ['docker.io/nginx', 'docker.io', 'library/nginx', undefined],
    ['index.docker.io/library/nginx:1.25', 'docker.io', 'library/nginx', '1.25'],
    ['index.docker.io/nginx', 'docker.io', 'library/nginx', undefined],
    ['user/app:1', 'docker.io', 'user/app', '1'],
    ['ghcr.io/org/app:1', 'ghcr.io', 'org/app', '1'],
    ['localhost/app', 'localhost', 'app', undefined],
    ['localhost:5000/team/app:1', 'localhost:5000', 'team/app', '1'],
    ['registry.example.com:5000/team/app', 'registry.example.com:5000', 'team/app', undefined],
    ['Registry/app', 'Registry', 'app', undefined],
    ['[::1]:5000/app:v2', '[::1]:5000', 'app', 'v2'],
    ['abc123', 'docker.io', 'library/abc123', undefined],
    ['sha256:45e9', 'docker.io', 'library/sha256', '45e9']
  ])('normalizes %s', (input, domain, path, tag) => {
    const ref = named(input)
    expect([ref.domain, ref.path, ref.tag]).toEqual([domain, path, tag])
  })

  it('keeps a digest next to a name', () => {
    expect(named(`nginx:1.25@${DIGEST}`)).toEqual({ kind: 'named', domain: 'docker.io', path: 'library/nginx', tag: '1.25', digest: DIGEST })
  })

  it.each([
    ['', 'empty reference'],
    ['Nginx', 'must be lowercase'],
    ['user/App', 'must be lowercase'],
    ['nginx:', 'invalid reference format'],
    ['-nginx', 'invalid reference format'],
    ['nginx@sha256:1234', 'invalid reference format'],
    [`nginx@sha256:${'a'.repeat(32)}`, 'digest invalid length'],
    [`nginx@sha256:${'G'.repeat(64)}`, 'invalid reference format'],
    [`nginx@md5:${'a'.repeat(32)}`, 'digest unsupported'],
    ['a'.repeat(256), 'longer than 255'],
    [`x${'a'.repeat(5000)}`, 'too long']
  ])('rejects %j with one line', (input, why) => {
    let error: unknown
    try { parseAnyReference(input) } catch (err) { error = err }
    expect(error).toBeInstanceOf(CliError)
    expect((error as Error).message).toContain(why)
    expect((error as Error).message).not.toContain('\n')
  })
})

describe('familiar forms and reference-store keys', () => {
  it.each([
    ['docker.io/library/nginx:latest', 'nginx', 'nginx:latest'],
    ['user/app:1', 'user/app', 'user/app:1'],
    ['docker.io/library/team/app:1', 'library/team/app', 'library/team/app:1'],
    ['ghcr.io/org/app:1', 'ghcr.io/org/app', 'ghcr.io/org/app:1']
  ])('%s → %s / %s', (input, name, text) => {
    expect(familiarName(named(input))).toBe(name)
    expect(familiarString(named(input))).toBe(text)
  })

  it('adds :latest to a bare name and prefers the digest over a tag', () => {
    expect(refStoreKey(named('nginx'))).toEqual({ repository: 'nginx', key: 'nginx:latest' })
    expect(refStoreKey(named(`docker.io/library/nginx:1.25@${DIGEST}`))).toEqual({ repository: 'nginx', key: `nginx@${DIGEST}` })
  })
})

describe('digestProblem (go-digest Validate)', () => {
  it('classifies like go-digest', () => {
    expect(digestProblem(DIGEST)).toBeUndefined()
    expect(digestProblem('45e9')).toBe('invalid-format')
    expect(digestProblem('sha256:45e9')).toBe('invalid-length')
    expect(digestProblem(`sha256:${'Z'.repeat(64)}`)).toBe('invalid-format')
    expect(digestProblem('foo:abc')).toBe('unsupported')
    expect(digestProblem('sha256:')).toBe('invalid-format')
  })
})
