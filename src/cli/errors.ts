/**
 * An error meant for the user of the command line: main() prints its message
 * as one line on stderr (prefixed with "ovlfs: ") and exits with `exitCode`,
 * never with a stack trace.
 */
export class CliError extends Error {
  readonly exitCode: number
  constructor (message: string, exitCode = 1) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}
