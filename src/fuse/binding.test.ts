/**
 * Real-mount tests of the patched fuse-native binding (needs root, /dev/fuse,
 * fusermount, setpriv, python3, and `node scripts/patch-fuse-native.js` having
 * run — it is the postinstall).
 *
 * How it runs: the test transpiles src/fuse/binding.ts (types stripped, no
 * type check; `npm run typecheck` covers that) into
 * node_modules/.cache/ovlfs-binding-test-<pid>/, where `require('fuse-native')`
 * resolves, so no prior `npm run build` is needed and a stale dist/ cannot be
 * picked up. The filesystem (src/fuse/__fixtures__/memfs-child.js) is served by
 * a CHILD process: a process must never access its own FUSE mount
 * synchronously. The child logs every op it receives (with the caller context)
 * as JSON lines, written before it answers, so they are on disk once the
 * command here returns.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import ts from 'typescript'

const ROOT = path.resolve(__dirname, '..', '..')
const FIXTURE = path.join(__dirname, '__fixtures__', 'memfs-child.js')
const UTIME_NOW = (1 << 30) - 1
const UTIME_OMIT = (1 << 30) - 2
const BIG_INO = 0x1_2345_6789
const O_ACCMODE = 0o3
const O_WRONLY = 0o1
const O_CREAT = 0o100
const O_EXCL = 0o200

function haveTool(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}
// Mounting needs root (allow_other, setpriv) and the FUSE device + helpers.
const CAN_MOUNT = process.getuid?.() === 0 && fs.existsSync('/dev/fuse') &&
  ['fusermount', 'setpriv', 'python3', 'stat', 'touch'].every(haveTool)

interface LogEvent {
  op: string
  path?: string | null
  fh?: number
  mode?: number
  flags?: number
  atime?: { sec: number; nsec: number }
  mtime?: { sec: number; nsec: number }
  ctx: { uid: number; gid: number; pid: number; umask: number } | null
}

let cacheDir = ''
let bindingJs = ''
let base = ''
let mnt = ''
let logFile = ''
let child: ChildProcess | null = null
let childExit: Promise<number | null> = Promise.resolve(null)
let childStderr = ''

function transpileBinding(): string {
  cacheDir = path.join(ROOT, 'node_modules', '.cache', `ovlfs-binding-test-${process.pid}`)
  fs.mkdirSync(cacheDir, { recursive: true })
  const src = fs.readFileSync(path.join(__dirname, 'binding.ts'), 'utf8')
  const out = ts.transpileModule(src, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: 'binding.ts',
  })
  const file = path.join(cacheDir, 'binding.js')
  fs.writeFileSync(file, out.outputText)
  return file
}

function isMounted(dir: string): boolean {
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8')
  return info.split('\n').some((line) => line.split(' ')[4] === dir)
}

function events(op?: string): LogEvent[] {
  if (!fs.existsSync(logFile)) return []
  const all = fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEvent)
  return op ? all.filter((e) => e.op === op) : all
}

function lastEvent(op: string, p?: string): LogEvent {
  const list = events(op).filter((e) => p === undefined || e.path === p)
  const ev = list[list.length - 1]
  if (!ev) throw new Error(`no ${op} event${p ? ' for ' + p : ''}; log:\n${fs.readFileSync(logFile, 'utf8')}\nchild stderr:\n${childStderr}`)
  return ev
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' }, timeout: 30_000 })
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}; child stderr:\n${childStderr}`)), ms)
    p.then((v) => { clearTimeout(t); resolve(v) }, (e: unknown) => { clearTimeout(t); reject(e) })
  })
}

beforeAll(() => {
  bindingJs = transpileBinding()
})

afterAll(() => {
  if (cacheDir) fs.rmSync(cacheDir, { recursive: true, force: true })
})

async function startChild(): Promise<void> {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-binding-'))
  fs.chmodSync(base, 0o755) // uid 1000 must reach the mount point
  mnt = path.join(base, 'mnt')
  fs.mkdirSync(mnt, { mode: 0o755 })
  logFile = path.join(base, 'ops.jsonl')

  const proc = spawn(process.execPath, [FIXTURE, bindingJs, mnt, logFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  child = proc
  childExit = new Promise((resolve) => proc.on('exit', (code) => resolve(code)))
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { childStderr += d })
  const ready = new Promise<void>((resolve, reject) => {
    let out = ''
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      if (out.includes('READY')) resolve()
    })
    proc.on('exit', (code) => reject(new Error(`memfs child exited (${code}) before mounting:\n${childStderr}`)))
  })
  await withTimeout(ready, 20_000, 'memfs child mount')
  expect(isMounted(mnt)).toBe(true)
}

async function stopChild(): Promise<void> {
  try {
    if (mnt && isMounted(mnt)) spawnSync('fusermount', ['-u', mnt], { timeout: 10_000 })
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = await Promise.race([childExit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))])
      if (!exited && child.pid !== undefined) process.kill(child.pid, 'SIGKILL') // only the child we started
    }
    if (mnt && isMounted(mnt)) spawnSync('fusermount', ['-uz', mnt], { timeout: 10_000 })
  } finally {
    // Never rm -r through a live mount.
    if (base && !(mnt && isMounted(mnt))) fs.rmSync(base, { recursive: true, force: true })
  }
}

describe('patched fuse-native addon', () => {
  it('loads build/Release/fuse.node (not the unpatched prebuild) with the new exports', () => {
    const req = createRequire(path.join(ROOT, 'package.json'))
    const dir = path.dirname(req.resolve('fuse-native/package.json'))
    const gypBuild = req('node-gyp-build') as { path(dir: string): string; (dir: string): Record<string, unknown> }
    expect(gypBuild.path(dir)).toBe(path.join(dir, 'build', 'Release', 'fuse.node'))
    const addon = gypBuild(dir)
    expect(typeof addon.fuse_native_get_context).toBe('function')
    expect(typeof addon.fuse_native_inval_ino).toBe('function')
    expect(addon.op_destroy).toBe(34)
  })
})

describe('FuseMount (in process, no mount)', () => {
  type BindingModule = typeof import('./binding')
  const load = (): BindingModule => createRequire(bindingJs)(bindingJs) as BindingModule

  it('rejects an option string longer than 1023 bytes', () => {
    const { FuseMount } = load()
    const opts = { fsname: 'x', subtype: 'y', extraOptions: ['user_id=0', 'x'.repeat(1024)] }
    expect(() => new FuseMount('/nonexistent', {}, opts)).toThrow(/1024-byte buffer/)
    const ok = new FuseMount('/nonexistent', {}, { fsname: 'a,b', subtype: 'y', extraOptions: ['use_ino', 'attr_timeout=1'] })
    expect(ok.optionString).toBe('-ofsname=a\\,b,subtype=y,use_ino,attr_timeout=1')
  })

  it('context() outside a handler throws', () => {
    const { FuseMount } = load()
    expect(() => FuseMount.context()).toThrow(/outside a FUSE op handler/)
  })
})

describe.runIf(CAN_MOUNT)('FuseMount (child-served mount; root + /dev/fuse)', () => {
  beforeAll(startChild)
  afterAll(stopChild)

  it('passes a 64-bit st_ino through stat and readdir', () => {
    const p = path.join(mnt, 'big')
    expect(fs.statSync(p, { bigint: true }).ino).toBe(BigInt(BIG_INO))
    expect(sh('stat', ['-c', '%i', p]).trim()).toBe(String(BIG_INO))
    const dIno = sh('python3', ['-c', 'import os,sys; print([e.inode() for e in os.scandir(sys.argv[1]) if e.name == "big"][0])', mnt])
    expect(dIno.trim()).toBe(String(BIG_INO))
  })

  it('returns getattr nanosecond times exactly', () => {
    const st = fs.statSync(path.join(mnt, 'big'), { bigint: true })
    expect(st.atimeNs).toBe(1000000000123456789n)
    expect(st.mtimeNs).toBe(1000000001987654321n)
    expect(st.ctimeNs).toBe(1000000002000000001n)
  })

  it('delivers utimens with nanoseconds and reads them back', () => {
    const p = path.join(mnt, 'big')
    sh('touch', ['-d', '2020-01-02 03:04:05.123456789', p])
    const ev = lastEvent('utimens', '/big')
    expect(ev.atime).toEqual({ sec: 1577934245, nsec: 123456789 })
    expect(ev.mtime).toEqual({ sec: 1577934245, nsec: 123456789 })
    expect(sh('stat', ['-c', '%x|%y', p]).trim()).toBe('2020-01-02 03:04:05.123456789 +0000|2020-01-02 03:04:05.123456789 +0000')
    expect(fs.statSync(p, { bigint: true }).mtimeNs).toBe(1577934245123456789n)
  })

  it('passes UTIME_OMIT / UTIME_NOW raw (touch -m, touch -a, touch)', () => {
    const p = path.join(mnt, 'big')
    sh('touch', ['-m', '-d', '2021-06-07 08:09:10.5', p])
    let ev = lastEvent('utimens', '/big')
    expect(ev.atime?.nsec).toBe(UTIME_OMIT)
    expect(ev.mtime).toEqual({ sec: 1623053350, nsec: 500000000 })
    expect(sh('stat', ['-c', '%x|%y', p]).trim()).toBe('2020-01-02 03:04:05.123456789 +0000|2021-06-07 08:09:10.500000000 +0000')

    sh('touch', ['-a', '-d', '1999-12-31 23:59:59.000000001', p])
    ev = lastEvent('utimens', '/big')
    expect(ev.atime).toEqual({ sec: 946684799, nsec: 1 })
    expect(ev.mtime?.nsec).toBe(UTIME_OMIT)

    sh('touch', [p])
    ev = lastEvent('utimens', '/big')
    expect(ev.atime?.nsec).toBe(UTIME_NOW)
    expect(ev.mtime?.nsec).toBe(UTIME_NOW)
  })

  it('gives create the caller context of another user (uid, gid, pid, umask)', () => {
    const p = path.join(mnt, 'owned')
    sh('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'sh', '-c', 'umask 027; exec touch "$1"', 'sh', p])
    const ev = lastEvent('create', '/owned')
    expect(ev.ctx).toMatchObject({ uid: 1000, gid: 1000, umask: 0o027 })
    expect(ev.ctx?.pid).toBeGreaterThan(0)
    expect(ev.mode).toBe(0o100640) // kernel applied the umask (no FUSE_DONT_MASK)
    expect(sh('stat', ['-c', '%u:%g %a', p]).trim()).toBe('1000:1000 640')
  })

  it('gives create the open flags (O_WRONLY | O_CREAT | O_EXCL)', () => {
    const p = path.join(mnt, 'excl')
    sh('python3', ['-c', 'import os,sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600); os.write(fd, b"abc"); os.close(fd)', p])
    const ev = lastEvent('create', '/excl')
    expect((ev.flags ?? 0) & O_ACCMODE).toBe(O_WRONLY)
    expect((ev.flags ?? 0) & O_EXCL).toBe(O_EXCL)
    expect((ev.flags ?? 0) & O_CREAT).toBe(O_CREAT)
    expect(ev.mode).toBe(0o100600)
    expect(fs.readFileSync(p, 'utf8')).toBe('abc')
  })

  it('serves fh-based ops on an unlinked open file with null paths (hard_remove + nullpathOk)', () => {
    const p = path.join(mnt, 'gone')
    const out = sh('python3', ['-c', [
      'import os,sys',
      'p = sys.argv[1]',
      'fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)',
      'os.write(fd, b"keepme")',
      'os.unlink(p)',
      'print(os.path.exists(p), os.pread(fd, 6, 0).decode(), os.pwrite(fd, b"!", 6))',
      'os.ftruncate(fd, 4)',
      'print(os.pread(fd, 10, 0).decode())',
      'os.close(fd)',
    ].join('\n'), p])
    expect(out.split('\n')).toEqual(['False keepme 1', 'keep', ''])
    expect(fs.readdirSync(mnt)).not.toContain('gone')
    expect(events('rename')).toEqual([]) // no .fuse_hidden rename with hard_remove
    const rel = lastEvent('release')
    expect(rel.path).toBeNull()
    expect(events('fgetattr').some((e) => e.path === null)).toBe(true) // after ftruncate
  })

  it('answers a failing open with its errno and keeps serving (open takes fh and keepCache)', () => {
    const p = path.join(mnt, 'x.refused')
    sh('python3', ['-c', 'import os,sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))', p])
    expect(sh('python3', ['-c', 'import os,sys\ntry:\n  os.open(sys.argv[1], os.O_RDONLY); print("opened")\nexcept OSError as e: print(e.errno)', p]).trim()).toBe('13')
    expect(fs.statSync(p).isFile()).toBe(true)
    expect(isMounted(mnt)).toBe(true)
  })

  it('reads and writes through file handles', () => {
    const p = path.join(mnt, 'rw')
    fs.writeFileSync(p, 'data\n'.repeat(1000))
    expect(fs.readFileSync(p, 'utf8')).toBe('data\n'.repeat(1000))
    fs.truncateSync(p, 5)
    expect(fs.readFileSync(p, 'utf8')).toBe('data\n')
  })

  it('ends the session on an external fusermount -u: destroy runs and the child exits 0', async () => {
    sh('fusermount', ['-u', mnt])
    const code = await withTimeout(childExit, 10_000, 'memfs child exit after fusermount -u')
    expect(code).toBe(0)
    expect(events('unmounted')).toHaveLength(1)
    expect(isMounted(mnt)).toBe(false)
  })
})
