import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { DEFAULT_DOCKER_ROOT, flag, parseCommandArgs, stringOption, type Output } from '../docker/cli-args'
import { shortId } from '../docker/digest'
import { resolve, type ResolvedStack } from '../docker/resolve'
import { CliError } from './errors'
import { STAND_IN_ENV } from './stand-in'

const USAGE = 'ovlfs mount-image [--docker-root DIR] REF MOUNTPOINT [--rw] [--upper DIR --work DIR] [--force] [--log-level LEVEL] [--log-file FILE]'

export interface MountRequest {
  rw: boolean
  upper?: string
  work?: string
  force: boolean
}

/** What to mount, before temporary directories are made. */
export interface MountPlan {
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  /** No layer at all: an empty directory must serve as the only lowerdir. */
  emptyLower: boolean
  /** Writable without a given upper: a new scratch dir holds upper/ and work/. */
  scratch: boolean
}

function refuseRunning (stack: ResolvedStack): void {
  const c = stack.container
  if (c === undefined || !c.running) return
  throw new CliError(`container ${c.name} (${shortId(c.id)}) is running: Docker has its filesystem mounted, and a ` +
    'second writer on the same upper dir corrupts it; stop the container first, or pass --force')
}

/**
 * The layers to mount for a resolved stack and request. An image is read-only
 * unless asked (--rw, or --upper/--work); a container mounts its own upper and
 * work dirs, or - for drivers without a work dir (aufs, vfs) - its layers
 * read-only, writable only into a scratch upper.
 */
export function planMount (stack: ResolvedStack, request: MountRequest): MountPlan {
  if ((request.upper === undefined) !== (request.work === undefined)) throw new CliError('--upper and --work go together: give both or neither')
  const given = request.upper !== undefined && request.work !== undefined
  if (stack.kind === 'container') {
    if (!request.force) refuseRunning(stack)
    if (given) throw new CliError('--upper/--work apply to images: a container mounts its own upper and work dirs')
    if (stack.upperdir !== undefined && stack.workdir !== undefined) {
      return { lowerdirs: stack.lowerdirs, upperdir: stack.upperdir, workdir: stack.workdir, emptyLower: false, scratch: false }
    }
  }
  const own = stack.kind === 'container' && stack.upperdir !== undefined ? [stack.upperdir] : []
  const lowerdirs = [...own, ...stack.lowerdirs]
  const plan: MountPlan = { lowerdirs, emptyLower: lowerdirs.length === 0, scratch: request.rw && !given }
  if (given) {
    plan.upperdir = resolvePath(request.upper as string)
    plan.workdir = resolvePath(request.work as string)
  }
  return plan
}

/** One path inside a `-o` option list: `\` `:` `,` are escaped with a backslash. */
export function escapeOptionPath (path: string): string {
  return path.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,')
}

/** The `-o` option list of the ordinary mount command. */
export function mountOptions (lowerdirs: readonly string[], upperdir?: string, workdir?: string): string {
  let options = `lowerdir=${lowerdirs.map(escapeOptionPath).join(':')}`
  if (upperdir !== undefined && workdir !== undefined) options += `,upperdir=${escapeOptionPath(upperdir)},workdir=${escapeOptionPath(workdir)}`
  return options
}

/** Runs `node main.js ARGS` with ENV added to ours, sharing our stdio; resolves with its exit code. */
async function runMain (args: string[], env: Record<string, string>): Promise<number> {
  return await new Promise((resolveCode, reject) => {
    const child = spawn(process.execPath, [join(__dirname, 'main.js'), ...args], { stdio: 'inherit', env: { ...process.env, ...env } })
    child.on('error', (err) => reject(new CliError(`cannot run the mount command: ${err.message}`)))
    child.on('exit', (code) => resolveCode(code ?? 1))
  })
}

export interface MountImageIO {
  stdout?: Output
  /** Runs the mount command with these arguments (after main.js) and extra environment; default: a child node process. */
  run?: (args: string[], env: Record<string, string>) => Promise<number>
  /** mountinfo file for the "running" check (tests); default /proc/self/mountinfo. */
  mountinfo?: string
}

