import { readdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { aufsLayout } from './aufs'
import { isStrictlyInside, realPathOf } from './confine'
import { listContainerIds, readContainerConfig } from './containers'
import { fileError, fsError, isNotFound } from './errors'
import type { DriverLayout } from './layout'
import { overlay2Layout } from './overlay2'
import { vfsLayout } from './vfs'

/**
 * Which store a data root uses (docker-storage-format.md §1): the graph
 * driver whose home `<root>/<driver>` is non-empty (scanPriorDrivers; vfs
 * only as a fallback), with its metadata under `<root>/image/<driver>/`.
 * Drivers whose layers are not directories to stack, and the containerd image
 * store, are recognised and refused with an explanation.
 */

/** A graph-driver data root ready to be read. */
export interface Store {
  /** The data root, absolute. */
  root: string
  driver: string
  /** `<root>/<driver>`: the driver's home. */
  home: string
  imagedb: string
  layerdb: string
  repositoriesFile: string
  containersDir: string
  layout: DriverLayout
}

const LAYOUTS: Readonly<Record<string, (home: string) => DriverLayout>> = {
  overlay2: overlay2Layout,
  'fuse-overlayfs': overlay2Layout,
  aufs: aufsLayout,
  vfs: vfsLayout
}

const REFUSED: Readonly<Record<string, (root: string) => string>> = {
  devicemapper: (root) => 'the data root uses the devicemapper storage driver: every layer and container is a ' +
    `thin-provisioned snapshot block device in a dm-thin pool (${join(root, 'devicemapper', 'devicemapper', 'data')}), ` +
    'a whole filesystem image rather than a directory of changes, so there are no directories to stack',
  btrfs: (root) => 'the data root uses the btrfs storage driver: every layer is a btrfs subvolume snapshot holding the ' +
    `complete filesystem (${join(root, 'btrfs', 'subvolumes')}/<id>), not a directory of changes, so there are no directories to stack`,
  zfs: (root) => 'the data root uses the zfs storage driver: every layer is a ZFS dataset cloned from its parent\'s ' +
    `snapshot and holding the complete filesystem, mounted by the daemon on demand (${join(root, 'zfs', 'graph')}), ` +
    'not a directory of changes, so there are no directories to stack',
  overlay: () => 'the data root uses the legacy "overlay" storage driver (removed in Docker 24): its layers are ' +
    'hard-linked copies of their parents (overlay/<id>/root), a layout ovlfs does not read'
}

/** Driver homes the daemon's scanPriorDrivers would find (vfs is only a fallback). */
const PRIOR_CANDIDATES = ['aufs', 'btrfs', 'devicemapper', 'fuse-overlayfs', 'overlay', 'overlay2', 'zfs']

const CONTAINERD_STORE = 'the data root uses the containerd image store (the default for new installs since ' +
  'Docker 29): images and layers are containerd content blobs and snapshots indexed in bbolt databases ' +
  '(io.containerd.metadata.v1.bolt/meta.db and the snapshotter\'s metadata.db), not files under image/<driver>/, ' +
  'and ovlfs cannot read that store yet'

async function entriesOf (dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return []
    throw fsError(dir, err)
  }
}

async function isDir (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch (err) {
    if (isNotFound(err)) return false
    throw fsError(path, err)
  }
}

async function isNonEmptyDir (path: string): Promise<boolean> {
  return await isDir(path) && (await entriesOf(path)).length > 0
}

/** The graph driver in use, by its non-empty home; undefined when none is found. */
async function driverByHome (root: string): Promise<string | undefined> {
  const inUse: string[] = []
  for (const name of PRIOR_CANDIDATES) if (await isNonEmptyDir(join(root, name))) inUse.push(name)
  if (inUse.length > 1) {
    throw fileError(root, `several storage drivers hold data (${inUse.join(', ')}); the daemon refuses to start ` +
      'in this state, and so does ovlfs: remove the stale driver directories')
  }
  if (inUse[0] !== undefined) return inUse[0]
  return await isNonEmptyDir(join(root, 'vfs')) ? 'vfs' : undefined
}

