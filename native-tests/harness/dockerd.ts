// A private, offline Docker engine (Debian's docker.io, 20.10) for the real-dockerd tests.
//
// Everything it owns lives below one fresh directory /tmp/ovlfs-test-docker-XXXXXX (data root,
// exec root, a containerd of its own, socket, pid files, log); the daemons' command lines are
// the ones in scripts/dockerd-env.sh (`run DIR`: containerd in the background, then exec
// dockerd), started here under `setpriv --pdeathsig TERM` so that dockerd - and with it its
// containerd and containers - goes when the test process dies. stop() - and, as a safety net,
// the process's exit and SIGINT/SIGTERM - runs `scripts/dockerd-env.sh stop DIR`: docker kill of
// running containers, SIGTERM to dockerd by its pid, wait, SIGKILL, then containerd and any other
// pid found in the pid files below DIR, every mount below DIR (deepest first, lazily if need be),
// the containers' cgroups, and DIR itself. No process is ever looked up by name. Only a SIGKILL
// of the test process leaves DIR behind (the daemons still stop); `bash scripts/dockerd-env.sh
// stop DIR` removes it.
//
// Missing docker.io or a daemon that does not come up is an Error saying so (tests fail, never skip).
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

const REPO = path.resolve(__dirname, '..', '..')
export const DOCKERD_ENV = path.join(REPO, 'scripts', 'dockerd-env.sh')
/** docker.io's own client: a newer `docker` may come first on PATH, and its API version may not fit. */
export const DOCKER = '/usr/bin/docker'
export const DOCKERD = '/usr/sbin/dockerd'
export const DOCKER_TEMP_PREFIX = path.join(os.tmpdir(), 'ovlfs-test-docker-')

export interface DockerResult { status: number | null, stdout: string, stderr: string }

export interface DockerRunOptions {
  cwd?: string
  input?: string | Buffer
  timeoutMs?: number
}

export class PrivateDockerd {
  /** Set once stop() has run (or the exit hook did). */
  stopped = false

  constructor (
    /** The one directory everything lives in (realpath). */
    readonly dir: string,
    /** The dockerd's pid (what dockerd-env.sh `run` exec'd into). */
    readonly pid: number,
  ) {}

  get dataRoot (): string { return path.join(this.dir, 'data') }
  get socket (): string { return path.join(this.dir, 'docker.sock') }
  get log (): string { return path.join(this.dir, 'dockerd.log') }
  /** A fresh directory of our own below dir (mount points, build contexts, exports). */
  scratch (name: string): string {
    const p = path.join(this.dir, 'scratch', name)
    fs.mkdirSync(p, { recursive: true })
    return p
  }

  /** `docker -H unix://SOCK ARGS`; never throws. */
  tryDocker (args: string[], opts: DockerRunOptions = {}): DockerResult {
    const r: SpawnSyncReturns<string> = spawnSync(DOCKER, ['-H', `unix://${this.socket}`, ...args], {
      encoding: 'utf8',
      cwd: opts.cwd,
      input: opts.input,
      timeout: opts.timeoutMs ?? 180_000,
      maxBuffer: 256 << 20,
      env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false', DOCKER_CONFIG: path.join(this.dir, 'client-config') },
    })
    return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
  }

