import { parseArgs } from 'node:util'
import { CliError } from '../cli/errors'

/** Argument parsing shared by `ovlfs layers` and `ovlfs mount-image`. */

export const DEFAULT_DOCKER_ROOT = '/var/lib/docker'

type OptionSpec = Record<string, { type: 'string' | 'boolean' }>

export interface ParsedCommand {
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

/** Parses `argv` strictly against `options`; every mistake is a CliError quoting the usage line. */
export function parseCommandArgs (argv: readonly string[], options: OptionSpec, usage: string): ParsedCommand {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
    return { values: values as ParsedCommand['values'], positionals }
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)
    throw new CliError(`${detail.replace(/\. To specify a positional argument.*$/, '')}; usage: ${usage}`)
  }
}

/** A string option's value, or undefined. */
export function stringOption (parsed: ParsedCommand, name: string): string | undefined {
  const value = parsed.values[name]
  return typeof value === 'string' ? value : undefined
}

/** A boolean flag. */
export function flag (parsed: ParsedCommand, name: string): boolean {
  return parsed.values[name] === true
}

/** Where something is printed; process.stdout by default. */
export interface Output { write: (text: string) => unknown }
