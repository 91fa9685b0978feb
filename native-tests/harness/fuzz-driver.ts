// Running many command lines of the ovlfs CLI cheaply and faithfully (fuzz-cli.test.ts).
//
// A Node process costs ~0.15 s of CPU before it runs a line of ovlfs, so a few thousand cases,
// one process each, take minutes on two shared cores. Most cases therefore run in a *driver*:
// one Node process that loads dist/cli/main.js as its main module once per case
// (Module.runMain, with require.main === the CLI, so the CLI's own entry code runs: the same
// exit codes and the same "ovlfs: " line), with process.exit intercepted. Everything the case
// writes to fd 1 and fd 2 (its children's output too) is separated by NUL-framed markers, which
// a command line can never contain. An uncaught exception or unhandled rejection is reported as
// a crash of that case. Commands that would serve in the foreground (-f, -d, --debug, the
// daemon's own flag) never run in the driver. A sample of the cases runs as real processes too,
// and both ways must give the same result (fuzz-cli.test.ts checks that), so the driver is
// itself under test.
//
// After each case the driver records the mounts below the fuzz root, unmounts them (abort of the
// FUSE connection if fusermount does not finish; the driver never touches the mount's files),
// and empties the case's TMPDIR after noting what was left there.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { forceUnmountUnder, mountsUnder } from './hostile-guard'

export interface FuzzCase {
  id: number
  argv: string[]
  /** which entry point: 'mount' | 'layers' | 'mount-image' | 'help' */
  kind: string
}

export interface CaseResult {
  id: number
  /** exit status (null when killed by a signal or when the case crashed the driver) */
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
  /** uncaught exception / unhandled rejection / synchronous throw in the driver */
  crash: string | null
  timedOut: boolean
  /** mounts below the fuzz root right when the command returned */
  mountsAtExit: string[]
  /** mounts still there after the cleanup (must be none) */
  mountsAfterCleanup: string[]
  /** entries left in the case's TMPDIR (ovlfs-scratch-*, ovlfs-empty-*) */
  tmpLeft: string[]
  ms: number
  via: 'driver' | 'process'
}

/** Shared by the driver (in its JS) and by the test process (for real runs): mounts and cleanup. */
const CLEANUP_JS = String.raw`
const fs = require('fs'); const cp = require('child_process'); const path = require('path')
function mountsUnder (dir) {
  const unesc = s => s.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)))
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map(line => {
    const [left, right] = line.split(' - '); const f = left.split(' ')
    return { mnt: unesc(f[4]), dev: f[2], fstype: right.split(' ')[0] }
  }).filter(m => m.mnt === dir || m.mnt.startsWith(dir + '/')).sort((a, b) => b.mnt.length - a.mnt.length)
}
function abortFuse (m) {
  const minor = m.dev.split(':')[1]
  cp.spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
    'mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null; test -e "/sys/fs/fuse/connections/$1/abort" && echo 1 > "/sys/fs/fuse/connections/$1/abort"', 'sh', minor],
    { timeout: 10000, stdio: 'ignore' })
}
function cleanupMounts (dir) {
  for (let round = 0; round < 10; round++) {
    const left = mountsUnder(dir)
    if (left.length === 0) return
    const m = left[0]
    const fuse = m.fstype.startsWith('fuse')
    const r = fuse ? cp.spawnSync('fusermount', ['-u', m.mnt], { timeout: 5000, stdio: 'ignore' })
      : cp.spawnSync('umount', ['--no-canonicalize', m.mnt], { timeout: 5000, stdio: 'ignore' })
    if (r.status === 0 && !mountsUnder(dir).some(x => x.mnt === m.mnt && x.dev === m.dev)) continue
    if (fuse) abortFuse(m)
    cp.spawnSync('umount', ['--no-canonicalize', '-l', m.mnt], { timeout: 5000, stdio: 'ignore' })
  }
}
// Directories the cases may write into (a workdir gets work/ made in it): emptied after each
// case, so that every case finds the pool as it was made. [dir, names to keep]
function resetPool (list) {
  for (const [dir, keep] of list) {
    let names = []
    try { names = fs.readdirSync(dir) } catch { fs.mkdirSync(dir, { recursive: true }) }
    for (const n of names) if (!keep.includes(n)) fs.rmSync(path.join(dir, n), { recursive: true, force: true })
  }
}
function emptyTmp (tmp) {
  let left = []
  try { left = fs.readdirSync(tmp) } catch { fs.mkdirSync(tmp, { recursive: true }) }
  for (const n of left) fs.rmSync(path.join(tmp, n), { recursive: true, force: true })
  return left
}
`

