import { mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync, renameSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CliError } from '../cli/errors'
import { DB_ID, EMPTY_CONTAINER_ID, ambiguousPair, BROKEN_CONTAINER_ID, DEEP_LAYERS, GONE, HOSTILE, NAMED_IMAGES, ORPHAN_ID, REGISTRY_DIGEST, SCRATCHY, chainOf, fixtureSet, topChain, writeFixture, L1 } from './fixture'
import { imageIdOf } from './fixture-model'
import { resolve } from './resolve'

// Values of docker-fixture-notes.md, written out so the fixture is checked too.
const C1 = 'aad9b10fd6645ec91723233a237a1b8d1b652f947dbd93c655cbfc9cdedbe5d9'
const C2 = '0d268c9dc5270ed19f199c26e4e0d95e9c9d9699263aee894843bc8fca134673'
const C3 = '78d3866f54b2b416ad5567134c7f3189b661dab542917a1ebfdb0fbe89b72a47'
const C4 = '86a7f9bd60b1df7fc799b1a3f0006d72f49163cfd3f38051c565b0216fa6dd18'
const CID = '5d3edf8fd353db10eb96272597712a8f20f4cabeb094c0740547357f86152f63'
const M = '7518056fea3709f00609f896954dbe47d2b5d8ac39366d45770caa7a9d3247b3'
const NGINX_ID = 'sha256:45e956dd474b25999763b7ca198611480d0dd8e707b5b293fc6bdc1dae2049ea'
const MYAPP_ID = 'sha256:2f9acc7740378eb7fb9e4abc5e2525c3f6ed5650a37bc570f5b16691c4008b22'
const REPO_DIGEST = 'sha256:0a15593ba60f78d3e3bb0aae17da5c16e5c80f84fb96a285ee7ad4897bf46f1d'
const CHAIN2 = 'sha256:7c1d6339ab5385c7f7f4d9059d63813e96e7855220f05e36063f8e28350cc7b8'
const NGINX_REFS = ['nginx:latest', `nginx@${REPO_DIGEST}`]

const parent = mkdtempSync(join(tmpdir(), 'ovlfs-resolve-'))
const fixtures = fixtureSet(parent)
afterAll(() => rmSync(parent, { recursive: true, force: true }))

/** A private copy of a variant a test may damage. */
let scratchCount = 0
function scratch (variant: Parameters<typeof fixtures>[0] = 'base'): string {
  const root = join(parent, `scratch-${scratchCount++}`)
  writeFixture(root, variant)
  return root
}

const diffs = (root: string, ...ids: string[]): string[] => ids.map((id) => join(root, 'overlay2', id, 'diff'))

/** The one-line CliError `promise` rejects with. */
async function failure (promise: Promise<unknown>): Promise<string> {
  let error: unknown
  try { await promise } catch (err) { error = err }
  expect(error).toBeInstanceOf(CliError)
  const message = (error as CliError).message
  expect(message).not.toMatch(/[\n\r]/)
  expect((error as CliError).exitCode).toBe(1)
  return message
}

