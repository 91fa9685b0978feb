import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterAll, describe, expect, it } from 'vitest'
import { FIXTURE_VARIANTS, fixtureSet, writeFixture } from './fixture'
import { seedId, seedLink } from './fixture-model'

// docker-fixture-notes.md, "Values" and "File-by-file".
const C = {
  C1: 'aad9b10fd6645ec91723233a237a1b8d1b652f947dbd93c655cbfc9cdedbe5d9',
  C2: '0d268c9dc5270ed19f199c26e4e0d95e9c9d9699263aee894843bc8fca134673',
  C3: '78d3866f54b2b416ad5567134c7f3189b661dab542917a1ebfdb0fbe89b72a47',
  C4: '86a7f9bd60b1df7fc799b1a3f0006d72f49163cfd3f38051c565b0216fa6dd18'
}
const M = '7518056fea3709f00609f896954dbe47d2b5d8ac39366d45770caa7a9d3247b3'
const MI = `${M}-init`
const CID = '5d3edf8fd353db10eb96272597712a8f20f4cabeb094c0740547357f86152f63'
const LINKS = { C1: 'LMOJIZ57BBWBZ4RNKCFOAUD556', C2: 'GNAPPBG4BYLODTAW54HGQDJPXC', C3: '76Y5PGLLTRICU7ZBEI2NJDUIZZ', C4: 'QMAOXYJZVILXFLR2L7E6VZZRBR', MI: 'ZZUCUMO7HLUCIYFA6WM4PEOKHE', M: 'UBPVPNSADF2E72GK4Q3GZFV4KM' }
const diff = ['sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d', 'sha256:d8c4e306bcdf3ca401cee602e5a011de65451c3a6bd2a17fcc8e1602aedc9ade', 'sha256:84647e3068feacc72f3645da3f4d71b44440d8d92d1e9d3c093a9c9d9b3dd908', 'sha256:3c14f8c78e1f4c1aacd98b53d0431786205b57fd3a39bfce015def6756d51426']
const chain = [diff[0], 'sha256:7c1d6339ab5385c7f7f4d9059d63813e96e7855220f05e36063f8e28350cc7b8', 'sha256:cfe7832658f365d7c801e129bf863f77d0fb4f58a661e829d071d1cce3b60699', 'sha256:b1680d394125acc1c285f121f74bff3bede699694c5106db13644478f6d4e319'] as string[]
const NGINX_ID = '45e956dd474b25999763b7ca198611480d0dd8e707b5b293fc6bdc1dae2049ea'
const MYAPP_ID = '2f9acc7740378eb7fb9e4abc5e2525c3f6ed5650a37bc570f5b16691c4008b22'
const REPO_DIGEST = 'sha256:0a15593ba60f78d3e3bb0aae17da5c16e5c80f84fb96a285ee7ad4897bf46f1d'

const parent = mkdtempSync(join(tmpdir(), 'ovlfs-fixture-'))
const fixtures = fixtureSet(parent)
afterAll(() => rmSync(parent, { recursive: true, force: true }))

const read = (path: string): string => readFileSync(path, 'utf8')
const mode = (path: string): number => lstatSync(path).mode & 0o7777

