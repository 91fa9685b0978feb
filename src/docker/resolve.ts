import { findContainer, readMount, type ContainerConfig } from './containers'
import type { Digest } from './digest'
import { openStore, type Store } from './drivers'
import { fileError, quote, userError } from './errors'
import { readImageConfig, readImageConfigIfPresent, type ImageConfig } from './imagedb'
import { findImageId } from './images'
import { chainIds, walkChain } from './layerdb'
import { isMountpoint, SELF_MOUNTINFO } from './mountinfo'
import { loadRefStore, type RefStore } from './refstore'
import type { ResolvedLayer, ResolvedStack } from './types'

export type { ResolvedLayer, ResolvedStack } from './types'

export interface ResolveOptions {
  /** The mountinfo file telling which container filesystems are mounted (default /proc/self/mountinfo). */
  mountinfo?: string
}

interface ImagePart {
  lowerdirs: string[]
  layers: ResolvedLayer[]
}

/**
 * The image part of any stack: walk the layer DB from the top chain ID down,
 * then let the driver turn cache IDs into checked directories. `config`
 * (when known) must describe exactly this chain and names each layer's
 * creating instruction; `blame` is the file that named `top`.
 */
async function imagePart (store: Store, top: Digest | undefined, config: ImageConfig | undefined, blame: string): Promise<ImagePart> {
  const records = top === undefined ? [] : await walkChain(store.layerdb, top)
  if (config !== undefined) {
    const configTop = chainIds(config.diffIds).at(-1)
    if (configTop !== top) {
      throw fileError(blame, `names top layer ${top ?? '(none)'}, but image ${config.id} ends with chain ID ${configTop ?? '(none: no layers)'}`)
    }
  }
  const lowerdirs = await store.layout.imageStack(records.map((layer) => layer.cacheId))
  const createdBy = config?.createdBy ?? []
  const layers = records.map((layer, i): ResolvedLayer => ({
    chainId: layer.chainId,
    diffId: layer.diffId,
    cacheId: layer.cacheId,
    size: layer.size,
    createdBy: createdBy[records.length - 1 - i] ?? ''
  }))
  return { lowerdirs, layers }
}

async function resolveImage (store: Store, refs: RefStore, id: Digest): Promise<ResolvedStack> {
  const config = await readImageConfig(store.imagedb, id)
  const part = await imagePart(store, chainIds(config.diffIds).at(-1), config, config.file)
  return { kind: 'image', driver: store.driver, ...part, image: { id, refs: refs.refsFor(id) } }
}

/** A container must have been created by this data root's driver (the daemon ignores others). */
function checkContainerDriver (store: Store, container: ContainerConfig): void {
  const driver = container.driver === '' && store.driver === 'aufs' ? 'aufs' : container.driver
  if (driver === store.driver) return
  const what = driver === 'overlayfs' ? 'the containerd snapshotter "overlayfs" (containerd image store, not supported yet)' : `storage driver ${quote(driver)}`
  throw fileError(container.file, `the container was created with ${what}, but this data root uses ${store.driver}`)
}

async function isRunning (container: ContainerConfig, target: string | undefined, options: ResolveOptions): Promise<boolean> {
  if (target === undefined) return container.stateRunning
  return await isMountpoint(target, options.mountinfo ?? SELF_MOUNTINFO)
}

async function resolveContainer (store: Store, refs: RefStore, container: ContainerConfig, options: ResolveOptions): Promise<ResolvedStack> {
  checkContainerDriver(store, container)
  const mount = await readMount(store.layerdb, container.id)
  const config = await readImageConfigIfPresent(store.imagedb, container.imageId)
  const part = await imagePart(store, mount.parent, config, `${mount.dir}/parent`)
  const dirs = await store.layout.containerStack(mount, part.lowerdirs)
  const info: NonNullable<ResolvedStack['container']> = {
    id: container.id,
    name: container.name.replace(/^\//, ''),
    mountId: mount.mountId,
    running: await isRunning(container, store.layout.mountTarget(mount), options)
  }
  if (mount.initId !== undefined) info.initId = mount.initId
  return {
    kind: 'container',
    driver: store.driver,
    ...dirs,
    image: { id: container.imageId, refs: refs.refsFor(container.imageId) },
    layers: part.layers,
    container: info
  }
}

/**
 * Resolves a Docker reference against a data root, as `docker inspect` would
 * pick it: a container (full ID, name, unique ID prefix) first, then an image
 * (ID, digest, name, unique ID prefix). Every failure is a one-line CliError.
 */
export async function resolve (dockerRoot: string, ref: string, options: ResolveOptions = {}): Promise<ResolvedStack> {
  const store = await openStore(dockerRoot)
  const refs = await loadRefStore(store.repositoriesFile)
  const lookup = await findContainer(store.containersDir, ref)
  if (lookup.found !== undefined) return await resolveContainer(store, refs, lookup.found, options)
  const imageId = await findImageId(store.imagedb, refs, ref)
  if (imageId !== undefined) return await resolveImage(store, refs, imageId)
  const skipped = lookup.unreadable.length === 0 ? '' : `; ${lookup.unreadable.length} container config(s) could not be read, first: ${lookup.unreadable[0] ?? ''}`
  throw userError(`no such image or container: ${quote(ref)} (data root ${store.root})${skipped}`)
}