const DRIVER_JS = CLEANUP_JS + String.raw`
const Module = require('module')
const CLI = process.env.OVLFS_FUZZ_CLI
const ROOT = process.env.OVLFS_FUZZ_ROOT
const TMP = process.env.TMPDIR
const TIMEOUT = Number(process.env.OVLFS_FUZZ_CASE_TIMEOUT || 45000)
const RESET = JSON.parse(process.env.OVLFS_FUZZ_RESET || '[]')
const cases = JSON.parse(fs.readFileSync(0, 'utf8'))
const realExit = process.exit.bind(process)
let cur = null
process.exit = function (code) {
  if (cur === null) return realExit(code)
  if (cur.exit === undefined) cur.exit = code === undefined ? (process.exitCode === undefined ? 0 : process.exitCode) : code
  cur.wake()
}
const onCrash = (what) => (e) => {
  const text = what + ': ' + ((e && e.stack) || String(e))
  if (cur === null) { fs.writeSync(3, JSON.stringify({ id: -1, crash: text }) + '\n'); return }
  if (cur.crash === null) cur.crash = text
  cur.wake()
}
process.on('uncaughtException', onCrash('uncaughtException'))
process.on('unhandledRejection', onCrash('unhandledRejection'))
const SEP = '\u0000'
async function runOne (c) {
  process.exitCode = undefined
  process.argv = [process.execPath, CLI, ...c.argv]
  delete require.cache[CLI]
  let wake
  const woke = new Promise(r => { wake = r })
  cur = { exit: undefined, crash: null, timedOut: false, wake }
  const t0 = Date.now()
  const poll = setInterval(() => { if (process.exitCode !== undefined) wake() }, 2)
  const timer = setTimeout(() => { cur.timedOut = true; wake() }, TIMEOUT)
  try { Module.runMain(CLI) } catch (e) { cur.crash = 'threw: ' + ((e && e.stack) || String(e)); wake() }
  await woke
  clearInterval(poll); clearTimeout(timer)
  await new Promise(r => setImmediate(r))
  const code = cur.exit !== undefined ? cur.exit : (process.exitCode === undefined ? null : process.exitCode)
  const mountsAtExit = mountsUnder(ROOT).map(m => m.mnt)
  cleanupMounts(ROOT)
  const mountsAfterCleanup = mountsUnder(ROOT).map(m => m.mnt)
  const tmpLeft = emptyTmp(TMP)
  if (mountsAfterCleanup.length === 0) resetPool(RESET)
  const res = { id: c.id, code, signal: null, crash: cur.crash, timedOut: cur.timedOut, mountsAtExit, mountsAfterCleanup, tmpLeft, ms: Date.now() - t0, via: 'driver' }
  cur = null
  process.exitCode = undefined
  fs.writeSync(1, SEP + 'END ' + c.id + SEP)
  fs.writeSync(2, SEP + 'END ' + c.id + SEP)
  fs.writeSync(3, JSON.stringify(res) + '\n')
}
;(async () => {
  for (const c of cases) await runOne(c)
  fs.writeSync(3, JSON.stringify({ id: -2 }) + '\n')
  realExit(0)
})()
`

/** Split a stream by the driver's NUL-framed end markers: id -> text. */
function splitFramed (text: string): Map<number, string> {
  const out = new Map<number, string>()
  const re = /\u0000END (\d+)\u0000/g
  let last = 0
  for (let m; (m = re.exec(text)) !== null;) {
    out.set(Number(m[1]), text.slice(last, m.index))
    last = m.index + m[0].length
  }
  return out
}

export interface DriverOptions {
  cli: string
  root: string
  cwd: string
  tmp: string
  /** directories emptied after each case (but for the names listed) */
  reset?: Array<[string, string[]]>
  env?: NodeJS.ProcessEnv
}

/**
 * Run cases in driver processes (a new one after a case that kills the driver). Every case gets
 * a result; a case during which the driver died gets crash = how it died.
 */
export async function runInDriver (cases: FuzzCase[], opts: DriverOptions): Promise<CaseResult[]> {
  const results: CaseResult[] = []
  let todo = cases
  while (todo.length > 0) {
    const batch = await driverOnce(todo, opts)
    results.push(...batch)
    const done = new Set(batch.map(r => r.id))
    todo = todo.filter(c => !done.has(c.id))
  }
  return results
}

