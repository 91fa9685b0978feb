import { createHash } from 'node:crypto'

/** A digest string `sha256:<64 lowercase hex>` (image IDs, diff IDs, chain IDs). */
export type Digest = `sha256:${string}`

const HEX64 = /^[a-f0-9]{64}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/

/** True for exactly 64 lowercase hex characters. */
export function isHex64 (text: string): boolean {
  return HEX64.test(text)
}

/** True for a well-formed `sha256:<64 hex>` digest. */
export function isDigest (text: string): text is Digest {
  return DIGEST.test(text)
}

/** The hex part of a digest (what directory names use). */
export function hexOf (digest: Digest): string {
  return digest.slice('sha256:'.length)
}

/** `sha256:` + the hex sha256 of `data`. */
export function sha256Digest (data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** The first 12 hex characters of a digest or ID, as Docker shows short IDs. */
export function shortId (id: string): string {
  return (id.startsWith('sha256:') ? id.slice(7) : id).slice(0, 12)
}
