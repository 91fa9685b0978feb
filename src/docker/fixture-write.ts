import { execFileSync } from 'node:child_process'
import { chmodSync, lutimesSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { hexOf, type Digest } from './digest'
import { imageIdOf, seedDigest, type Entry, type FixtureContainer, type FixtureImage, type FixtureLayer, type FixtureModel } from './fixture-model'
import { chainIds } from './layerdb'

/**
 * Writes a FixtureModel as a Docker data root: the graph-driver metadata
 * (image/<driver>/…), containers/, and the driver's own tree (overlay2 and
 * fuse-overlayfs, vfs, aufs; devicemapper/btrfs/zfs only as far as detection
 * needs). Modes follow the daemon's; all timestamps are set to FIXED_TIME.
 */

export type TreeDriver = 'overlay2' | 'fuse-overlayfs' | 'vfs' | 'aufs'
export type FixtureDriver = TreeDriver | 'devicemapper' | 'btrfs' | 'zfs'

export interface WriteOptions {
  driver: FixtureDriver
  /** Write `committed` markers (Docker ≥ 20.10); false imitates an older root. */
  committed: boolean
}

export const FIXED_TIME = new Date('2024-01-01T00:00:00Z')

// ---------------------------------------------------------------------------
// small file helpers

export function writeFile (path: string, content: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, content)
  chmodSync(path, mode)
}

export function makeDir (path: string, mode = 0o755): void {
  mkdirSync(path, { recursive: true })
  chmodSync(path, mode)
}