describe('the base fixture is the worked example', () => {
  const R = fixtures('base')
  const I = join(R, 'image', 'overlay2')
  const H = join(R, 'overlay2')

  it('repositories.json', () => {
    expect(read(join(I, 'repositories.json'))).toBe(
      `{"Repositories":{"myapp":{"myapp:1.0":"sha256:${MYAPP_ID}"},"nginx":{"nginx:latest":"sha256:${NGINX_ID}","nginx@${REPO_DIGEST}":"sha256:${NGINX_ID}"},` +
      '"tools":{"tools:2.1":"sha256:e0836d054d1c367a537bedb570c48f8d60849111778101fc8ab2ab0d62ee3761"}}}')
    expect(mode(join(I, 'repositories.json'))).toBe(0o600)
  })

  it('image configs: exact bytes whose sha256 is the ID, and the metadata of the built image', () => {
    const content = join(I, 'imagedb', 'content', 'sha256')
    expect(read(join(content, MYAPP_ID))).toBe(`{"architecture":"amd64","config":{"Cmd":["/app"]},"os":"linux","rootfs":{"type":"layers","diff_ids":${JSON.stringify(diff)}}}`)
    expect(read(join(content, NGINX_ID))).toBe(`{"architecture":"amd64","config":{"Cmd":["nginx","-g","daemon off;"]},"os":"linux","rootfs":{"type":"layers","diff_ids":${JSON.stringify(diff.slice(0, 3))}}}`)
    for (const name of readdirSync(content)) {
      expect(createHash('sha256').update(readFileSync(join(content, name))).digest('hex')).toBe(name)
      expect(mode(join(content, name))).toBe(0o600)
    }
    const meta = join(I, 'imagedb', 'metadata', 'sha256')
    expect(read(join(meta, MYAPP_ID, 'parent'))).toBe(`sha256:${NGINX_ID}`)
    expect([...readFileSync(join(meta, MYAPP_ID, 'builtLocally'))]).toEqual([1])
    expect(existsSync(join(meta, NGINX_ID))).toBe(false)
  })

  it('layer DB: diff, parent, cache-id, size without newlines; tar-split is an empty gzip stream', () => {
    const sizes = ['7340032', '512', '1024', '2048']
    const caches = [C.C1, C.C2, C.C3, C.C4]
    chain.forEach((id, k) => {
      const dir = join(I, 'layerdb', 'sha256', id.slice(7))
      expect(read(join(dir, 'diff'))).toBe(diff[k])
      expect(read(join(dir, 'cache-id'))).toBe(caches[k])
      expect(read(join(dir, 'size'))).toBe(sizes[k])
      if (k === 0) expect(existsSync(join(dir, 'parent'))).toBe(false)
      else expect(read(join(dir, 'parent'))).toBe(chain[k - 1])
      expect(gunzipSync(readFileSync(join(dir, 'tar-split.json.gz')))).toHaveLength(0)
      expect(existsSync(join(dir, 'descriptor.json'))).toBe(false)
    })
    expect(readdirSync(join(I, 'layerdb', 'tmp'))).toEqual([])
    expect(mode(join(I, 'layerdb'))).toBe(0o700)
  })

  it('layer DB: the container mount', () => {
    const dir = join(I, 'layerdb', 'mounts', CID)
    expect(read(join(dir, 'mount-id'))).toBe(M)
    expect(read(join(dir, 'init-id'))).toBe(MI)
    expect(read(join(dir, 'parent'))).toBe(chain[3])
  })

  it('distribution metadata for the pulled layers only', () => {
    const byDiff = readdirSync(join(I, 'distribution', 'v2metadata-by-diffid', 'sha256'))
    expect(byDiff.sort()).toEqual(diff.slice(0, 3).map((d) => d.slice(7)).sort())
  })

  it('overlay2: l/ links, link and lower files, work dirs, committed markers', () => {
    const ids = { C1: C.C1, C2: C.C2, C3: C.C3, C4: C.C4, MI, M } as const
    for (const [key, id] of Object.entries(ids) as Array<[keyof typeof ids, string]>) {
      expect(readlinkSync(join(H, 'l', LINKS[key]))).toBe(`../${id}/diff`)
      expect(read(join(H, id, 'link'))).toBe(LINKS[key])
      expect(mode(join(H, id))).toBe(0o710)
      expect(mode(join(H, id, 'diff'))).toBe(0o755)
    }
    const lower = (...keys: Array<keyof typeof LINKS>): string => keys.map((k) => `l/${LINKS[k]}`).join(':')
    expect(existsSync(join(H, C.C1, 'lower'))).toBe(false)
    expect(existsSync(join(H, C.C1, 'work'))).toBe(false)
    expect(read(join(H, C.C2, 'lower'))).toBe(lower('C1'))
    expect(read(join(H, C.C3, 'lower'))).toBe(lower('C2', 'C1'))
    expect(read(join(H, C.C4, 'lower'))).toBe(lower('C3', 'C2', 'C1'))
    expect(read(join(H, MI, 'lower'))).toBe(lower('C4', 'C3', 'C2', 'C1'))
    expect(read(join(H, M, 'lower'))).toBe(lower('MI', 'C4', 'C3', 'C2', 'C1'))
    for (const id of [C.C1, C.C2, C.C3, C.C4, MI]) expect(mode(join(H, id, 'committed'))).toBe(0o600)
    expect(existsSync(join(H, M, 'committed'))).toBe(false)
    expect(readdirSync(join(H, M, 'work'))).toEqual([])
    expect(readdirSync(join(H, MI, 'work'))).toEqual(['work'])
    expect(existsSync(join(H, M, 'merged'))).toBe(false)
    expect(mode(H)).toBe(0o710)
    expect(mode(join(H, 'l'))).toBe(0o700)
  })

  it('layer content: whiteout char device 0/0, opaque xattr, init layer, container changes', () => {
    const whiteoutDev = lstatSync(join(H, C.C2, 'diff', 'usr', 'share', 'doc', 'a'))
    expect(whiteoutDev.isCharacterDevice()).toBe(true)
    expect(whiteoutDev.rdev).toBe(0)
    const opaqueValue = execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(H, C.C3, 'diff', 'var', 'cache', 'x')], { encoding: 'utf8' })
    expect(opaqueValue).toBe('y')
    expect(read(join(H, C.C3, 'diff', 'var', 'cache', 'x', 'new'))).toBe('new cache\n')
    expect(mode(join(H, C.C4, 'diff', 'app'))).toBe(0o755)
    expect(mode(join(H, C.C1, 'diff', 'tmp'))).toBe(0o1777)
    const init = join(H, MI, 'diff')
    for (const d of ['dev/pts', 'dev/shm', 'proc', 'sys', 'etc']) expect(lstatSync(join(init, d)).isDirectory()).toBe(true)
    for (const f of ['.dockerenv', 'dev/console', 'etc/hosts', 'etc/hostname', 'etc/resolv.conf']) expect(read(join(init, f))).toBe('')
    expect(readlinkSync(join(init, 'etc', 'mtab'))).toBe('/proc/mounts')
    expect(lstatSync(join(H, M, 'diff', 'etc', 'os-release')).isCharacterDevice()).toBe(true)
    expect(read(join(H, M, 'diff', 'tmp', 'written-by-container'))).toBe('hello\n')
  })

  it('containers/<id>/config.v2.json has the fields the notes list', () => {
    const config = JSON.parse(read(join(R, 'containers', CID, 'config.v2.json'))) as Record<string, unknown>
    expect(config).toMatchObject({ ID: CID, Name: '/web', Image: `sha256:${MYAPP_ID}`, Driver: 'overlay2', Config: { Image: 'myapp:1.0', Cmd: ['/app'] }, State: { Running: false } })
    expect(Object.keys(config)).toEqual(['ID', 'Created', 'Path', 'Args', 'Config', 'Image', 'Name', 'Driver', 'OS', 'ImagePlatform', 'State'])
    expect(existsSync(join(R, 'containers', CID, 'hostconfig.json'))).toBe(true)
  })

  it('derived IDs look like the daemon\'s', () => {
    expect(seedId('x')).toMatch(/^[0-9a-f]{64}$/)
    expect(seedId('x')).not.toMatch(/^[0-9]{12}/)
    expect(seedLink('x')).toMatch(/^[A-Z2-7]{26}$/)
  })
})

