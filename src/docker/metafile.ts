import { constants } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { fileError, fsError, isNotFound } from './errors'

/**
 * Reading the daemon's small metadata files defensively: only regular files
 * (a FIFO or device planted in a data root must not block or flood us),
 * bounded in size, every failure a one-line CliError naming the file.
 */

const MAX_BYTES = 64 * 1024 * 1024

/** The bytes of `file`, or undefined when it does not exist. */
export async function readOptionalBytes (file: string): Promise<Buffer | undefined> {
  let handle
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw fsError(file, err)
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw fileError(file, 'is not a regular file')
    if (stat.size > MAX_BYTES) throw fileError(file, `is too large (${stat.size} bytes)`)
    return await handle.readFile()
  } catch (err) {
    throw fsError(file, err)
  } finally {
    await handle.close()
  }
}

/** The bytes of `file`; a missing file is an error. */
export async function readBytes (file: string): Promise<Buffer> {
  const bytes = await readOptionalBytes(file)
  if (bytes === undefined) throw fileError(file, 'does not exist')
  return bytes
}

/** The text of `file` (UTF-8, untrimmed), or undefined when it does not exist. */
export async function readOptionalText (file: string): Promise<string | undefined> {
  return (await readOptionalBytes(file))?.toString('utf8')
}

/** The text of `file` (UTF-8, untrimmed); a missing file is an error. */
export async function readText (file: string): Promise<string> {
  return (await readBytes(file)).toString('utf8')
}

/** Parses JSON read from `file`; a syntax error names the file. */
export function parseJson (file: string, bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err)
    throw fileError(file, `corrupt JSON (${detail})`)
  }
}

/** A plain JSON object (not an array, not null). */
export type JsonObject = Record<string, unknown>

export function isJsonObject (value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** True when `file` exists (following symlinks); other failures are errors naming it. */
export async function fileExists (file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch (err) {
    if (isNotFound(err)) return false
    throw fsError(file, err)
  }
}