async function driverOnce (cases: FuzzCase[], opts: DriverOptions): Promise<CaseResult[]> {
  const child = spawn(process.execPath, ['-e', DRIVER_JS], {
    cwd: opts.cwd,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env, OVLFS_FUZZ_CLI: opts.cli, OVLFS_FUZZ_ROOT: opts.root, OVLFS_FUZZ_RESET: JSON.stringify(opts.reset ?? []), TMPDIR: opts.tmp },
  })
  let out = ''
  let err = ''
  let status = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d })
  const fd3 = child.stdio[3] as NodeJS.ReadableStream
  fd3.setEncoding('utf8')
  fd3.on('data', (d: string) => { status += d })
  const exit = new Promise<{ code: number | null, signal: string | null }>(resolve => child.on('close', (code, signal) => resolve({ code, signal })))
  child.stdin!.end(JSON.stringify(cases))
  const how = await exit
  const outs = splitFramed(out)
  const errs = splitFramed(err)
  const results: CaseResult[] = []
  const byId = new Map(cases.map(c => [c.id, c]))
  let driverCrash: string | null = null
  for (const line of status.split('\n').filter(Boolean)) {
    const r = JSON.parse(line) as Partial<CaseResult> & { id: number }
    if (r.id === -1) { driverCrash = r.crash ?? 'driver crash'; continue }
    if (r.id < 0 || !byId.has(r.id)) continue
    results.push({
      id: r.id, code: r.code ?? null, signal: null, stdout: outs.get(r.id) ?? '', stderr: errs.get(r.id) ?? '',
      crash: r.crash ?? null, timedOut: r.timedOut ?? false, mountsAtExit: r.mountsAtExit ?? [],
      mountsAfterCleanup: r.mountsAfterCleanup ?? [], tmpLeft: r.tmpLeft ?? [], ms: r.ms ?? 0, via: 'driver',
    })
  }
  const finished = status.includes('{"id":-2}')
  if (!finished) {
    // The driver died during the first case without a result: that case is the culprit.
    const next = cases.find(c => !results.some(r => r.id === c.id))
    if (next !== undefined) {
      const tailOut = out.slice(out.lastIndexOf('\u0000') + 1)
      const tailErr = err.slice(err.lastIndexOf('\u0000') + 1)
      results.push({
        id: next.id, code: how.code, signal: how.signal, stdout: tailOut, stderr: tailErr,
        crash: `the driver process died (code ${how.code}, signal ${how.signal})${driverCrash ? ': ' + driverCrash : ''}`,
        timedOut: false, mountsAtExit: [], mountsAfterCleanup: [], tmpLeft: [], ms: 0, via: 'driver',
      })
    }
  }
  return results
}

/** Empty a TMPDIR; what was in it. */
function emptyTmp (tmp: string): string[] {
  let left: string[] = []
  try { left = fs.readdirSync(tmp) } catch { fs.mkdirSync(tmp, { recursive: true }) }
  for (const n of left) fs.rmSync(path.join(tmp, n), { recursive: true, force: true })
  return left
}

/**
 * Run one case as a real process (cwd, TMPDIR as given). A command that stays in the
 * foreground with its mount live (-f, -d) is considered serving once the mount has been there
 * for a second and a half: the mount is then removed and the command must exit. Mounts are
 * cleaned up afterwards.
 */
export async function runAsProcess (c: FuzzCase, cmd: string[], opts: DriverOptions & { limitMs?: number }): Promise<CaseResult> {
  const t0 = Date.now()
  let child: ReturnType<typeof spawn>
  try {
    child = spawn(cmd[0]!, [...cmd.slice(1), ...c.argv], {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env, TMPDIR: opts.tmp },
    })
  } catch (e) {
    return { id: c.id, code: null, signal: null, stdout: '', stderr: '', crash: `the test could not start the command: ${String(e)}`, timedOut: false, mountsAtExit: [], mountsAfterCleanup: [], tmpLeft: [], ms: 0, via: 'process' }
  }
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const state: { how: { code: number | null, signal: string | null } | null } = { how: null }
  let spawnError: string | null = null
  const exit = new Promise<{ code: number | null, signal: string | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }))
    child.on('error', (e) => { spawnError = String(e); resolve({ code: null, signal: null }) })
  })
  void exit.then((h) => { state.how = h })
  const limitMs = opts.limitMs ?? 45_000
  let timedOut = false
  let mountsAtExit: string[] = []
  let mountedSince: number | null = null
  let unmountedForIt = false
  for (;;) {
    await sleep(50)
    if (state.how !== null) {
      if (!unmountedForIt) mountsAtExit = mountsUnder(opts.root).map(m => m.mnt)
      break
    }
    const live = mountsUnder(opts.root)
    if (live.length > 0 && mountedSince === null) mountedSince = Date.now()
    if (!unmountedForIt && mountedSince !== null && Date.now() - mountedSince > 1500) {
      mountsAtExit = live.map(m => m.mnt) // serving in the foreground: unmount, then it must exit
      forceUnmountUnder(opts.root)
      unmountedForIt = true
    }
    if (Date.now() - t0 > limitMs) {
      timedOut = true
      child.kill('SIGKILL')
      await exit
      break
    }
  }
  const final = (await exit)
  forceUnmountUnder(opts.root)
  const mountsAfterCleanup = mountsUnder(opts.root).map(m => m.mnt)
  const tmpLeft = emptyTmp(opts.tmp)
  if (mountsAfterCleanup.length === 0) {
    for (const [dir, keep] of opts.reset ?? []) {
      let names: string[] = []
      try { names = fs.readdirSync(dir) } catch { fs.mkdirSync(dir, { recursive: true }) }
      for (const n of names) if (!keep.includes(n)) fs.rmSync(path.join(dir, n), { recursive: true, force: true })
    }
  }
  const crash = spawnError === null ? null : `the test could not start the command: ${spawnError as string}`
  return { id: c.id, code: final.code, signal: final.signal, stdout, stderr, crash, timedOut, mountsAtExit, mountsAfterCleanup, tmpLeft, ms: Date.now() - t0, via: 'process' }
}

function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }
