import { execFileSync } from 'node:child_process'
import { appendFileSync, cpSync, existsSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hexOf, sha256Digest, type Digest } from './digest'
import {
  dir, EMPTY_TAR_DIFF_ID, file, imageConfig, imageIdOf, opaque, seedDigest, seedHex, seedId, seedLayer, seedLink,
  whiteout, WORKED, type FixtureContainer, type FixtureImage, type FixtureLayer, type FixtureModel
} from './fixture-model'
import { fixTimes, makeDir, topChainOf, writeFile, writeRoot, type FixtureDriver } from './fixture-write'
import { chainIds } from './layerdb'

/**
 * A deterministic Docker data root for tests (docker-fixture-notes.md):
 * `writeFixture(root, variant)` writes one variant into the empty or absent
 * directory `root`. 'base' is the worked example: nginx:latest (3 layers) and
 * myapp:1.0 built FROM it (+1), container /web from myapp:1.0, plus tools:2.1
 * with a realistic history. Each other variant is the base with one twist, or
 * another driver's layout of the same images. Needs root (mknod, trusted.* xattrs).
 */

export const FIXTURE_VARIANTS = [
  'base', 'legacy', 'noisy', 'noisy-size', 'missing-cache-id', 'ambiguous', 'zero-layer', 'removing', 'names',
  'deep', 'hostile', 'corrupt-repositories', 'running', 'fuse-overlayfs', 'vfs', 'aufs', 'devicemapper', 'btrfs',
  'zfs', 'containerd', 'multi-driver'
] as const

export type FixtureVariant = typeof FIXTURE_VARIANTS[number]

// ---------------------------------------------------------------------------
// the worked example

const worked = (diffId: string, cacheId: string, link: string, size: number, entries: FixtureLayer['entries']): FixtureLayer =>
  ({ diffId: diffId as Digest, cacheId, link, size, entries })

export const L1 = worked(WORKED.diff1, WORKED.C1, WORKED.links.C1, 7340032, [
  file('bin/sh', '#!fixture busybox\n', 0o755),
  file('etc/os-release', 'PRETTY_NAME="Fixture Linux 1.0"\nID=fixture\n'),
  file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n'),
  dir('root', 0o700),
  dir('tmp', 0o1777),
  file('usr/share/doc/a', 'doc a\n'),
  file('var/cache/x/old', 'old cache\n')
])
export const L2 = worked(WORKED.diff2, WORKED.C2, WORKED.links.C2, 512, [
  file('etc/nginx/nginx.conf', 'events {}\nhttp { server { listen 80; } }\n'),
  dir('usr'), dir('usr/share'), dir('usr/share/doc'),
  whiteout('usr/share/doc/a')
])
export const L3 = worked(WORKED.diff3, WORKED.C3, WORKED.links.C3, 1024, [
  dir('var'), dir('var/cache'),
  opaque('var/cache/x'),
  file('var/cache/x/new', 'new cache\n')
])
export const L4 = worked(WORKED.diff4, WORKED.C4, WORKED.links.C4, 2048, [
  file('app', '#!/bin/sh\necho app\n', 0o755)
])

export const NGINX: FixtureImage = {
  config: imageConfig({ config: { Cmd: ['nginx', '-g', 'daemon off;'] } }, [L1, L2, L3]),
  refs: ['nginx:latest', `nginx@${WORKED.nginxRepoDigest}`],
  layers: [L1, L2, L3],
  pulledFrom: 'nginx'
}
export const MYAPP: FixtureImage = {
  config: imageConfig({ config: { Cmd: ['/app'] } }, [L1, L2, L3, L4]),
  refs: ['myapp:1.0'],
  layers: [L1, L2, L3, L4],
  parent: NGINX
}

export const WEB: FixtureContainer = {
  id: WORKED.CID,
  name: '/web',
  image: MYAPP,
  imageRef: 'myapp:1.0',
  cmd: ['/app'],
  mountId: WORKED.M,
  link: WORKED.links.M,
  initLink: WORKED.links.MI,
  upper: [dir('etc'), whiteout('etc/os-release'), dir('tmp', 0o1777), file('tmp/written-by-container', 'hello\n')]
}