/** A driver named by image metadata alone (a root whose driver home is still empty). */
async function driverByMetadata (root: string): Promise<string | undefined> {
  const names: string[] = []
  for (const name of await entriesOf(join(root, 'image'))) {
    const dir = join(root, 'image', name)
    if (await isDir(join(dir, 'imagedb')) || await isDir(join(dir, 'layerdb'))) names.push(name)
  }
  if (names.length > 1) throw fileError(join(root, 'image'), `holds metadata of several storage drivers (${names.join(', ')})`)
  return names[0]
}

/** A container created through a containerd snapshotter records its name (e.g. overlayfs) as Driver. */
async function hasSnapshotterContainer (containersDir: string): Promise<boolean> {
  for (const id of await listContainerIds(containersDir)) {
    const driver = await readContainerConfig(containersDir, id).then((c) => c.driver, () => '')
    if (driver !== '' && !(driver in LAYOUTS) && !(driver in REFUSED)) return true
  }
  return false
}

async function usesContainerdStore (root: string): Promise<boolean> {
  const daemonRoot = join(root, 'containerd', 'daemon')
  return await isNonEmptyDir(join(daemonRoot, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots')) ||
    await isDir(join(daemonRoot, 'io.containerd.content.v1.content', 'blobs')) ||
    await hasSnapshotterContainer(join(root, 'containers'))
}

/** Subdirectories named `<uid>.<gid>` that look like a userns-remapped data root. */
async function remappedRoots (root: string): Promise<string[]> {
  const found: string[] = []
  for (const name of await entriesOf(root)) {
    if (/^\d+\.\d+$/.test(name) && await isDir(join(root, name, 'image'))) found.push(join(root, name))
  }
  return found
}

async function noStoreError (root: string): Promise<Error> {
  if (await usesContainerdStore(root)) return fileError(root, CONTAINERD_STORE)
  const remapped = await remappedRoots(root)
  if (remapped.length > 0) {
    return fileError(root, `holds no image store itself but looks like a userns-remap parent: try --docker-root ${remapped.join(' or ')}`)
  }
  return fileError(root, 'is not a Docker data root with a graph-driver image store (no non-empty <driver>/ ' +
    'directory and no image/<driver>/ metadata); a daemon using the containerd image store (Docker 29+) keeps its images in containerd instead')
}

/** Detects the store of `dockerRoot` and returns where everything lives, or a one-line refusal. */
export async function openStore (dockerRoot: string): Promise<Store> {
  const root = resolve(dockerRoot)
  if (!await isDir(root)) throw fileError(root, 'is not a directory (expected a Docker data root such as /var/lib/docker)')
  const driver = await driverByHome(root) ?? await driverByMetadata(root)
  if (driver === undefined) throw await noStoreError(root)
  const refusal = REFUSED[driver]
  if (refusal !== undefined) throw fileError(root, refusal(root))
  const layout = LAYOUTS[driver]
  if (layout === undefined) throw fileError(join(root, driver), `unknown storage driver ${driver}`)
  const imageRoot = join(root, 'image', driver)
  if (!await isDir(imageRoot)) throw fileError(imageRoot, `does not exist: no image metadata for the ${driver} storage driver`)
  const home = join(root, driver)
  if (await isDir(home) && !isStrictlyInside(await realPathOf(root), await realPathOf(home))) {
    throw fileError(home, `resolves to ${await realPathOf(home)}, outside the data root`)
  }
  return {
    root,
    driver,
    home,
    imagedb: join(imageRoot, 'imagedb'),
    layerdb: join(imageRoot, 'layerdb'),
    repositoriesFile: join(imageRoot, 'repositories.json'),
    containersDir: join(root, 'containers'),
    layout: layout(home)
  }
}