describe('expected results of the notes (base)', () => {
  const root = fixtures('base')

  it.each([
    'nginx:latest', 'docker.io/library/nginx:latest', 'index.docker.io/library/nginx:latest', 'nginx', `nginx@${REPO_DIGEST}`,
    `nginx:latest@${REPO_DIGEST}`, '45e956dd', 'sha256:45e9', NGINX_ID.slice(7), NGINX_ID, '45e'
  ])('%s → nginx:latest', async (ref) => {
    const stack = await resolve(root, ref)
    expect(stack.kind).toBe('image')
    expect(stack.driver).toBe('overlay2')
    expect(stack.lowerdirs).toEqual(diffs(root, C3, C2, C1))
    expect(stack.image).toEqual({ id: NGINX_ID, refs: NGINX_REFS })
    expect(stack.upperdir).toBeUndefined()
    expect(stack.container).toBeUndefined()
  })

  it.each(['myapp:1.0', '2f9a', MYAPP_ID.slice(7), MYAPP_ID])('%s → myapp:1.0', async (ref) => {
    const stack = await resolve(root, ref)
    expect(stack.lowerdirs).toEqual(diffs(root, C4, C3, C2, C1))
    expect(stack.image).toEqual({ id: MYAPP_ID, refs: ['myapp:1.0'] })
    expect(stack.layers).toEqual([
      { chainId: 'sha256:b1680d394125acc1c285f121f74bff3bede699694c5106db13644478f6d4e319', diffId: 'sha256:3c14f8c78e1f4c1aacd98b53d0431786205b57fd3a39bfce015def6756d51426', cacheId: C4, size: 2048, createdBy: '' },
      { chainId: 'sha256:cfe7832658f365d7c801e129bf863f77d0fb4f58a661e829d071d1cce3b60699', diffId: 'sha256:84647e3068feacc72f3645da3f4d71b44440d8d92d1e9d3c093a9c9d9b3dd908', cacheId: C3, size: 1024, createdBy: '' },
      { chainId: CHAIN2, diffId: 'sha256:d8c4e306bcdf3ca401cee602e5a011de65451c3a6bd2a17fcc8e1602aedc9ade', cacheId: C2, size: 512, createdBy: '' },
      { chainId: 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d', diffId: 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d', cacheId: C1, size: 7340032, createdBy: '' }
    ])
  })

  it.each(['myapp', 'nginx:1.0', `nginx@sha256:${'0'.repeat(64)}`, 'f'.repeat(64), `sha256:${'f'.repeat(64)}`, 'ffff', 'sha256:ffff'])('%s → not found', async (ref) => {
    expect(await failure(resolve(root, ref))).toBe(`no such image or container: ${JSON.stringify(ref)} (data root ${root})`)
  })

  it('rejects invalid references before any ID search', async () => {
    expect(await failure(resolve(root, 'NGINX'))).toContain('must be lowercase')
    expect(await failure(resolve(root, ''))).toContain('empty reference')
  })

  it.each(['5d3e', 'web', '/web', CID])('container %s → its own upper/work over init and the image', async (ref) => {
    const stack = await resolve(root, ref)
    expect(stack.kind).toBe('container')
    expect(stack.upperdir).toBe(join(root, 'overlay2', M, 'diff'))
    expect(stack.workdir).toBe(join(root, 'overlay2', M, 'work'))
    expect(stack.lowerdirs).toEqual(diffs(root, `${M}-init`, C4, C3, C2, C1))
    expect(stack.container).toEqual({ id: CID, name: 'web', mountId: M, initId: `${M}-init`, running: false })
    expect(stack.image).toEqual({ id: MYAPP_ID, refs: ['myapp:1.0'] })
    expect(stack.layers.map((l) => l.cacheId)).toEqual([C4, C3, C2, C1])
  })

  it('the container stack equals <mount-id>/lower resolved through l/', async () => {
    const H = join(root, 'overlay2')
    const viaLower = readFileSync(join(H, M, 'lower'), 'utf8').split(':').map((entry) => join(H, 'l', readlinkSync(join(H, entry))))
    expect((await resolve(root, 'web')).lowerdirs).toEqual(viaLower)
  })

  it('matches history to layers around empty_layer entries (tools:2.1)', async () => {
    const stack = await resolve(root, 'tools:2.1')
    expect(stack.layers.map((l) => [l.createdBy, l.size])).toEqual([
      ['COPY tool /usr/local/bin/tool # buildkit', 12345],
      ['/bin/sh -c #(nop) WORKDIR /srv', 0],
      ['RUN /bin/sh -c apk add --no-cache curl # buildkit', 3100000],
      ['/bin/sh -c #(nop) ADD file:4b1b2c3d in / ', 7340032]
    ])
    // A pulled empty-tar layer is a normal layer with its own chain and cache dir.
    expect(stack.layers[1]?.diffId).toBe('sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef')
    expect(stack.lowerdirs).toHaveLength(4)
    expect(stack.lowerdirs[3]).toBe(join(root, 'overlay2', C1, 'diff'))
  })

  it('returns absolute paths even for a relative data root', async () => {
    const stack = await resolve(relative(process.cwd(), join(root, '..', 'base', '.')), 'nginx')
    expect(stack.lowerdirs).toEqual(diffs(root, C3, C2, C1))
  })
})