// tools:2.1 - FROM the same base, with empty_layer history entries and a
// pulled empty-tar layer (a real layer with its own chain and cache dir).
const L_CURL = seedLayer('tools-curl', [file('usr/bin/curl', 'curl\n', 0o755)], 3_100_000)
const L_EMPTY: FixtureLayer = { ...seedLayer('tools-workdir', [dir('srv')], 0), diffId: EMPTY_TAR_DIFF_ID }
const L_TOOL = seedLayer('tools-tool', [file('usr/local/bin/tool', 'tool\n', 0o755)], 12_345)

export const TOOLS_HISTORY = [
  { created: '2024-01-01T00:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:4b1b2c3d in / ' },
  { created: '2024-01-01T00:00:01Z', created_by: '/bin/sh -c #(nop)  CMD ["sh"]', empty_layer: true },
  { created: '2024-03-02T10:00:00Z', created_by: 'ENV PATH=/usr/local/bin:/usr/bin:/bin', comment: 'buildkit.dockerfile.v0', empty_layer: true },
  { created: '2024-03-02T10:00:05Z', created_by: 'RUN /bin/sh -c apk add --no-cache curl # buildkit', comment: 'buildkit.dockerfile.v0' },
  { created: '2024-03-02T10:00:06Z', created_by: '/bin/sh -c #(nop) WORKDIR /srv' },
  { created: '2024-03-02T10:00:07Z', created_by: 'COPY tool /usr/local/bin/tool # buildkit', comment: 'buildkit.dockerfile.v0' },
  { created: '2024-03-02T10:00:07Z', created_by: 'LABEL org.opencontainers.image.version=2.1', comment: 'buildkit.dockerfile.v0', empty_layer: true }
]
export const TOOLS: FixtureImage = {
  config: imageConfig({ config: { Cmd: ['sh'], Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], WorkingDir: '/srv' }, created: '2024-03-02T10:00:07Z', history: TOOLS_HISTORY }, [L1, L_CURL, L_EMPTY, L_TOOL]),
  refs: ['tools:2.1'],
  layers: [L1, L_CURL, L_EMPTY, L_TOOL]
}

function baseModel (): FixtureModel {
  return { images: [NGINX, MYAPP, TOOLS], containers: [WEB] }
}

/** A stopped container of `image` whose identities derive from `seed`. */
function seedContainer (seed: string, name: string, image: FixtureImage, imageRef: string, id = seedId(`container:${seed}`)): FixtureContainer {
  return {
    id,
    name,
    image,
    imageRef,
    cmd: ['/bin/sh'],
    mountId: seedId(`mount:${seed}`),
    link: seedLink(`mount:${seed}`),
    initLink: seedLink(`init:${seed}`),
    upper: []
  }
}

/** An image of `layers` whose config differs from others by `tag` in Cmd. */
function simpleImage (ref: string, layers: FixtureLayer[], extra: Partial<FixtureImage> = {}): FixtureImage {
  return { config: imageConfig({ config: { Cmd: [`/${ref}`] } }, layers), refs: [ref], layers, ...extra }
}

// ---------------------------------------------------------------------------
// paths into a written root (for the twists)

const layerdbFile = (root: string, chainId: Digest, name: string, driver = 'overlay2'): string =>
  join(root, 'image', driver, 'layerdb', 'sha256', hexOf(chainId), name)

export function topChain (image: FixtureImage): Digest {
  const top = topChainOf(image)
  if (top === undefined) throw new Error('fixture bug: image has no layers')
  return top
}

export function chainOf (layers: FixtureLayer[]): Digest {
  return chainIds(layers.map((l) => l.diffId)).at(-1) as Digest
}

// ---------------------------------------------------------------------------
// variants

/** Two image configs (same layers as nginx) whose IDs share their first 4 hex digits, found by brute force. */
export function ambiguousPair (): [FixtureImage, FixtureImage] {
  const seen = new Map<string, FixtureImage>()
  for (let n = 0; ; n++) {
    const image: FixtureImage = { config: imageConfig({ comment: String(n), config: { Cmd: ['/amb'] } }, [L1, L2, L3]), refs: [], layers: [L1, L2, L3] }
    const prefix = hexOf(imageIdOf(image)).slice(0, 4)
    const other = seen.get(prefix)
    if (other !== undefined) return [{ ...other, refs: ['amb:1'] }, { ...image, refs: ['amb:2'] }]
    seen.set(prefix, image)
  }
}

/** The /db container of the 'ambiguous' variant: its ID shares `5d3e` with /web. */
export const DB_ID = `5d3e0${seedHex('container:db').slice(5)}`