/** `mknod PATH c 0 0` (Node has no mknod); needs CAP_MKNOD. */
export function makeWhiteoutDevice (path: string): void {
  execFileSync('mknod', [path, 'c', '0', '0'], { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** `setfattr -n trusted.overlay.opaque -v y DIR`; needs CAP_SYS_ADMIN. */
export function makeOpaque (path: string): void {
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path], { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Sets every timestamp under `root` (not following symlinks) to FIXED_TIME. */
export function fixTimes (root: string): void {
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const path = join(root, entry.name)
    if (entry.isDirectory()) fixTimes(path)
    lutimesSync(path, FIXED_TIME, FIXED_TIME)
  }
  lutimesSync(root, FIXED_TIME, FIXED_TIME)
}

// ---------------------------------------------------------------------------
// layer content

type WhiteoutStyle = 'overlay' | 'aufs'

/** Writes a layer's entries into `diff`, whiteouts and opaque dirs in the given on-disk style. */
export function writeEntries (diff: string, entries: readonly Entry[], style: WhiteoutStyle): void {
  for (const entry of entries) {
    const path = join(diff, entry.path)
    mkdirSync(dirname(path), { recursive: true })
    switch (entry.type) {
      case 'dir': makeDir(path, entry.mode); break
      case 'file': writeFile(path, entry.content, entry.mode); break
      case 'symlink': symlinkSync(entry.target, path); break
      case 'whiteout':
        if (style === 'overlay') makeWhiteoutDevice(path)
        else writeFile(join(dirname(path), `.wh.${basename(path)}`), '', 0o444)
        break
      case 'opaque':
        makeDir(path)
        if (style === 'overlay') makeOpaque(path)
        else writeFile(join(path, '.wh..wh..opq'), '', 0o444)
        break
    }
  }
}

/** The result of applying layers in order with whiteouts executed (what vfs stores): a flat entry list. */
export function flatten (layers: ReadonlyArray<readonly Entry[]>): Entry[] {
  const tree = new Map<string, Entry>()
  const removeBelow = (path: string): void => {
    for (const key of [...tree.keys()]) if (key.startsWith(`${path}/`)) tree.delete(key)
  }
  for (const entries of layers) {
    for (const entry of entries) {
      if (entry.type === 'whiteout') {
        tree.delete(entry.path)
        removeBelow(entry.path)
      } else if (entry.type === 'opaque') {
        removeBelow(entry.path)
        tree.set(entry.path, { type: 'dir', path: entry.path, mode: 0o755 })
      } else {
        tree.set(entry.path, entry)
      }
    }
  }
  return [...tree.values()].sort((a, b) => a.path.localeCompare(b.path))
}

// ---------------------------------------------------------------------------
// the layer graph: every driver directory with its parent

/** The init layer content daemon/initlayer/setup_unix.go creates. */
export const INIT_ENTRIES: Entry[] = [
  { type: 'dir', path: 'dev', mode: 0o755 },
  { type: 'dir', path: 'dev/pts', mode: 0o755 },
  { type: 'dir', path: 'dev/shm', mode: 0o755 },
  { type: 'dir', path: 'proc', mode: 0o755 },
  { type: 'dir', path: 'sys', mode: 0o755 },
  { type: 'dir', path: 'etc', mode: 0o755 },
  { type: 'file', path: '.dockerenv', content: '', mode: 0o755 },
  { type: 'file', path: 'dev/console', content: '', mode: 0o755 },
  { type: 'file', path: 'etc/hosts', content: '', mode: 0o755 },
  { type: 'file', path: 'etc/hostname', content: '', mode: 0o755 },
  { type: 'file', path: 'etc/resolv.conf', content: '', mode: 0o755 },
  { type: 'symlink', path: 'etc/mtab', target: '/proc/mounts' }
]

export interface GraphNode {
  /** Directory name in the driver home: cache-id, `<mount-id>-init` or mount-id. */
  id: string
  link: string
  parent?: GraphNode
  entries: readonly Entry[]
  role: 'layer' | 'init' | 'container'
  hasChild: boolean
}

/** The nodes below `node` (nearest first). */
export function ancestors (node: GraphNode): GraphNode[] {
  return node.parent === undefined ? [] : [node.parent, ...ancestors(node.parent)]
}

/** Every driver directory of the model, parents before children. */
export function layerGraph (model: FixtureModel): GraphNode[] {
  const nodes = new Map<string, GraphNode>()
  const add = (node: GraphNode): GraphNode => {
    const known = nodes.get(node.id)
    if (known !== undefined) {
      if (known.parent?.id !== node.parent?.id) throw new Error(`fixture bug: ${node.id} has two parents`)
      return known
    }
    nodes.set(node.id, node)
    if (node.parent !== undefined) node.parent.hasChild = true
    return node
  }
  const topOf = (image: FixtureImage): GraphNode | undefined => {
    let parent: GraphNode | undefined
    for (const layer of image.layers) {
      parent = add({ id: layer.cacheId, link: layer.link, parent, entries: layer.entries, role: 'layer', hasChild: false })
    }
    return parent
  }
  for (const image of model.images) topOf(image)
  for (const c of model.containers) {
    const init = add({ id: `${c.mountId}-init`, link: c.initLink, parent: topOf(c.image), entries: INIT_ENTRIES, role: 'init', hasChild: false })
    add({ id: c.mountId, link: c.link, parent: init, entries: c.upper, role: 'container', hasChild: false })
  }
  return [...nodes.values()]
}

// ---------------------------------------------------------------------------
// metadata: image/<driver>/ and containers/

/** Every distinct layer DB entry: chain ID → layer and parent chain. */
export function layerRecords (model: FixtureModel): Map<Digest, { layer: FixtureLayer, parent?: Digest }> {
  const records = new Map<Digest, { layer: FixtureLayer, parent?: Digest }>()
  for (const image of model.images) {
    const chain = chainIds(image.layers.map((layer) => layer.diffId))
    image.layers.forEach((layer, i) => {
      const chainId = chain[i] as Digest
      const known = records.get(chainId)
      if (known !== undefined && known.layer !== layer) throw new Error(`fixture bug: chain ${chainId} has two layers`)
      const parent = chain[i - 1]
      records.set(chainId, parent === undefined ? { layer } : { layer, parent })
    })
  }
  return records
}

export function topChainOf (image: FixtureImage): Digest | undefined {
  return chainIds(image.layers.map((layer) => layer.diffId)).at(-1)
}

function sortedObject<T> (entries: Array<[string, T]>): Record<string, T> {
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

function repositoriesJson (model: FixtureModel): string {
  const repos = new Map<string, Array<[string, string]>>()
  for (const image of model.images) {
    for (const ref of image.refs) {
      const name = ref.replace(/@.*$/, '').replace(/:[^/:]*$/, '')
      repos.set(name, [...(repos.get(name) ?? []), [ref, imageIdOf(image)]])
    }
  }
  const outer = [...repos.entries()].map(([name, refs]): [string, Record<string, string>] => [name, sortedObject(refs)])
  return JSON.stringify({ Repositories: sortedObject(outer) })
}

function writeImagedb (imageRoot: string, model: FixtureModel): void {
  const content = join(imageRoot, 'imagedb', 'content', 'sha256')
  const metadata = join(imageRoot, 'imagedb', 'metadata', 'sha256')
  makeDir(content, 0o700)
  makeDir(metadata, 0o700)
  for (const image of model.images) {
    const hex = hexOf(imageIdOf(image))
    writeFile(join(content, hex), image.config, 0o600)
    if (image.parent !== undefined) {
      writeFile(join(metadata, hex, 'parent'), imageIdOf(image.parent), 0o644)
      writeFile(join(metadata, hex, 'builtLocally'), Buffer.from([1]), 0o644)
      writeFile(join(metadata, hex, 'lastUpdated'), '2024-03-01T12:00:00.123456789Z', 0o644)
    }
  }
}

function writeLayerdb (layerdb: string, model: FixtureModel): void {
  makeDir(layerdb, 0o700)
  makeDir(join(layerdb, 'tmp'), 0o700)
  const tarSplit = gzipSync(Buffer.alloc(0))
  for (const [chainId, { layer, parent }] of layerRecords(model)) {
    const dir = join(layerdb, 'sha256', hexOf(chainId))
    makeDir(dir, 0o755)
    writeFile(join(dir, 'diff'), layer.diffId)
    writeFile(join(dir, 'size'), String(layer.size))
    writeFile(join(dir, 'cache-id'), layer.cacheId)
    if (parent !== undefined) writeFile(join(dir, 'parent'), parent)
    writeFile(join(dir, 'tar-split.json.gz'), tarSplit)
  }
  for (const c of model.containers) {
    const dir = join(layerdb, 'mounts', c.id)
    makeDir(dir, 0o755)
    writeFile(join(dir, 'mount-id'), c.mountId)
    writeFile(join(dir, 'init-id'), `${c.mountId}-init`)
    const top = topChainOf(c.image)
    if (top !== undefined) writeFile(join(dir, 'parent'), top)
  }
}

function writeDistribution (imageRoot: string, model: FixtureModel): void {
  for (const image of model.images) {
    if (image.pulledFrom === undefined) continue
    for (const layer of image.layers) {
      const blob = seedDigest(`blob:${layer.diffId}`)
      writeFile(join(imageRoot, 'distribution', 'diffid-by-digest', 'sha256', hexOf(blob)), layer.diffId)
      const meta = [{ Digest: blob, SourceRepository: `docker.io/library/${image.pulledFrom}`, HMAC: '' }]
      writeFile(join(imageRoot, 'distribution', 'v2metadata-by-diffid', 'sha256', hexOf(layer.diffId)), JSON.stringify(meta))
    }
  }
}

export function writeMetadata (root: string, driver: string, model: FixtureModel): void {
  const imageRoot = join(root, 'image', driver)
  makeDir(imageRoot, 0o700)
  writeFile(join(imageRoot, 'repositories.json'), repositoriesJson(model), 0o600)
  writeImagedb(imageRoot, model)
  writeLayerdb(join(imageRoot, 'layerdb'), model)
  writeDistribution(imageRoot, model)
}

/** config.v2.json with the fields the notes list (a real one has many more). */
export function containerConfig (c: FixtureContainer, driver: string): string {
  const [path, ...args] = c.cmd
  return JSON.stringify({
    ID: c.id,
    Created: '2024-01-01T00:00:00Z',
    Path: path ?? '',
    Args: args,
    Config: { Image: c.imageRef, Cmd: c.cmd },
    Image: imageIdOf(c.image),
    Name: c.name,
    Driver: driver,
    OS: 'linux',
    ImagePlatform: { architecture: 'amd64', os: 'linux' },
    State: {
      Running: c.running === true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: c.running === true ? 4242 : 0,
      ExitCode: 0,
      Error: '',
      StartedAt: c.running === true ? '2024-01-02T00:00:00Z' : '0001-01-01T00:00:00Z',
      FinishedAt: '0001-01-01T00:00:00Z'
    }
  })
}

export function writeContainers (root: string, model: FixtureModel, driver: string): void {
  const containers = join(root, 'containers')
  makeDir(containers, 0o710)
  for (const c of model.containers) {
    const dir = join(containers, c.id)
    makeDir(dir, 0o710)
    writeFile(join(dir, 'config.v2.json'), containerConfig(c, driver), 0o600)
    writeFile(join(dir, 'hostconfig.json'), '{"Binds":null,"NetworkMode":"bridge","RestartPolicy":{"Name":"no","MaximumRetryCount":0}}', 0o600)
    writeFile(join(dir, 'hostname'), c.id.slice(0, 12) + '\n')
    writeFile(join(dir, 'hosts'), '127.0.0.1\tlocalhost\n')
    writeFile(join(dir, 'resolv.conf'), 'nameserver 10.0.2.3\n')
    makeDir(join(dir, 'mounts'), 0o700)
    makeDir(join(dir, 'checkpoints'), 0o700)
  }
}

// ---------------------------------------------------------------------------
// driver trees

/** overlay2's lower file of a node: `l/<link>` of each node below, nearest first. */
export function lowerOf (node: GraphNode): string {
  return ancestors(node).map((below) => `l/${below.link}`).join(':')
}

export function writeOverlay2Tree (home: string, nodes: readonly GraphNode[], committed: boolean): void {
  makeDir(home, 0o710)
  makeDir(join(home, 'l'), 0o700)
  for (const node of nodes) {
    const dir = join(home, node.id)
    makeDir(dir, 0o710)
    makeDir(join(dir, 'diff'), 0o755)
    writeEntries(join(dir, 'diff'), node.entries, 'overlay')
    writeFile(join(dir, 'link'), node.link)
    symlinkSync(`../${node.id}/diff`, join(home, 'l', node.link))
    if (node.parent !== undefined) {
      writeFile(join(dir, 'lower'), lowerOf(node))
      makeDir(join(dir, 'work'), 0o700)
      // The init layer was mounted once, so the kernel left work/work behind.
      if (node.role === 'init') makeDir(join(dir, 'work', 'work'), 0o700)
    }
    if (committed && node.hasChild) writeFile(join(dir, 'committed'), '', 0o600)
  }
}

export function writeVfsTree (home: string, nodes: readonly GraphNode[]): void {
  makeDir(join(home, 'dir'), 0o700)
  for (const node of nodes) {
    const chain = [...ancestors(node).reverse(), node].map((n) => n.entries)
    const dir = join(home, 'dir', node.id)
    makeDir(dir, 0o755)
    writeEntries(dir, flatten(chain), 'overlay')
  }
}

export function writeAufsTree (home: string, nodes: readonly GraphNode[]): void {
  for (const sub of ['diff', 'layers', 'mnt']) makeDir(join(home, sub), 0o700)
  for (const node of nodes) {
    const diff = join(home, 'diff', node.id)
    makeDir(diff, 0o755)
    writeEntries(diff, node.entries, 'aufs')
    if (node.role !== 'layer') {
      // Branches that were mounted rw carry aufs' own bookkeeping entries.
      writeFile(join(diff, '.wh..wh.aufs'), '', 0o444)
      makeDir(join(diff, '.wh..wh.orph'), 0o700)
      makeDir(join(diff, '.wh..wh.plnk'), 0o700)
    }
    writeFile(join(home, 'layers', node.id), ancestors(node).map((below) => `${below.id}\n`).join(''))
    makeDir(join(home, 'mnt', node.id), 0o755)
  }
}

export function writeDriverTree (root: string, model: FixtureModel, options: WriteOptions): void {
  const home = join(root, options.driver)
  const nodes = layerGraph(model)
  switch (options.driver) {
    case 'overlay2': case 'fuse-overlayfs': writeOverlay2Tree(home, nodes, options.committed); break
    case 'vfs': writeVfsTree(home, nodes); break
    case 'aufs': writeAufsTree(home, nodes); break
    case 'devicemapper':
      writeFile(join(home, 'devicemapper', 'data'), Buffer.alloc(4096), 0o600)
      writeFile(join(home, 'devicemapper', 'metadata'), Buffer.alloc(4096), 0o600)
      writeFile(join(home, 'metadata', 'base'), '{"device_id":1,"size":10737418240,"transaction_id":1,"initialized":true,"deleted":false}', 0o600)
      nodes.forEach((node, i) => {
        writeFile(join(home, 'metadata', node.id), `{"device_id":${i + 2},"size":10737418240,"transaction_id":${i + 2},"initialized":false,"deleted":false}`, 0o600)
        makeDir(join(home, 'mnt', node.id), 0o755)
      })
      break
    case 'btrfs':
      for (const node of nodes) makeDir(join(home, 'subvolumes', node.id), 0o755)
      break
    case 'zfs':
      for (const node of nodes) makeDir(join(home, 'graph', node.id), 0o755)
      break
  }
}

/** The other top-level entries of a real data root (never read for resolution). */
export function writeRealism (root: string): void {
  for (const sub of ['buildkit', 'plugins', 'runtimes', 'swarm', 'tmp']) makeDir(join(root, sub), 0o700)
  writeFile(join(root, 'network', 'files', 'local-kv.db'), '', 0o644)
  writeFile(join(root, 'volumes', 'metadata.db'), '', 0o600)
  writeFile(join(root, 'engine-id'), '0f3c2c6e-4b6e-4a8e-9a57-3c1f2b7d9e10', 0o600)
}

export function writeRoot (root: string, model: FixtureModel, options: WriteOptions): void {
  makeDir(root, 0o710)
  writeMetadata(root, options.driver, model)
  writeContainers(root, model, options.driver)
  writeDriverTree(root, model, options)
  writeRealism(root)
}