describe('variants that resolve like the base', () => {
  it.each(['legacy', 'noisy', 'removing', 'running'] as const)('%s', async (variant) => {
    const root = fixtures(variant)
    expect((await resolve(root, 'nginx')).lowerdirs).toEqual(diffs(root, C3, C2, C1))
    const web = await resolve(root, 'web')
    expect(web.lowerdirs).toEqual(diffs(root, `${M}-init`, C4, C3, C2, C1))
    expect(web.upperdir).toBe(join(root, 'overlay2', M, 'diff'))
  })

  it('fuse-overlayfs uses the overlay2 layout in its own home', async () => {
    const root = fixtures('fuse-overlayfs')
    const stack = await resolve(root, 'web')
    expect(stack.driver).toBe('fuse-overlayfs')
    expect(stack.lowerdirs).toEqual([`${M}-init`, C4, C3, C2, C1].map((id) => join(root, 'fuse-overlayfs', id, 'diff')))
    expect(stack.workdir).toBe(join(root, 'fuse-overlayfs', M, 'work'))
  })

  it('removal leftovers and orphans appear nowhere', async () => {
    const root = fixtures('removing')
    const all = [...(await resolve(root, 'nginx')).lowerdirs, ...(await resolve(root, 'tools:2.1')).lowerdirs]
    expect(all.some((dir) => dir.includes(ORPHAN_ID))).toBe(false)
    const message = await failure(resolve(root, 'gone:1'))
    expect(message).toMatch(new RegExp(`layerdb/sha256/${topChain(GONE).slice(7)}: layer ${topChain(GONE)} is not in the layer store: does not exist$`))
  })
})

describe('running containers', () => {
  const root = fixtures('running')
  it('are running when <mount-id>/merged is a mount point', async () => {
    const mountinfo = join(parent, 'mountinfo')
    const merged = join(root, 'overlay2', M, 'merged').replace(/ /g, '\\040')
    writeFileSync(mountinfo, `22 1 0:21 / / rw - ext4 /dev/vda rw\n1234 22 0:99 / ${merged} rw,relatime - overlay overlay rw,lowerdir=x\n`)
    expect((await resolve(root, 'web', { mountinfo })).container?.running).toBe(true)
  })
  it('are not running when merged/ is a stale directory', async () => {
    expect((await resolve(root, 'web')).container?.running).toBe(false)
  })
})

