/** One read-only layer of a resolved stack. */
export interface ResolvedLayer {
  chainId: string
  diffId: string
  cacheId: string
  /** Bytes, as the layer DB records it. */
  size: number
  /** The image-history instruction that created the layer ('' when unknown). */
  createdBy: string
}

/** What a Docker reference resolves to: the directories to stack, and what they are. */
export interface ResolvedStack {
  kind: 'image' | 'container'
  driver: string
  /** Absolute, top-most first. Empty for a zero-layer image. */
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  image: {
    id: string
    /** Familiar references pointing at the image, sorted. */
    refs: string[]
  }
  /** The image's layers, top-most first (the image part of lowerdirs). */
  layers: ResolvedLayer[]
  container?: {
    id: string
    /** Without Docker's leading '/'. */
    name: string
    mountId: string
    initId?: string
    /** Docker has the container's filesystem mounted right now. */
    running: boolean
  }
}