/** Path, type, mode, size, content hash, link target and mtime of everything under `root`. */
function snapshot (root: string): string[] {
  const out: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      const st = lstatSync(path)
      let detail = ''
      if (st.isSymbolicLink()) detail = readlinkSync(path)
      else if (st.isFile()) detail = createHash('sha256').update(readFileSync(path)).digest('hex')
      else if (st.isCharacterDevice()) detail = `dev ${st.rdev}`
      out.push(`${relative(root, path)} ${st.mode.toString(8)} ${st.isDirectory() ? '-' : st.size} ${st.mtimeMs} ${detail}`)
      if (st.isDirectory()) walk(path)
    }
  }
  walk(root)
  return out
}

describe('the generator', () => {
  it('is deterministic', () => {
    const again = join(parent, 'again')
    writeFixture(again, 'base')
    expect(snapshot(again)).toEqual(snapshot(fixtures('base')))
  })

  it('writes every variant', () => {
    for (const variant of FIXTURE_VARIANTS) expect(readdirSync(fixtures(variant)).length).toBeGreaterThan(0)
  })

  it('the legacy variant has no committed files', () => {
    const H = join(fixtures('legacy'), 'overlay2')
    expect(readdirSync(H).filter((id) => existsSync(join(H, id, 'committed')))).toEqual([])
  })

  it('the aufs variant keeps literal whiteouts; vfs has flattened trees', () => {
    const aufs = join(fixtures('aufs'), 'aufs')
    expect(lstatSync(join(aufs, 'diff', C.C2, 'usr', 'share', 'doc', '.wh.a')).isFile()).toBe(true)
    expect(lstatSync(join(aufs, 'diff', C.C3, 'var', 'cache', 'x', '.wh..wh..opq')).isFile()).toBe(true)
    expect(read(join(aufs, 'layers', C.C3))).toBe(`${C.C2}\n${C.C1}\n`)
    expect(read(join(aufs, 'layers', C.C1))).toBe('')
    const vfs = join(fixtures('vfs'), 'vfs', 'dir')
    expect(existsSync(join(vfs, C.C3, 'usr', 'share', 'doc', 'a'))).toBe(false)
    expect(readdirSync(join(vfs, C.C3, 'var', 'cache', 'x'))).toEqual(['new'])
    expect(existsSync(join(vfs, M, 'etc', 'os-release'))).toBe(false)
    expect(existsSync(join(vfs, M, '.dockerenv'))).toBe(true)
  })

  it('refuses a non-empty target', () => {
    expect(() => writeFixture(fixtures('base'), 'base')).toThrow(/is not empty/)
  })
})