describe('edge variants', () => {
  it('missing cache-id: every stack through that layer fails, naming the file', async () => {
    const root = fixtures('missing-cache-id')
    const file = join(root, 'image', 'overlay2', 'layerdb', 'sha256', CHAIN2.slice(7), 'cache-id')
    for (const ref of ['nginx', 'myapp:1.0', 'web', 'tools:2.1']) {
      if (ref === 'tools:2.1') {
        expect((await resolve(root, ref)).lowerdirs).toHaveLength(4)
        continue
      }
      expect(await failure(resolve(root, ref))).toMatch(new RegExp(`^${file}: does not exist: layer ${CHAIN2} has no graph-driver directory`))
    }
  })

  it('size with a trailing newline fails as in the daemon', async () => {
    const root = fixtures('noisy-size')
    const file = join(root, 'image', 'overlay2', 'layerdb', 'sha256', CHAIN2.slice(7), 'size')
    expect(await failure(resolve(root, 'nginx'))).toMatch(new RegExp(`^${file}: invalid size value "512\\\\n"`))
  })

  it('ambiguous image prefixes list the candidates; longer ones resolve', async () => {
    const root = fixtures('ambiguous')
    const [a, b] = ambiguousPair().map(imageIdOf) as [string, string]
    let common = 0
    while (a[7 + common] === b[7 + common]) common++
    expect(common).toBeGreaterThanOrEqual(4)
    const prefix = a.slice(7, 7 + common)
    expect(await failure(resolve(root, prefix))).toBe(`ambiguous image ID prefix "${prefix}": matches ${a.slice(7, 19)} (amb:1), ${b.slice(7, 19)} (amb:2)`)
    expect(await failure(resolve(root, `sha256:${prefix}`))).toContain('ambiguous image ID prefix')
    expect((await resolve(root, a.slice(7, 8 + common))).image.id).toBe(a)
    expect((await resolve(root, b.slice(7, 8 + common))).image.id).toBe(b)
    expect((await resolve(root, 'amb:2')).lowerdirs).toEqual(diffs(root, C3, C2, C1))
  })

  it('ambiguous container prefixes list the candidates; names and longer prefixes resolve', async () => {
    const root = fixtures('ambiguous')
    expect(await failure(resolve(root, '5d3e'))).toBe(`ambiguous container ID prefix "5d3e": matches ${DB_ID.slice(0, 12)} (/db), 5d3edf8fd353 (/web)`)
    expect((await resolve(root, '5d3ed')).container?.name).toBe('web')
    const db = await resolve(root, 'db')
    expect(db.container?.id).toBe(DB_ID)
    expect(db.lowerdirs.slice(1)).toEqual(diffs(root, C3, C2, C1))
    expect(db.image.id).toBe(NGINX_ID)
  })

  it('zero-layer image: no lowerdirs; its container stacks its init layer only', async () => {
    const root = fixtures('zero-layer')
    const image = await resolve(root, 'scratchy:1')
    expect(image).toMatchObject({ kind: 'image', lowerdirs: [], layers: [], image: { id: imageIdOf(SCRATCHY), refs: ['scratchy:1'] } })
    const container = await resolve(root, 'empty')
    const mountId = container.container?.mountId ?? ''
    expect(container.container?.id).toBe(EMPTY_CONTAINER_ID)
    expect(container.lowerdirs).toEqual(diffs(root, `${mountId}-init`))
    expect(container.upperdir).toBe(join(root, 'overlay2', mountId, 'diff'))
    expect(container.layers).toEqual([])
  })

  it('name normalisation, single-layer and digest-only images', async () => {
    const root = fixtures('names')
    const ids = Object.fromEntries(Object.entries(NAMED_IMAGES).map(([k, v]) => [k, imageIdOf(v)]))
    expect(await resolve(root, 'ghcr.io/org/app:1')).toMatchObject({ lowerdirs: diffs(root, C1), image: { id: ids.ghcr, refs: ['ghcr.io/org/app:1'] } })
    for (const ref of ['user/app:1', 'docker.io/user/app:1', 'index.docker.io/user/app:1']) {
      expect(await resolve(root, ref)).toMatchObject({ lowerdirs: diffs(root, C2, C1), image: { id: ids.user } })
    }
    expect((await resolve(root, 'localhost:5000/team/app:1')).image.id).toBe(ids.localhost)
    const byDigest = await resolve(root, `registry.example.com:5000/team/app@${REGISTRY_DIGEST}`)
    expect(byDigest.image).toEqual({ id: ids.registry, refs: [`registry.example.com:5000/team/app@${REGISTRY_DIGEST}`] })
    expect(await failure(resolve(root, 'registry.example.com:5000/team/app'))).toContain('no such image or container')
    expect(await failure(resolve(root, 'ghcr.io/org/app'))).toContain('no such image or container')
  })

  it('deep chains: 80 layers resolve in order, 126 exceed the layer store limit', async () => {
    const root = fixtures('deep')
    const deep = await resolve(root, 'deep:80')
    expect(deep.lowerdirs).toEqual(DEEP_LAYERS.slice(0, 80).reverse().map((l) => join(root, 'overlay2', l.cacheId, 'diff')))
    expect(deep.lowerdirs.join(':').length).toBeGreaterThan(4095)
    const message = await failure(resolve(root, 'deep:126'))
    expect(message).toBe(`${join(root, 'image', 'overlay2', 'layerdb', 'sha256', chainOf(DEEP_LAYERS).slice(7))}: chain is deeper than 125 layers (the layer store's limit)`)
  })
})

