import { CliError } from '../cli/errors'

/**
 * Errors of the Docker resolver. Every failure a user can hit is a CliError
 * whose message is one line: the file (or data root) concerned, then what is
 * wrong with it.
 */

const MAX_QUOTED = 80

/** A value from a (possibly hostile) file, quoted and shortened so it stays on one line. */
export function quote (value: string): string {
  const short = value.length > MAX_QUOTED ? `${value.slice(0, MAX_QUOTED)}…` : value
  return JSON.stringify(short)
}

/** Collapses any line breaks or control characters so a message is one line. */
export function oneLine (text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim()
}

/** `<file>: <problem>` as a CliError (exit code 1). */
export function fileError (file: string, problem: string): CliError {
  return new CliError(oneLine(`${file}: ${problem}`))
}

/** A CliError for problems not tied to one file (bad reference, ambiguity, not found). */
export function userError (message: string): CliError {
  return new CliError(oneLine(message))
}

/** The `code` of a Node/system error (ENOENT, …), or undefined. */
export function codeOf (err: unknown): string | undefined {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string') return code
  }
  return undefined
}

/** True when a filesystem error means "this path does not exist". */
export function isNotFound (err: unknown): boolean {
  const code = codeOf(err)
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/** A short phrase for a filesystem error: "does not exist", "permission denied", … */
export function describeFsError (err: unknown): string {
  switch (codeOf(err)) {
    case 'ENOENT': return 'does not exist'
    case 'ENOTDIR': return 'does not exist (a path component is not a directory)'
    case 'EACCES': case 'EPERM': return 'cannot be read: permission denied'
    case 'EISDIR': return 'cannot be read: is a directory'
    case 'ELOOP': return 'cannot be read: too many levels of symbolic links'
    case 'EIO': return 'cannot be read: I/O error'
    default: {
      const code = codeOf(err)
      const message = err instanceof Error ? err.message : String(err)
      return `cannot be read: ${code ?? message}`
    }
  }
}

/** The CliError for a filesystem error on `file`; CliErrors pass through unchanged. */
export function fsError (file: string, err: unknown): CliError {
  if (err instanceof CliError) return err
  return fileError(file, describeFsError(err))
}
