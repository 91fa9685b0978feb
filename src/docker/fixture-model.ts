import { createHash } from 'node:crypto'
import { sha256Digest, type Digest } from './digest'

/**
 * The data model of the Docker fixture (docker-fixture-notes.md): layers with
 * their content, images (exact config bytes, refs), containers. Writers turn
 * it into a data root for a given driver. Everything is derived from fixed
 * seeds, so the same call always writes the same tree.
 */

/** One filesystem change inside a layer's diff. */
export type Entry =
  | { type: 'dir', path: string, mode: number }
  | { type: 'file', path: string, content: string, mode: number }
  | { type: 'symlink', path: string, target: string }
  /** Deletes `path` from the layers below (overlay: char dev 0/0; aufs: `.wh.<name>`). */
  | { type: 'whiteout', path: string }
  /** `path` is a directory hiding everything below it (overlay: xattr; aufs: `.wh..wh..opq`). */
  | { type: 'opaque', path: string }

export const dir = (path: string, mode = 0o755): Entry => ({ type: 'dir', path, mode })
export const file = (path: string, content = '', mode = 0o644): Entry => ({ type: 'file', path, content, mode })
export const symlink = (path: string, target: string): Entry => ({ type: 'symlink', path, target })
export const whiteout = (path: string): Entry => ({ type: 'whiteout', path })
export const opaque = (path: string): Entry => ({ type: 'opaque', path })

export interface FixtureLayer {
  diffId: Digest
  cacheId: string
  link: string
  size: number
  entries: Entry[]
}

export interface FixtureImage {
  /** The exact config bytes; the image ID is their sha256. */
  config: string
  /** Familiar strings filed in repositories.json. */
  refs: string[]
  /** Bottom layer first, as rootfs.diff_ids. */
  layers: FixtureLayer[]
  /** Built locally FROM this image (imagedb metadata parent + builtLocally). */
  parent?: FixtureImage
  /** Pulled from this repository (distribution metadata is written for its layers). */
  pulledFrom?: string
}

export interface FixtureContainer {
  id: string
  /** With Docker's leading '/'. */
  name: string
  image: FixtureImage
  /** What the user typed at `docker create` (Config.Image). */
  imageRef: string
  cmd: string[]
  mountId: string
  link: string
  initLink: string
  /** Changes in the container's own layer. */
  upper: Entry[]
  running?: boolean
}

export interface FixtureModel {
  images: FixtureImage[]
  containers: FixtureContainer[]
}

export function imageIdOf (image: FixtureImage): Digest {
  return sha256Digest(image.config)
}

/** sha256 hex of a namespaced seed: the source of every derived value. */
export function seedHex (seed: string): string {
  return createHash('sha256').update(`ovlfs-fixture:${seed}`).digest('hex')
}

/** A digest for a synthetic diff ID or blob. */
export function seedDigest (seed: string): Digest {
  return `sha256:${seedHex(seed)}`
}

/** A 64-hex ID like stringid.GenerateRandomID: its first 12 characters are not all digits. */
export function seedId (seed: string): string {
  for (let n = 0; ; n++) {
    const id = seedHex(n === 0 ? seed : `${seed}#${n}`)
    if (!/^[0-9]{12}/.test(id)) return id
  }
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** A 26-character overlay2 link ID (base32 of 17 bytes, as overlayutils.GenerateID). */
export function seedLink (seed: string): string {
  const bytes = Buffer.from(seedHex(`link:${seed}`), 'hex').subarray(0, 17)
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31] ?? ''
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  return out.slice(0, 26)
}

/** A layer whose identities all derive from `seed`. */
export function seedLayer (seed: string, entries: Entry[], size = 4096): FixtureLayer {
  return { diffId: seedDigest(`diff:${seed}`), cacheId: seedId(`cache:${seed}`), link: seedLink(seed), size, entries }
}

/** Compact image config JSON with the usual key order; diff IDs bottom first. */
export function imageConfig (fields: { config?: Record<string, unknown>, created?: string, history?: unknown[], comment?: string }, layers: readonly FixtureLayer[]): string {
  const rootfs: Record<string, unknown> = { type: 'layers' }
  if (layers.length > 0) rootfs.diff_ids = layers.map((layer) => layer.diffId)
  return JSON.stringify({
    architecture: 'amd64',
    ...(fields.comment === undefined ? {} : { comment: fields.comment }),
    config: fields.config ?? {},
    ...(fields.created === undefined ? {} : { created: fields.created }),
    ...(fields.history === undefined ? {} : { history: fields.history }),
    os: 'linux',
    rootfs
  })
}

/** The sha256 of 1024 zero bytes: the diff ID of an empty layer tar (daemon/internal/layer/empty.go). */
export const EMPTY_TAR_DIFF_ID: Digest = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef'

/** The values of docker-fixture-notes.md "Values" (the worked example of docker-storage-format.md §9). */
export const WORKED = {
  diff1: 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d',
  diff2: 'sha256:d8c4e306bcdf3ca401cee602e5a011de65451c3a6bd2a17fcc8e1602aedc9ade',
  diff3: 'sha256:84647e3068feacc72f3645da3f4d71b44440d8d92d1e9d3c093a9c9d9b3dd908',
  diff4: 'sha256:3c14f8c78e1f4c1aacd98b53d0431786205b57fd3a39bfce015def6756d51426',
  C1: 'aad9b10fd6645ec91723233a237a1b8d1b652f947dbd93c655cbfc9cdedbe5d9',
  C2: '0d268c9dc5270ed19f199c26e4e0d95e9c9d9699263aee894843bc8fca134673',
  C3: '78d3866f54b2b416ad5567134c7f3189b661dab542917a1ebfdb0fbe89b72a47',
  C4: '86a7f9bd60b1df7fc799b1a3f0006d72f49163cfd3f38051c565b0216fa6dd18',
  CID: '5d3edf8fd353db10eb96272597712a8f20f4cabeb094c0740547357f86152f63',
  M: '7518056fea3709f00609f896954dbe47d2b5d8ac39366d45770caa7a9d3247b3',
  links: {
    C1: 'LMOJIZ57BBWBZ4RNKCFOAUD556',
    C2: 'GNAPPBG4BYLODTAW54HGQDJPXC',
    C3: '76Y5PGLLTRICU7ZBEI2NJDUIZZ',
    C4: 'QMAOXYJZVILXFLR2L7E6VZZRBR',
    MI: 'ZZUCUMO7HLUCIYFA6WM4PEOKHE',
    M: 'UBPVPNSADF2E72GK4Q3GZFV4KM'
  },
  nginxRepoDigest: 'sha256:0a15593ba60f78d3e3bb0aae17da5c16e5c80f84fb96a285ee7ad4897bf46f1d'
} as const