describe('hostile data roots: one line naming the file, never a path outside', () => {
  const root = fixtures('hostile')
  const H = join(root, 'overlay2')
  const layerdb = (image: typeof L1[] , file: string): string => join(root, 'image', 'overlay2', 'layerdb', 'sha256', chainOf(image).slice(7), file)
  const cache = (image: { layers: typeof L1[] }, i: number): string => image.layers[i]?.cacheId ?? ''
  const content = (id: string): string => join(root, 'image', 'overlay2', 'imagedb', 'content', 'sha256', id.slice(7))

  it.each([
    ['evil-cache:1', () => `${layerdb(HOSTILE.evilCache.layers, 'cache-id')}: unsafe cache id "../../../../../../etc" (empty, or contains '/', '..' or control characters)`],
    ['evil-link:1', () => `${join(H, 'l', HOSTILE.linkRelative.layers[1]?.link ?? '')}: symlink points to "../../containers", outside ${H}`],
    ['evil-link:2', () => `${join(H, 'l', HOSTILE.linkAbsolute.layers[1]?.link ?? '')}: symlink points to "/etc", outside ${H}`],
    ['evil-lower:1', () => `${join(H, cache(HOSTILE.evilLower, 2), 'lower')}: entry "l/../../../../etc" is not of the form l/<link id> (contains '/', '..' or whitespace)`],
    ['evil-diff:1', () => `${join(H, cache(HOSTILE.evilDiff, 1), 'diff')}: diff dir of layer ${cache(HOSTILE.evilDiff, 1)} resolves to /etc, outside ${H}`],
    ['nodiff:1', () => `${join(H, cache(HOSTILE.noDiff, 1), 'diff')}: diff dir of layer ${cache(HOSTILE.noDiff, 1)} does not exist`],
    ['unreadable:1', () => `${layerdb(HOSTILE.unreadable.layers, 'cache-id')}: is not a regular file`],
    ['fifo:1', () => `${layerdb(HOSTILE.fifo.layers, 'diff')}: is not a regular file`],
    ['badsize:1', () => `${layerdb(HOSTILE.badSize.layers, 'size')}: invalid size value "4096\\n" (a decimal integer without whitespace; the daemon does not trim this file)`],
    ['corrupt:1', () => `${content(imageIdOf(HOSTILE.corrupt))}: corrupt JSON (Unexpected end of JSON input)`],
    ['norootfs:1', () => `${content(imageIdOf(HOSTILE.noRootfs))}: invalid image config: no "rootfs" key`]
  ])('%s', async (ref, expected) => {
    expect(await failure(resolve(root, ref))).toBe(expected())
  })

  it('digest mismatch', async () => {
    const id = imageIdOf(HOSTILE.mismatch)
    expect(await failure(resolve(root, 'mismatch:1'))).toMatch(new RegExp(`^${content(id)}: digest mismatch: content hashes to sha256:[0-9a-f]{64}, expected ${id}$`))
  })

  it('a diff file that does not match its chain ID', async () => {
    expect(await failure(resolve(root, 'baddiff:1'))).toMatch(new RegExp(`^${layerdb(HOSTILE.badDiff.layers, 'diff')}: diff sha256:3c14.* on parent ${L1.diffId} gives chain ID sha256:[0-9a-f]{64}, not ${chainOf(HOSTILE.badDiff.layers)}$`))
  })

  it('containers with corrupt configs or hostile mount IDs', async () => {
    expect(await failure(resolve(root, BROKEN_CONTAINER_ID))).toMatch(new RegExp(`^${join(root, 'containers', BROKEN_CONTAINER_ID, 'config.v2.json')}: corrupt JSON`))
    const byName = await failure(resolve(root, 'broken'))
    expect(byName).toMatch(/^no such image or container: "broken" .*; 1 container config\(s\) could not be read, first: .*config\.v2\.json: corrupt JSON/)
    expect(await failure(resolve(root, 'evilmount'))).toMatch(/layerdb\/mounts\/[0-9a-f]{64}\/mount-id: invalid mount id value "..\/..\/..\/..\/etc"/)
  })

  it('healthy images and containers beside the hostile ones still resolve', async () => {
    expect((await resolve(root, 'web')).lowerdirs).toEqual(diffs(root, `${M}-init`, C4, C3, C2, C1))
  })

  it('a corrupt repositories.json names itself', async () => {
    const r = fixtures('corrupt-repositories')
    expect(await failure(resolve(r, 'nginx'))).toMatch(new RegExp(`^${join(r, 'image', 'overlay2', 'repositories.json')}: corrupt JSON \\(`))
  })
})

