#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=10
// The V8 flags above are the daemon's (DAEMON_NODE_FLAGS in mount.ts, which a test keeps equal):
// with them `ovlfs -f`, which serves the mount in this very process, has the daemon's memory
// bounds too (a cold find of the benchmark's tree: 95-96 MiB peak without them, 84-85 with).
// The libuv pool serves every fs call of the daemon; 4 threads are too few
// for concurrent FUSE requests. Read lazily by libuv, so set it before any I/O.
if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = '16'

import * as fs from 'node:fs'
import type { LevelWithSilent } from 'pino'
import { CliError } from './errors'
import { LOG_LEVELS, makeLogger, reportFatal } from './log'
import { DAEMON_FLAG, daemonize, serve, startedByDaemonize } from './mount'
import { validateLayers } from './validate'
import { parseMountOptions } from '../fuse/options'
import { MappingOptionError, fromMountOptions, type MappingOptions } from '../engine/mapping'

const USAGE = `usage:
  ovlfs [-f] [-d] [--log-level LEVEL] [--log-file FILE] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPTS] MOUNTPOINT
  ovlfs SOURCE MOUNTPOINT -o OPTS            (the form mount.fuse uses)
  ovlfs layers [--docker-root DIR] REF [--json]
  ovlfs mount-image [--docker-root DIR] REF MOUNTPOINT [--rw] [--upper DIR --work DIR] [--force] [--log-level LEVEL] [--log-file FILE]`

interface MountArgs {
  foreground: boolean
  debug: boolean
  level: LevelWithSilent
  /** Where the log goes (appended); without it a daemon writes to the kernel's log when it may (daemonize). */
  logFile: string | undefined
  optionLists: string[]
  positionals: string[]
  daemon: boolean
}

export function parseMountArgs (argv: readonly string[]): MountArgs {
  const a: MountArgs = { foreground: false, debug: false, level: 'warn', logFile: undefined, optionLists: [], positionals: [], daemon: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-f') a.foreground = true
    else if (arg === '-d' || arg === '--debug') { a.debug = true; a.foreground = true; a.level = 'debug' } else if (arg === '-s') { /* libfuse's single-thread flag: accepted, requests are async anyway */ } else if (arg === DAEMON_FLAG) a.daemon = true
    else if (arg === '--log-level') a.level = logLevel(argv[++i])
    else if (arg.startsWith('--log-level=')) a.level = logLevel(arg.slice('--log-level='.length))
    else if (arg === '--log-file') a.logFile = logFile(argv[++i])
    else if (arg.startsWith('--log-file=')) a.logFile = logFile(arg.slice('--log-file='.length))
    else if (arg === '-o') {
      const v = argv[++i]
      if (v === undefined) throw new CliError('-o needs an option list')
      a.optionLists.push(v)
    } else if (arg.startsWith('-o')) a.optionLists.push(arg.slice(2))
    else if (arg.startsWith('-') && arg !== '-') throw new CliError(`unknown flag: ${arg} (see ovlfs --help)`)
    else a.positionals.push(arg)
  }
  return a
}

function logLevel (v: string | undefined): LevelWithSilent {
  if (v === undefined || !LOG_LEVELS.includes(v)) throw new CliError(`--log-level takes one of ${LOG_LEVELS.join(', ')}`)
  return v as LevelWithSilent
}

function logFile (v: string | undefined): string {
  if (v === undefined || v === '') throw new CliError('--log-file needs a file name')
  return v
}

/** The log file, opened for appending (made 0640 if new), before anything is mounted: a bad path is a usage error. */
function openLogFile (file: string): number {
  try {
    return fs.openSync(file, 'a', 0o640)
  } catch (err) {
    throw new CliError(`cannot open the log file ${file}: ${(err as Error).message}`)
  }
}

async function mountMain (argv: readonly string[]): Promise<number> {
  const args = parseMountArgs(argv)
  if (args.positionals.length < 1 || args.positionals.length > 2) throw new CliError('expected a MOUNTPOINT (or SOURCE MOUNTPOINT); see ovlfs --help')
  if (args.daemon && !startedByDaemonize()) throw new CliError(`${DAEMON_FLAG} is internal: ovlfs passes it to the daemon it starts; use -f to stay in the foreground`)
  const mountpoint = args.positionals[args.positionals.length - 1] as string
  const options = parseMountOptions(args.optionLists)
  if (options.fsname === undefined && args.positionals.length === 2) options.fsname = args.positionals[0]
  const layers = validateLayers(options, mountpoint)
  const mapping = mappingOptions(options.mapping)
  if (!args.daemon) {
    for (const w of mapping.warnings) process.stderr.write(`ovlfs: warning: ${printable(w)}\n`)
    for (const o of mapping.ignored) process.stderr.write(`ovlfs: warning: unknown option ${printable(o)} ignored\n`)
    for (const o of options.unimplemented) process.stderr.write(`ovlfs: warning: option ${printable(o)} is not implemented yet; ignored\n`)
    for (const o of options.unknown) process.stderr.write(`ovlfs: warning: unknown option ${printable(o)} ignored\n`)
  }
  // A daemon's stderr is the log file already (daemonize), or the kernel's log.
  const logFile = args.logFile !== undefined && !args.daemon ? openLogFile(args.logFile) : undefined
  if (!args.foreground && !args.daemon) return await daemonize(argv, __filename, logFile)
  const logFd = logFile ?? 2
  const log = makeLogger(args.level, logFd)
  process.on('uncaughtExceptionMonitor', (err, origin) => reportFatal(err, origin, logFd))
  return await serve({ layers, options, mapping, log, daemon: args.daemon })
}

function mappingOptions (opts: readonly string[]): MappingOptions {
  try {
    return fromMountOptions(opts)
  } catch (err) {
    if (err instanceof MappingOptionError) throw new CliError(err.message)
    throw err
  }
}

/** One line, whatever paths the message quotes: control characters shown as escapes. */
export function printable (s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => c === '\n' ? '\\n' : c === '\t' ? '\\t' : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))
}

export async function main (argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv
  if (first === '-h' || first === '--help') {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (first === 'layers') return await (await import('./layers')).layersCommand(rest)
  if (first === 'mount-image') return await (await import('./mount-image')).mountImageCommand(rest)
  return await mountMain(argv)
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
      // A mount leaves the FUSE thread behind; end the process once the mount command is done.
      if (!['layers', 'mount-image', '-h', '--help'].includes(process.argv[2] ?? '')) process.exit(code)
    },
    (err: unknown) => {
      const message = err instanceof CliError ? err.message : `internal error: ${String((err as Error)?.message ?? err)}`
      process.stderr.write(`ovlfs: ${printable(message)}\n`)
      process.exit(err instanceof CliError ? err.exitCode : 1)
    },
  )
}