  /** `docker ARGS`, stdout; throws with the command and its stderr when it fails. */
  docker (args: string[], opts: DockerRunOptions = {}): string {
    const r = this.tryDocker(args, opts)
    if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.status}):\n${r.stderr.trim()}\n${r.stdout.trim().split('\n').slice(-20).join('\n')}`)
    return r.stdout
  }

  /** `docker inspect --type TYPE REF`, the one object. */
  inspect<T = Record<string, unknown>> (ref: string, type: 'image' | 'container'): T {
    const all = JSON.parse(this.docker(['inspect', '--type', type, ref])) as T[]
    if (all.length !== 1) throw new Error(`docker inspect ${ref}: ${all.length} results`)
    return all[0]!
  }

  /** Stop the daemon, unmount and remove everything (idempotent). Throws if something is left. */
  stop (): void {
    if (this.stopped) return
    this.stopped = true
    unhook(this)
    stopDir(this.dir, this.pid)
  }
}

const running = new Set<PrivateDockerd>()
let hooked = false

function unhook (d: PrivateDockerd): void { running.delete(d) }

function hookExit (): void {
  if (hooked) return
  hooked = true
  process.once('exit', () => {
    for (const d of [...running]) { try { d.stop() } catch (e) { console.error(String(e)) } }
  })
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
    process.once(sig, () => { process.exit(128 + n) }) // the exit hook above does the work
  }
}

function alive (pid: number): boolean {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    return !/^State:\s+[ZX]/m.test(status)
  } catch { return false }
}

/** dockerd-env.sh stop DIR, then check that it did its job. */
function stopDir (dir: string, pid: number | undefined): void {
  const r = spawnSync('bash', [DOCKERD_ENV, 'stop', dir], { encoding: 'utf8', timeout: 120_000 })
  const problems: string[] = []
  if (r.status !== 0) problems.push(`dockerd-env.sh stop exited with ${r.status}: ${(r.stderr ?? '') + (r.error ? String(r.error) : '')}`.trim())
  if (pid !== undefined && alive(pid)) problems.push(`dockerd (pid ${pid}) is still running`)
  if (fs.existsSync(dir)) problems.push(`${dir} still exists`)
  if (problems.length > 0) throw new Error(`stopping the private dockerd: ${problems.join('; ')}`)
}

function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

function tail (file: string, lines = 25): string {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') } catch { return '(no log)' }
}

/** Throws, saying what is missing, unless docker.io (dockerd 20.10 and its client) and friends are here. */
export function assertDockerInstalled (): void {
  const missing: string[] = []
  for (const p of [DOCKERD, DOCKER, '/usr/bin/containerd', '/usr/sbin/runc']) {
    try { fs.accessSync(p, fs.constants.X_OK) } catch { missing.push(p) }
  }
  if (missing.length > 0) {
    throw new Error(`docker.io is not installed (missing ${missing.join(', ')}): the real-dockerd tests need Debian's docker.io; ` +
      'run scripts/setup.sh or apt-get install docker.io')
  }
  if (spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).status !== 0) throw new Error('setpriv (util-linux) is not installed')
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('the real-dockerd tests must run as root')
}

/**
 * Start a private dockerd and wait until it answers `docker version` (at most timeoutMs).
 * Throws, with the end of its log, when it exits early or does not come up; nothing is left behind then.
 */
export async function startDockerd (timeoutMs = 60_000): Promise<PrivateDockerd> {
  assertDockerInstalled()
  const dir = fs.realpathSync(fs.mkdtempSync(DOCKER_TEMP_PREFIX))
  const log = path.join(dir, 'dockerd.log')
  const fd = fs.openSync(log, 'w')
  // pdeathsig: if this test process dies, dockerd gets SIGTERM and shuts its containerd down.
  const child = spawn('setpriv', ['--pdeathsig', 'TERM', 'bash', DOCKERD_ENV, 'run', dir], { stdio: ['ignore', fd, fd] })
  fs.closeSync(fd)
  let exited: string | undefined
  child.on('exit', (code, signal) => { exited = `exited with ${code ?? signal}` })
  child.on('error', (e) => { exited = `could not be started: ${String(e)}` })
  const pid = child.pid
  const d = new PrivateDockerd(dir, pid ?? -1)
  running.add(d)
  hookExit()
  const fail = (why: string): never => {
    const logText = tail(log)
    try { d.stop() } catch (e) { console.error(String(e)) }
    throw new Error(`the private dockerd did not come up: ${why}. Its log ended with:\n${logText}`)
  }
  if (pid === undefined) fail('spawn gave no pid')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    await sleep(250)
    if (exited !== undefined) fail(`dockerd ${exited}`)
    if (fs.existsSync(d.socket) && d.tryDocker(['version'], { timeoutMs: 10_000 }).status === 0) break
    if (Date.now() > deadline) fail(`no answer on ${d.socket} within ${timeoutMs} ms`)
  }
  const info = d.tryDocker(['info', '--format', '{{.Driver}} {{.ServerVersion}}'])
  if (info.status !== 0 || !info.stdout.startsWith('overlay2 ')) fail(`docker info says ${JSON.stringify(info.stdout.trim() || info.stderr.trim())}, expected the overlay2 driver`)
  return d
}
