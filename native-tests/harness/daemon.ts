// Finding, killing and watching the daemon behind a FUSE mount made by the tests.
//
// The daemon of a mount is found by its command line: the one process (other than
// this one) whose argv holds the mount point as a word. Mount points are unique temp
// dirs made by the tests, so only processes the tests started can match.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { isMounted } from './mounts'

/** Pids of live (non-zombie) processes, other than this one, whose argv has `mnt` as a word. */
export function pidsWithArg (mnt: string): number[] {
  const out: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    if (pid === process.pid) continue
    let argv: string[]
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    } catch { continue }
    if (!argv.includes(mnt)) continue
    const st = procState(pid)
    if (st !== null && st !== 'Z') out.push(pid)
  }
  return out
}

/** The pid of the daemon serving `mnt`; throws unless exactly one process matches. */
export function daemonPid (mnt: string): number {
  let pids = pidsWithArg(mnt)
  // ovlfs's daemon carries --ovlfs-daemon; a stand-in (OVLFS_CMD) may not.
  const marked = pids.filter(p => readArgv(p).includes('--ovlfs-daemon'))
  if (marked.length > 0) pids = marked
  if (pids.length !== 1) throw new Error(`expected one daemon for ${mnt}, found ${pids.length}: ${pids.map(p => `${p} [${readArgv(p).join(' ')}]`).join('; ')}`)
  return pids[0]!
}

export function readArgv (pid: number): string[] {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean) } catch { return [] }
}

/** The state letter of a process (R, S, D, Z, …), or null when it is gone. */
export function procState (pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch { return null }
}

/** Whether the process is still running (a zombie has finished every syscall: not alive). */
export function alive (pid: number): boolean {
  const s = procState(pid)
  return s !== null && s !== 'Z'
}

/** Wait until `pid` is gone or a zombie (all its threads are done). */
export async function waitGone (pid: number, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (alive(pid)) {
    if (Date.now() > end) throw new Error(`process ${pid} still alive after ${timeoutMs} ms (state ${procState(pid)})`)
    await sleep(5)
  }
}

/** Open file descriptors of a process. */
export function fdCount (pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

/** `fusermount -u -z MNT` (what a stale mount needs); throws if it is still mounted afterwards. */
export async function lazyUnmount (mnt: string): Promise<void> {
  for (let i = 0; i < 50 && isMounted(mnt); i++) {
    spawnSync('fusermount', ['-u', '-z', mnt], { stdio: 'ignore' })
    if (isMounted(mnt)) await sleep(20 * (i + 1))
  }
  if (isMounted(mnt)) throw new Error(`fusermount -u -z ${mnt} did not unmount it`)
}

export function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * The daemon's JSON log line (--log-level info) whose msg is `msg`, parsed: the counts it logs
 * when it unmounts. Throws, naming the log and showing its end, when there is no such line.
 */
export function logLine<T> (log: string, msg: string): T {
  const text = fs.readFileSync(log, 'utf8')
  const line = text.split('\n').find(l => l.includes(`"msg":${JSON.stringify(msg)}`))
  if (line === undefined) throw new Error(`no "${msg}" line in ${log}:\n${text.slice(-4000)}`)
  return JSON.parse(line) as T
}