function ambiguousModel (): FixtureModel {
  const model = baseModel()
  model.images.push(...ambiguousPair())
  model.containers.push(seedContainer('db', '/db', NGINX, 'nginx', DB_ID))
  return model
}

export const SCRATCHY: FixtureImage = simpleImage('scratchy:1', [])
export const EMPTY_CONTAINER_ID = seedId('container:empty')

function zeroLayerModel (): FixtureModel {
  const model = baseModel()
  model.images.push(SCRATCHY)
  model.containers.push(seedContainer('empty', '/empty', SCRATCHY, 'scratchy:1', EMPTY_CONTAINER_ID))
  return model
}

export const REGISTRY_DIGEST = seedDigest('manifest:registry.example.com')
export const NAMED_IMAGES: Record<string, FixtureImage> = {
  ghcr: simpleImage('ghcr.io/org/app:1', [L1]),
  user: simpleImage('user/app:1', [L1, L2]),
  localhost: simpleImage('localhost:5000/team/app:1', [L1, L2]),
  registry: { ...simpleImage('registry.example.com:5000/team/app', [L1]), refs: [`registry.example.com:5000/team/app@${REGISTRY_DIGEST}`] }
}

function namesModel (): FixtureModel {
  const model = baseModel()
  model.images.push(...Object.values(NAMED_IMAGES))
  return model
}

export const DEEP_LAYERS: FixtureLayer[] = Array.from({ length: 126 }, (_, i) => seedLayer(`deep-${i + 1}`, [file(`layer-${i + 1}`, `${i + 1}\n`)], 100 + i))
export const DEEP_80 = simpleImage('deep:80', DEEP_LAYERS.slice(0, 80))
export const DEEP_126 = simpleImage('deep:126', DEEP_LAYERS)

function deepModel (): FixtureModel {
  const model = baseModel()
  model.images.push(DEEP_80, DEEP_126)
  return model
}

/** Broken images of the 'hostile' variant: each on the shared base layer plus its own layers, broken by one twist. */
export const HOSTILE = {
  evilCache: simpleImage('evil-cache:1', [L1, seedLayer('evil-cache', [file('x')])]),
  linkRelative: simpleImage('evil-link:1', [L1, seedLayer('evil-link-1a', [file('x')]), seedLayer('evil-link-1b', [file('y')])]),
  linkAbsolute: simpleImage('evil-link:2', [L1, seedLayer('evil-link-2a', [file('x')]), seedLayer('evil-link-2b', [file('y')])]),
  evilLower: simpleImage('evil-lower:1', [L1, seedLayer('evil-lower-a', [file('x')]), seedLayer('evil-lower-b', [file('y')])]),
  evilDiff: simpleImage('evil-diff:1', [L1, seedLayer('evil-diff', [file('x')])]),
  noDiff: simpleImage('nodiff:1', [L1, seedLayer('nodiff', [file('x')])]),
  badDiff: simpleImage('baddiff:1', [L1, seedLayer('baddiff', [file('x')])]),
  unreadable: simpleImage('unreadable:1', [L1, seedLayer('unreadable', [file('x')])]),
  fifo: simpleImage('fifo:1', [L1, seedLayer('fifo', [file('x')])]),
  badSize: simpleImage('badsize:1', [L1, seedLayer('badsize', [file('x')])]),
  mismatch: simpleImage('mismatch:1', [L1]),
  corrupt: { config: '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[', refs: ['corrupt:1'], layers: [] },
  noRootfs: { config: '{"architecture":"amd64","config":{},"os":"linux"}', refs: ['norootfs:1'], layers: [] }
} satisfies Record<string, FixtureImage>
export const BROKEN_CONTAINER_ID = seedId('container:broken')
export const EVIL_MOUNT_CONTAINER_ID = seedId('container:evilmount')

function hostileModel (): FixtureModel {
  const model = baseModel()
  model.images.push(...Object.values(HOSTILE))
  model.containers.push(seedContainer('broken', '/broken', NGINX, 'nginx', BROKEN_CONTAINER_ID))
  model.containers.push(seedContainer('evilmount', '/evilmount', NGINX, 'nginx', EVIL_MOUNT_CONTAINER_ID))
  return model
}

function layerOf (image: FixtureImage, index: number): FixtureLayer {
  const layer = image.layers[index]
  if (layer === undefined) throw new Error('fixture bug: no such layer')
  return layer
}

