import * as path from 'node:path'

/**
 * One directory of the stack. Lower layers are read-only and immutable while
 * mounted (the kernel's rule too), which is what makes caching them safe.
 */
export interface Layer {
  /** 0 is the top: the upper layer when there is one, else the top lower. */
  readonly index: number
  /** Absolute real path of the layer's root directory. */
  readonly root: string
  readonly isUpper: boolean
  /** st_dev of the layer root, to tell filesystems apart for inode numbers. */
  readonly dev: number
}

export interface LayerStackConfig {
  /** Top-most first, absolute. */
  readonly lowerdirs: readonly string[]
  readonly upperdir?: string
  readonly workdir?: string
}

/** The ordered layers of one mount: upper (if any) first, then the lowers top-down. */
export class LayerStack {
  readonly layers: readonly Layer[]
  readonly upper: Layer | undefined
  readonly lowers: readonly Layer[]
  readonly workdir: string | undefined

  constructor (config: LayerStackConfig, devOf: (dir: string) => number) {
    const layers: Layer[] = []
    if (config.upperdir !== undefined) {
      layers.push({ index: 0, root: absolute(config.upperdir), isUpper: true, dev: devOf(config.upperdir) })
    }
    for (const dir of config.lowerdirs) {
      layers.push({ index: layers.length, root: absolute(dir), isUpper: false, dev: devOf(dir) })
    }
    this.layers = layers
    this.upper = config.upperdir !== undefined ? layers[0] : undefined
    this.lowers = layers.filter(l => !l.isUpper)
    this.workdir = config.workdir !== undefined ? absolute(config.workdir) : undefined
  }

  get readOnly (): boolean {
    return this.upper === undefined
  }
}

/** Real path of a merged-relative path inside a layer. `rel` is '' for the root or '/a/b'. */
export function realPath (layer: Layer, rel: string): string {
  return rel === '' || rel === '/' ? layer.root : layer.root + rel
}

/** '/a/b' → ['/a', 'b']; '/a' → ['', 'a'] (the root is ''). */
export function splitPath (p: string): [string, string] {
  const i = p.lastIndexOf('/')
  return [i <= 0 ? '' : p.slice(0, i), p.slice(i + 1)]
}

/** Normalise a FUSE path ('/' or '/a/b') to the engine form ('' for root, '/a/b'). */
export function normPath (p: string): string {
  if (p === '/' || p === '') return ''
  return p.endsWith('/') ? p.slice(0, -1) : p
}

export function joinPath (parent: string, name: string): string {
  return parent + '/' + name
}

/** An absolute path as given (a pinned '/proc/self/fd/N/.' must keep its '/.'). */
function absolute (p: string): string {
  return path.isAbsolute(p) ? p : path.resolve(p)
}
