import { constants } from 'node:os'

const errnoByName = constants.errno as Record<string, number>

/**
 * An error of the merge engine: it carries the errno the FUSE adapter returns
 * to the kernel (as a positive number and its name) and a sentence for logs.
 */
export class OvlError extends Error {
  readonly code: string
  readonly errno: number
  constructor (code: keyof typeof constants.errno, message: string) {
    super(`${code}: ${message}`)
    this.name = 'OvlError'
    this.code = code
    this.errno = errnoByName[code] ?? 5
  }
}

/** The positive errno of any error: OvlError, a Node fs error, or a SysError; EIO when unknown. */
export function errnoOf (err: unknown): number {
  if (err !== null && typeof err === 'object') {
    const e = err as { errno?: unknown, code?: unknown }
    if (typeof e.code === 'string' && e.code in errnoByName) return errnoByName[e.code] as number
    if (typeof e.errno === 'number') return Math.abs(e.errno)
  }
  return errnoByName.EIO as number
}

/** The errno name (e.g. 'ENOENT') of any error, or undefined. */
export function codeOf (err: unknown): string | undefined {
  if (err !== null && typeof err === 'object') {
    const c = (err as { code?: unknown }).code
    if (typeof c === 'string') return c
  }
  return undefined
}