describe('damaged copies of the base', () => {
  it('a lower file that disagrees with the layer database', async () => {
    const root = scratch()
    const lower = join(root, 'overlay2', M, 'lower')
    const entries = readFileSync(lower, 'utf8').split(':')
    writeFileSync(lower, [entries[0], entries[2], entries[1], ...entries.slice(3)].join(':'))
    expect(await failure(resolve(root, 'web'))).toBe(`${lower}: entry 2 is ${join(root, 'overlay2', C3, 'diff')}, but the layer database gives ${join(root, 'overlay2', C4, 'diff')}`)
    writeFileSync(lower, entries.slice(0, 2).join(':'))
    expect(await failure(resolve(root, 'web'))).toBe(`${lower}: lists 2 layer(s), but the layer database puts 5 below ${M}`)
    writeFileSync(lower, `${entries.join(':')}\n`)
    // The daemon does not trim lower files: the last entry names a link that does not exist.
    expect(await failure(resolve(root, 'web'))).toBe(`${lower}: entry "l/LMOJIZ57BBWBZ4RNKCFOAUD556\\n" is not of the form l/<link id> (contains '/', '..' or whitespace)`)
  })

  it('missing lower file, dangling link, a link that is no symlink, an over-long lower file', async () => {
    const root = scratch()
    const H = join(root, 'overlay2')
    rmSync(join(H, C4, 'lower'))
    expect(await failure(resolve(root, 'myapp:1.0'))).toBe(`${join(H, C4, 'diff')}: has no record of the 3 layer(s) the layer database puts below ${C4}`)
    unlinkSync(join(H, 'l', 'GNAPPBG4BYLODTAW54HGQDJPXC'))
    expect(await failure(resolve(root, 'nginx'))).toBe(`${join(H, 'l', 'GNAPPBG4BYLODTAW54HGQDJPXC')}: does not exist`)
    writeFileSync(join(H, 'l', 'GNAPPBG4BYLODTAW54HGQDJPXC'), 'not a link')
    expect(await failure(resolve(root, 'nginx'))).toBe(`${join(H, 'l', 'GNAPPBG4BYLODTAW54HGQDJPXC')}: is not a symbolic link`)
    writeFileSync(join(H, C3, 'lower'), Array.from({ length: 129 }, () => 'l/GNAPPBG4BYLODTAW54HGQDJPXC').join(':'))
    expect(await failure(resolve(root, 'nginx'))).toBe(`${join(H, C3, 'lower')}: lists 129 entries, more than overlay2's maximum of 128`)
  })

  it('a container work dir that is missing', async () => {
    const root = scratch()
    rmSync(join(root, 'overlay2', M, 'work'), { recursive: true })
    expect(await failure(resolve(root, 'web'))).toBe(`${join(root, 'overlay2', M, 'work')}: container work dir does not exist`)
  })

  it('a container whose mount parent disagrees with its image, or made by another driver', async () => {
    const root = scratch()
    const config = join(root, 'containers', CID, 'config.v2.json')
    const original = readFileSync(config, 'utf8')
    writeFileSync(config, original.replace(MYAPP_ID, NGINX_ID))
    expect(await failure(resolve(root, 'web'))).toMatch(new RegExp(`^${join(root, 'image', 'overlay2', 'layerdb', 'mounts', CID, 'parent')}: names top layer sha256:b168.*, but image ${NGINX_ID} ends with chain ID sha256:cfe7`))
    writeFileSync(config, original.replace('"Driver":"overlay2"', '"Driver":"overlayfs"'))
    expect(await failure(resolve(root, 'web'))).toBe(`${config}: the container was created with the containerd snapshotter "overlayfs" (containerd image store, not supported yet), but this data root uses overlay2`)
    writeFileSync(config, original.replace(`"ID":"${CID}"`, '"ID":"abc"'))
    expect(await failure(resolve(root, CID))).toBe(`${config}: "ID" is "abc", not the directory name ${CID}`)
  })

  it('a reference to a missing config, and a hostile repositories.json value', async () => {
    const root = scratch()
    const content = join(root, 'image', 'overlay2', 'imagedb', 'content', 'sha256')
    renameSync(join(content, MYAPP_ID.slice(7)), join(root, 'moved'))
    expect(await failure(resolve(root, 'myapp:1.0'))).toBe(`${join(content, MYAPP_ID.slice(7))}: does not exist, though ${join(root, 'image', 'overlay2', 'repositories.json')} maps "myapp:1.0" to ${MYAPP_ID}`)
    writeFileSync(join(root, 'image', 'overlay2', 'repositories.json'), '{"Repositories":{"x":{"x:latest":"sha256:../../../etc/passwd"},"y":{"y:latest":7}}}')
    expect(await failure(resolve(root, 'x'))).toBe(`${join(root, 'image', 'overlay2', 'repositories.json')}: "y:latest" maps to a number, not an image ID string`)
    writeFileSync(join(root, 'image', 'overlay2', 'repositories.json'), '{"Repositories":{"x":{"x:latest":"sha256:../../../etc/passwd"}}}')
    expect(await failure(resolve(root, 'x'))).toBe(`${join(root, 'image', 'overlay2', 'repositories.json')}: "x:latest" maps to "sha256:../../../etc/passwd", not a sha256 image ID`)
  })

  it('a driver home or diff dir symlinked out of the data root', async () => {
    const root = scratch()
    const outside = mkdtempSync(join(tmpdir(), 'ovlfs-outside-'))
    try {
      renameSync(join(root, 'overlay2'), join(outside, 'overlay2'))
      symlinkSync(join(outside, 'overlay2'), join(root, 'overlay2'))
      expect(await failure(resolve(root, 'nginx'))).toBe(`${join(root, 'overlay2')}: resolves to ${join(outside, 'overlay2')}, outside the data root`)
    } finally {
      rmSync(outside, { recursive: true, force: true })
    }
  })
})

