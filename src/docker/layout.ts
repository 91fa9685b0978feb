import type { MountRecord } from './containers'

/** The directories of a container's filesystem, as its driver stores them. */
export interface ContainerDirs {
  /** Top-most first: the init layer (if any), then the image's layers. */
  lowerdirs: string[]
  /** The container's own writable layer, when the driver keeps one apart. */
  upperdir?: string
  /** overlay's work dir for `upperdir`, when the driver has one. */
  workdir?: string
}

/**
 * How one graph driver lays layers out on disk. Every path returned is
 * absolute, exists, and lies inside the driver's home by its real path.
 */
export interface DriverLayout {
  /** The layer directories of an image, top-most first, from its cache IDs (top-most first). */
  imageStack: (cacheIds: readonly string[]) => Promise<string[]>
  /** A container's directories, given its image's directories from imageStack. */
  containerStack: (mount: MountRecord, imageDirs: readonly string[]) => Promise<ContainerDirs>
  /** The directory the daemon mounts while the container runs, if the driver mounts one. */
  mountTarget: (mount: MountRecord) => string | undefined
}