/**
 * Makes the temporary directories a plan asks for; returns the final layers, what to clean up on
 * failure, and the empty stand-in lowerdir if one was made (the daemon removes it after unmount).
 */
async function materialize (plan: MountPlan, stdout: Output): Promise<{ lowerdirs: string[], upperdir?: string, workdir?: string, temporary: string[], standIn?: string }> {
  const temporary: string[] = []
  const layers: { lowerdirs: string[], upperdir?: string, workdir?: string, standIn?: string } = { lowerdirs: plan.lowerdirs }
  if (plan.upperdir !== undefined) layers.upperdir = plan.upperdir
  if (plan.workdir !== undefined) layers.workdir = plan.workdir
  if (plan.emptyLower) {
    const empty = await mkdtemp(join(tmpdir(), 'ovlfs-empty-'))
    temporary.push(empty)
    layers.lowerdirs = [empty]
    layers.standIn = empty
  }
  if (plan.scratch) {
    const scratch = await mkdtemp(join(tmpdir(), 'ovlfs-scratch-'))
    temporary.push(scratch)
    await mkdir(join(scratch, 'upper'))
    await mkdir(join(scratch, 'work'))
    layers.upperdir = join(scratch, 'upper')
    layers.workdir = join(scratch, 'work')
    stdout.write(`${scratch}\n`)
  }
  return { ...layers, temporary }
}

/**
 * `ovlfs mount-image [--docker-root DIR] REF MOUNTPOINT [--rw] [--upper DIR --work DIR] [--force]`:
 * resolves REF and runs the ordinary mount command on its stack; returns the
 * mount command's exit code. `argv` is what follows `mount-image`.
 */
export async function mountImageCommand (argv: string[], io: MountImageIO = {}): Promise<number> {
  const parsed = parseCommandArgs(argv, {
    'docker-root': { type: 'string' },
    rw: { type: 'boolean' },
    upper: { type: 'string' },
    work: { type: 'string' },
    force: { type: 'boolean' },
    'log-level': { type: 'string' },
    'log-file': { type: 'string' }
  }, USAGE)
  const [ref, mountpoint, ...extra] = parsed.positionals
  if (ref === undefined || mountpoint === undefined || extra.length > 0) throw new CliError(`expected REF and MOUNTPOINT; usage: ${USAGE}`)
  const root = stringOption(parsed, 'docker-root') ?? DEFAULT_DOCKER_ROOT
  const stack = await resolve(root, ref, io.mountinfo === undefined ? {} : { mountinfo: io.mountinfo })
  const request: MountRequest = { rw: flag(parsed, 'rw'), force: flag(parsed, 'force') }
  const upper = stringOption(parsed, 'upper')
  const work = stringOption(parsed, 'work')
  if (upper !== undefined) request.upper = upper
  if (work !== undefined) request.work = work
  const plan = planMount(stack, request)
  const layers = await materialize(plan, io.stdout ?? process.stdout)
  // A container's own upper layer is mounted as Docker's kernel overlay mounts it (index=off, metacopy off), so
  // that Docker can still read everything written through ovlfs (a metadata-only copy would be EPERM to it).
  const dockerUpper = plan.upperdir !== undefined && request.upper === undefined
  const options = mountOptions(layers.lowerdirs, layers.upperdir, layers.workdir) + (dockerUpper ? ',index=off,metacopy=off' : '')
  const env: Record<string, string> = layers.standIn === undefined ? {} : { [STAND_IN_ENV]: layers.standIn }
  // The daemon's log, as for the ordinary mount command (which checks the values).
  const logLevel = stringOption(parsed, 'log-level')
  const logFile = stringOption(parsed, 'log-file')
  const logging = [...(logLevel === undefined ? [] : ['--log-level', logLevel]), ...(logFile === undefined ? [] : ['--log-file', resolvePath(logFile)])]
  const code = await (io.run ?? runMain)([...logging, '-o', options, resolvePath(mountpoint)], env)
  if (code !== 0) {
    for (const dir of layers.temporary) await rm(dir, { recursive: true, force: true })
  }
  return code
}