function breakHostile (root: string): void {
  const H = join(root, 'overlay2')
  writeFileSync(layerdbFile(root, topChain(HOSTILE.evilCache), 'cache-id'), '../../../../../../etc')
  const relink = (link: string, target: string): void => { unlinkSync(join(H, 'l', link)); symlinkSync(target, join(H, 'l', link)) }
  relink(layerOf(HOSTILE.linkRelative, 1).link, '../../containers')
  relink(layerOf(HOSTILE.linkAbsolute, 1).link, '/etc')
  writeFileSync(join(H, layerOf(HOSTILE.evilLower, 2).cacheId, 'lower'), `l/../../../../etc:l/${L1.link}`)
  const evilDiff = join(H, layerOf(HOSTILE.evilDiff, 1).cacheId, 'diff')
  rmSync(evilDiff, { recursive: true })
  symlinkSync('/etc', evilDiff)
  rmSync(join(H, layerOf(HOSTILE.noDiff, 1).cacheId, 'diff'), { recursive: true })
  writeFileSync(layerdbFile(root, topChain(HOSTILE.badDiff), 'diff'), WORKED.diff4)
  const cacheIdFile = layerdbFile(root, topChain(HOSTILE.unreadable), 'cache-id')
  rmSync(cacheIdFile)
  makeDir(cacheIdFile)
  const fifoFile = layerdbFile(root, topChain(HOSTILE.fifo), 'diff')
  rmSync(fifoFile)
  execFileSync('mkfifo', [fifoFile])
  writeFileSync(layerdbFile(root, topChain(HOSTILE.badSize), 'size'), '4096\n')
  appendFileSync(join(root, 'image', 'overlay2', 'imagedb', 'content', 'sha256', hexOf(imageIdOf(HOSTILE.mismatch))), ' ')
  writeFileSync(join(root, 'containers', BROKEN_CONTAINER_ID, 'config.v2.json'), '{"ID":"' + BROKEN_CONTAINER_ID + '","Name":"/broken",')
  writeFileSync(join(root, 'image', 'overlay2', 'layerdb', 'mounts', EVIL_MOUNT_CONTAINER_ID, 'mount-id'), '../../../../etc')
}

/** Appends a newline to every metadata file the daemon trims (diff, cache-id, parent, mount-id, init-id). */
function addNoise (root: string): void {
  const layerdb = join(root, 'image', 'overlay2', 'layerdb')
  for (const [sub, names] of [['sha256', ['diff', 'cache-id', 'parent']], ['mounts', ['mount-id', 'init-id', 'parent']]] as const) {
    for (const entry of readdirSync(join(layerdb, sub))) {
      for (const name of names) {
        const path = join(layerdb, sub, entry, name)
        if (existsSync(path)) appendFileSync(path, '\n')
      }
    }
  }
}

/** The 'removing' variant's image whose top layer is being deleted (only its -removing copy remains). */
export const GONE = simpleImage('gone:1', [L1, seedLayer('gone', [file('gone')])])
export const REMOVING_SUFFIX = `${seedHex('removing')}-removing`
export const ORPHAN_ID = seedId('orphan')

function addRemovalLeftovers (root: string): void {
  const layerdb = join(root, 'image', 'overlay2', 'layerdb', 'sha256')
  // A finished-looking copy of nginx's top layer, mid-deletion: must be ignored.
  const chain3 = hexOf(topChain(NGINX))
  cpSync(join(layerdb, chain3), join(layerdb, `${chain3}-${seedHex('removing-nginx')}-removing`), { recursive: true })
  const gone = hexOf(topChain(GONE))
  renameSync(join(layerdb, gone), join(layerdb, `${gone}-${REMOVING_SUFFIX}`))
  // An overlay2 dir no layer refers to.
  const H = join(root, 'overlay2')
  makeDir(join(H, ORPHAN_ID, 'diff'))
  writeFile(join(H, ORPHAN_ID, 'diff', 'orphaned'), 'left behind\n')
  writeFile(join(H, ORPHAN_ID, 'link'), seedLink('orphan'))
  symlinkSync(`../${ORPHAN_ID}/diff`, join(H, 'l', seedLink('orphan')))
}

function markRunning (root: string): void {
  const dir = join(root, 'overlay2', WORKED.M)
  makeDir(join(dir, 'merged'), 0o700)
  makeDir(join(dir, 'work', 'work'), 0o700)
}