describe('other drivers', () => {
  it('vfs: one full tree per layer; a container is its own directory', async () => {
    const root = fixtures('vfs')
    const image = await resolve(root, 'myapp:1.0')
    expect(image.driver).toBe('vfs')
    expect(image.lowerdirs).toEqual([join(root, 'vfs', 'dir', C4)])
    expect(image.layers.map((l) => l.cacheId)).toEqual([C4, C3, C2, C1])
    const web = await resolve(root, 'web')
    expect(web.lowerdirs).toEqual([join(root, 'vfs', 'dir', M)])
    expect(web.upperdir).toBeUndefined()
    expect(web.workdir).toBeUndefined()
  })

  it('aufs: diff dirs stacked per aufs/layers, the container diff as its writable branch', async () => {
    const root = fixtures('aufs')
    const aufs = (...ids: string[]): string[] => ids.map((id) => join(root, 'aufs', 'diff', id))
    expect((await resolve(root, 'nginx')).lowerdirs).toEqual(aufs(C3, C2, C1))
    const web = await resolve(root, 'web')
    expect(web.lowerdirs).toEqual(aufs(`${M}-init`, C4, C3, C2, C1))
    expect(web.upperdir).toBe(join(root, 'aufs', 'diff', M))
    expect(web.workdir).toBeUndefined()
  })

  it('aufs: a layers file that disagrees is reported', async () => {
    const root = scratch('aufs')
    writeFileSync(join(root, 'aufs', 'layers', C3), `${C1}\n`)
    expect(await failure(resolve(root, 'nginx'))).toBe(`${join(root, 'aufs', 'layers', C3)}: lists 1 layer(s), but the layer database puts 2 below ${C3}`)
  })

  it.each([
    ['devicemapper', /: the data root uses the devicemapper storage driver: every layer and container is a thin-provisioned snapshot block device/],
    ['btrfs', /: the data root uses the btrfs storage driver: every layer is a btrfs subvolume snapshot holding the complete filesystem/],
    ['zfs', /: the data root uses the zfs storage driver: every layer is a ZFS dataset/],
    ['containerd', /: the data root uses the containerd image store \(the default for new installs since Docker 29\)/],
    ['multi-driver', /: several storage drivers hold data \(aufs, overlay2\)/]
  ] as const)('%s is refused with an explanation', async (variant, pattern) => {
    const root = fixtures(variant)
    for (const ref of ['nginx', 'web']) {
      const message = await failure(resolve(root, ref))
      expect(message.startsWith(`${root}: `)).toBe(true)
      expect(message).toMatch(pattern)
    }
  })

  it('a directory that is no data root, or none at all', async () => {
    const empty = mkdtempSync(join(parent, 'empty-'))
    expect(await failure(resolve(empty, 'nginx'))).toMatch(/is not a Docker data root with a graph-driver image store/)
    expect(await failure(resolve(join(empty, 'nope'), 'nginx'))).toBe(`${join(empty, 'nope')}: is not a directory (expected a Docker data root such as /var/lib/docker)`)
    mkdirSync(join(empty, '100000.100000', 'image'), { recursive: true })
    expect(await failure(resolve(empty, 'nginx'))).toContain(`try --docker-root ${join(empty, '100000.100000')}`)
  })
})
