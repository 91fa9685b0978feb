import { DEFAULT_DOCKER_ROOT, flag, parseCommandArgs, stringOption, type Output } from '../docker/cli-args'
import { renderJson, renderTable } from '../docker/render'
import { resolve } from '../docker/resolve'
import { CliError } from './errors'

const USAGE = 'ovlfs layers [--docker-root DIR] REF [--json]'

export interface LayersIO {
  stdout?: Output
  /** mountinfo file for the "running" check (tests); default /proc/self/mountinfo. */
  mountinfo?: string
}

/**
 * `ovlfs layers [--docker-root DIR] REF [--json]`: prints the layer stack of an
 * image or container. `argv` is what follows `layers`. User errors are thrown
 * as CliError for main() to print.
 */
export async function layersCommand (argv: string[], io: LayersIO = {}): Promise<number> {
  const parsed = parseCommandArgs(argv, { 'docker-root': { type: 'string' }, json: { type: 'boolean' } }, USAGE)
  const [ref, ...extra] = parsed.positionals
  if (ref === undefined || extra.length > 0) throw new CliError(`expected exactly one REF; usage: ${USAGE}`)
  const root = stringOption(parsed, 'docker-root') ?? DEFAULT_DOCKER_ROOT
  const stack = await resolve(root, ref, io.mountinfo === undefined ? {} : { mountinfo: io.mountinfo })
  const stdout = io.stdout ?? process.stdout
  stdout.write(flag(parsed, 'json') ? renderJson(stack) : renderTable(stack))
  return 0
}