function writeContainerdRoot (root: string): void {
  const daemon = join(root, 'containerd', 'daemon')
  writeFile(join(daemon, 'io.containerd.metadata.v1.bolt', 'meta.db'), Buffer.alloc(32768), 0o644)
  writeFile(join(daemon, 'io.containerd.content.v1.content', 'blobs', 'sha256', hexOf(imageIdOf(NGINX))), NGINX.config, 0o444)
  writeFile(join(daemon, 'io.containerd.snapshotter.v1.overlayfs', 'metadata.db'), Buffer.alloc(32768), 0o600)
  makeDir(join(daemon, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots', '1', 'fs'))
  makeDir(join(daemon, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots', '1', 'work'), 0o700)
  const config = { ID: WORKED.CID, Name: '/web', Image: sha256Digest('manifest'), Driver: 'overlayfs' }
  writeFile(join(root, 'containers', WORKED.CID, 'config.v2.json'), JSON.stringify(config), 0o600)
}

function overlay2 (root: string, model: FixtureModel, committed = true): void {
  writeRoot(root, model, { driver: 'overlay2', committed })
}

function otherDriver (driver: FixtureDriver) {
  return (root: string): void => writeRoot(root, baseModel(), { driver, committed: true })
}

const VARIANTS: Record<FixtureVariant, (root: string) => void> = {
  base: (root) => overlay2(root, baseModel()),
  legacy: (root) => overlay2(root, baseModel(), false),
  noisy: (root) => { overlay2(root, baseModel()); addNoise(root) },
  'noisy-size': (root) => { overlay2(root, baseModel()); appendFileSync(layerdbFile(root, chainOf([L1, L2]), 'size'), '\n') },
  'missing-cache-id': (root) => { overlay2(root, baseModel()); rmSync(layerdbFile(root, chainOf([L1, L2]), 'cache-id')) },
  ambiguous: (root) => overlay2(root, ambiguousModel()),
  'zero-layer': (root) => overlay2(root, zeroLayerModel()),
  removing: (root) => { overlay2(root, { ...baseModel(), images: [...baseModel().images, GONE] }); addRemovalLeftovers(root) },
  names: (root) => overlay2(root, namesModel()),
  deep: (root) => overlay2(root, deepModel()),
  hostile: (root) => { overlay2(root, hostileModel()); breakHostile(root) },
  'corrupt-repositories': (root) => {
    overlay2(root, baseModel())
    writeFileSync(join(root, 'image', 'overlay2', 'repositories.json'), '{"Repositories":{"nginx":{"nginx:latest":"sha256:45e9')
  },
  running: (root) => { overlay2(root, { images: baseModel().images, containers: [{ ...WEB, running: true }] }); markRunning(root) },
  'fuse-overlayfs': otherDriver('fuse-overlayfs'),
  vfs: otherDriver('vfs'),
  aufs: otherDriver('aufs'),
  devicemapper: otherDriver('devicemapper'),
  btrfs: otherDriver('btrfs'),
  zfs: otherDriver('zfs'),
  containerd: (root) => { makeDir(root, 0o710); writeContainerdRoot(root) },
  'multi-driver': (root) => { overlay2(root, baseModel()); writeFile(join(root, 'aufs', 'diff', ORPHAN_ID, 'stale'), 'stale\n') }
}

/** Writes fixture `variant` into `root`, which must be absent or empty. */
export function writeFixture (root: string, variant: FixtureVariant = 'base'): void {
  const write = VARIANTS[variant]
  if (write === undefined) throw new Error(`unknown fixture variant ${String(variant)}; known: ${FIXTURE_VARIANTS.join(', ')}`)
  if (existsSync(root) && readdirSync(root).length > 0) throw new Error(`${root} is not empty`)
  write(root)
  fixTimes(root)
}

/** Writes every variant into `<parent>/<variant>`. */
export function writeAllFixtures (parent: string): void {
  for (const variant of FIXTURE_VARIANTS) writeFixture(join(parent, variant), variant)
}

/** Variants under `parent`, each written on first use: `const root = fixtures('base')`. */
export function fixtureSet (parent: string): (variant: FixtureVariant) => string {
  const written = new Set<FixtureVariant>()
  return (variant) => {
    const root = join(parent, variant)
    if (!written.has(variant)) {
      writeFixture(root, variant)
      written.add(variant)
    }
    return root
  }
}
