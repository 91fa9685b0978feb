// Shared fixtures for the engine's unit tests: layer stacks built on plain
// temp directories from a declarative tree, an engine opened over them, and
// small readers/asserters for the merged view and the real upper layer.
//
// The daemon runs with umask 0 (modes come from the caller), so do the tests.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, expect, vi } from 'vitest'
import { lgetxattr, llistxattr, lsetxattr, mknod, utimensat, makedev } from '../native/sys'
import { Engine, type Caller, type EngineOptions, type OpenFile } from './engine'
import { errnoOf } from './errors'
import type { WhiteoutStyle } from './whiteout'
import { WorkDir } from './workdir'
import type { XattrNamespace } from './xattrs'

process.umask(0)

export const C = fs.constants
export const ROOT: Caller = { uid: 0, gid: 0 }
export const USER: Caller = { uid: 1234, gid: 5678 }

// ---- temp dirs ---------------------------------------------------------------

const tmpDirs: string[] = []

/**
 * A fresh temp dir, removed after the current test (see useTmp). `base`
 * 'fast' puts it on tmpfs (/dev/shm) when there is one, for tests that make
 * many thousands of files; the default is os.tmpdir().
 */
export function tmpDir (base: 'default' | 'fast' = 'default'): string {
  const parent = base === 'fast' && isWritableDir('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const d = fs.mkdtempSync(path.join(parent, 'ovlfs-unit-'))
  tmpDirs.push(d)
  return d
}

function isWritableDir (p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK)
    return fs.statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** Register the cleanup of every temp dir made by the test; call once at a test file's top level. */
export function useTmp (): void {
  afterEach(() => {
    vi.restoreAllMocks()
    for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  })
}

// ---- declarative layer trees -------------------------------------------------

export interface Meta {
  mode?: number
  uid?: number
  gid?: number
  /** Exact times in ns since the epoch. */
  atimeNs?: bigint
  mtimeNs?: bigint
  xattrs?: Record<string, string | Buffer>
}

export type Entry =
  | { kind: 'file', data: string | Buffer, meta: Meta, sparse?: { size: number, at: number } }
  | { kind: 'dir', tree: Tree, meta: Meta, opaque?: 'trusted' | 'user' | 'wh' }
  | { kind: 'symlink', target: string, meta: Meta }
  | { kind: 'whiteout' }
  | { kind: 'node', type: 'fifo' | 'chr' | 'blk' | 'sock', rdev: number, meta: Meta }
  | { kind: 'link', to: string }

/** Names (may contain '/': intermediate dirs are made) to entries; a string is a file's content. */
export interface Tree { [name: string]: Entry | string | Buffer }

export const file = (data: string | Buffer = '', meta: Meta = {}): Entry => ({ kind: 'file', data, meta })
/** A file of `size` bytes that is a hole except `data` at offset `at`. */
export const sparse = (size: number, at: number, data: string, meta: Meta = {}): Entry => ({ kind: 'file', data, meta, sparse: { size, at } })
export const dir = (tree: Tree = {}, meta: Meta = {}, opaque?: 'trusted' | 'user' | 'wh'): Entry => ({ kind: 'dir', tree, meta, opaque })
export const opaqueDir = (tree: Tree = {}, how: 'trusted' | 'user' | 'wh' = 'trusted', meta: Meta = {}): Entry => dir(tree, meta, how)
export const symlink = (target: string, meta: Meta = {}): Entry => ({ kind: 'symlink', target, meta })
/** The overlayfs whiteout: a character device 0/0. */
export const WH: Entry = { kind: 'whiteout' }
export const fifo = (meta: Meta = {}): Entry => ({ kind: 'node', type: 'fifo', rdev: 0, meta })
export const chr = (maj: number, min: number, meta: Meta = {}): Entry => ({ kind: 'node', type: 'chr', rdev: makedev(maj, min), meta })
export const sock = (meta: Meta = {}): Entry => ({ kind: 'node', type: 'sock', rdev: 0, meta })
/** A hard link to `to` (a path relative to the layer root, made earlier in the same tree). */
export const hardlink = (to: string): Entry => ({ kind: 'link', to })

const TYPE_BITS = { fifo: C.S_IFIFO, chr: C.S_IFCHR, blk: C.S_IFBLK, sock: C.S_IFSOCK }

/** Build `tree` inside the existing directory `root`. Entries are made in key order. */
export async function build (root: string, tree: Tree): Promise<void> {
  for (const [name, raw] of Object.entries(tree)) {
    const e: Entry = typeof raw === 'string' || Buffer.isBuffer(raw) ? file(raw) : raw
    const p = path.join(root, name)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    switch (e.kind) {
      case 'file':
        if (e.sparse !== undefined) {
          const fd = fs.openSync(p, 'w', e.meta.mode ?? 0o644)
          fs.ftruncateSync(fd, e.sparse.size)
          fs.writeSync(fd, Buffer.from(e.data), 0, Buffer.byteLength(e.data), e.sparse.at)
          fs.closeSync(fd)
        } else {
          fs.writeFileSync(p, e.data, { mode: e.meta.mode ?? 0o644 })
        }
        break
      case 'dir':
        fs.mkdirSync(p, { recursive: true, mode: e.meta.mode ?? 0o755 })
        await build(p, e.tree)
        if (e.opaque === 'wh') fs.writeFileSync(path.join(p, '.wh..wh..opq'), '')
        else if (e.opaque !== undefined) await lsetxattr(p, `${e.opaque}.overlay.opaque`, Buffer.from('y'))
        break
      case 'symlink':
        fs.symlinkSync(e.target, p)
        break
      case 'whiteout':
        await mknod(p, C.S_IFCHR, 0)
        break
      case 'node':
        await mknod(p, TYPE_BITS[e.type] | (e.meta.mode ?? 0o644), e.rdev)
        break
      case 'link':
        fs.linkSync(path.join(root, e.to), p)
        break
    }
    if ('meta' in e) await applyMeta(p, e.meta, e.kind !== 'symlink')
  }
}

async function applyMeta (p: string, m: Meta, chmodable: boolean): Promise<void> {
  if (m.uid !== undefined || m.gid !== undefined) fs.lchownSync(p, m.uid ?? 0, m.gid ?? 0)
  if (m.mode !== undefined && chmodable) fs.chmodSync(p, m.mode) // after chown, which clears setuid
  for (const [k, v] of Object.entries(m.xattrs ?? {})) await lsetxattr(p, k, Buffer.from(v))
  if (m.atimeNs !== undefined || m.mtimeNs !== undefined) {
    const st = fs.lstatSync(p, { bigint: true })
    await utimensat(p, ts(m.atimeNs ?? st.atimeNs), ts(m.mtimeNs ?? st.mtimeNs), true)
  }
}

export function ts (ns: bigint): { sec: number, nsec: number } {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) }
}

// ---- stacks ----------------------------------------------------------------------

export interface StackSpec {
  /** Lower layers, top-most first. */
  lowers: Tree[]
  /** The upper layer's initial content; omit with readOnly. */
  upper?: Tree
  /** No upperdir/workdir: a read-only overlay. */
  readOnly?: boolean
  /** Force what the work-dir probe reports (as on a filesystem without mknod / trusted.* xattrs). */
  whiteouts?: WhiteoutStyle
  xattrNamespace?: XattrNamespace
  engine?: Partial<EngineOptions>
  /** Where the temp dir goes (see tmpDir). */
  base?: 'default' | 'fast'
  /** Put the lower layers on another filesystem (tmpfs) than upper and work. */
  lowersApart?: boolean
}

export interface Stack {
  root: string
  lowers: string[]
  upper: string
  work: string
  engine: Engine
  /** Real path in the upper layer of a merged path ('/a/b'). */
  up: (p: string) => string
  /** Real path in lower layer i (0 = top-most) of a merged path. */
  low: (i: number, p: string) => string
  /** A second engine over the same dirs (a remount). */
  reopen: () => Promise<Engine>
}

export async function stack (spec: StackSpec): Promise<Stack> {
  const root = tmpDir(spec.base)
  const lowerRoot = spec.lowersApart === true ? tmpDir('fast') : root
  const lowers = spec.lowers.map((_, i) => path.join(lowerRoot, `l${i}`))
  const upper = path.join(root, 'upper')
  const work = path.join(root, 'work')
  for (const [i, t] of spec.lowers.entries()) {
    fs.mkdirSync(lowers[i] as string)
    await build(lowers[i] as string, t)
  }
  if (spec.readOnly !== true) {
    fs.mkdirSync(upper)
    fs.mkdirSync(work)
    await build(upper, spec.upper ?? {})
  }
  const options: EngineOptions = {
    lowerdirs: lowers,
    ...(spec.readOnly === true ? {} : { upperdir: upper, workdir: work }),
    ...spec.engine,
  }
  const open = async (): Promise<Engine> => {
    if (spec.whiteouts === undefined && spec.xattrNamespace === undefined) return await Engine.open(options)
    const real = WorkDir.prototype.probe
    const spy = vi.spyOn(WorkDir.prototype, 'probe').mockImplementation(async function (this: WorkDir) {
      const probed = await real.call(this)
      return { whiteouts: spec.whiteouts ?? probed.whiteouts, xattrNamespace: spec.xattrNamespace ?? probed.xattrNamespace }
    })
    try {
      return await Engine.open(options)
    } finally {
      spy.mockRestore()
    }
  }
  const engine = await open()
  return {
    root,
    lowers,
    upper,
    work,
    engine,
    up: (p) => upper + p,
    low: (i, p) => (lowers[i] as string) + p,
    reopen: open,
  }
}

// ---- errors --------------------------------------------------------------------

/** Await a rejection whose errno is `code`'s (ENOTSUP and EOPNOTSUPP are one number on Linux). */
/** What is left in `<workdir>/work` once the engine is closed (as at unmount: the shared whiteout goes). */
export function workLeft (s: Stack): string[] {
  s.engine.close()
  return fs.readdirSync(`${s.work}/work`)
}

export async function expectErrno (p: Promise<unknown>, code: keyof typeof os.constants.errno): Promise<void> {
  let err: unknown
  try {
    await p
  } catch (e) {
    err = e
  }
  expect(err, `expected ${code}, got success`).toBeDefined()
  const got = errnoOf(err)
  const name = Object.entries(os.constants.errno).find(([, n]) => n === got)?.[0]
  expect(name === code || got === os.constants.errno[code], `expected ${code}, got ${name ?? got}: ${String(err)}`).toBe(true)
}

// ---- the merged view -------------------------------------------------------------

/** Read a merged file whole through the engine (open read-only, read, release). */
export async function readMerged (e: Engine, p: string): Promise<string> {
  const h = await e.open(p, C.O_RDONLY)
  try {
    return await readHandle(e, h, p)
  } finally {
    await e.release(h)
  }
}

export async function readHandle (e: Engine, h: OpenFile, p: string | null, max = 1 << 20): Promise<string> {
  const buf = Buffer.alloc(max)
  let off = 0
  for (;;) {
    void p
    const n = await e.read(h, buf.subarray(off), max - off, off)
    if (n <= 0) break
    off += n
  }
  return buf.subarray(0, off).toString()
}

/** Write `data` at `pos` through a fresh handle (open with `flags`, write, release). */
export async function writeMerged (e: Engine, p: string, data: string, pos = 0, flags: number = C.O_WRONLY): Promise<void> {
  const h = await e.open(p, flags)
  try {
    const b = Buffer.from(data)
    expect(await e.write(h, b, b.length, pos)).toBe(b.length)
  } finally {
    await e.release(h)
  }
}

export async function exists (e: Engine, p: string): Promise<boolean> {
  try {
    await e.getattr(p)
    return true
  } catch (err) {
    if (errnoOf(err) === os.constants.errno.ENOENT) return false
    throw err
  }
}

/** Sorted names of a merged directory. */
export async function names (e: Engine, p: string): Promise<string[]> {
  return (await e.readdir(p)).map(d => d.name).sort()
}

/**
 * The whole merged tree below `p` as path → description: 'dir', 'file:CONTENT',
 * 'symlink:TARGET', 'fifo', 'chr:RDEV', … (files read through the engine).
 */
export async function mergedTree (e: Engine, p = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string): Promise<void> => {
    for (const ent of (await e.readdir(d)).sort((a, b) => a.name < b.name ? -1 : 1)) {
      const q = `${d}/${ent.name}`
      const a = await e.getattr(q)
      const t = a.mode & C.S_IFMT
      if (t === C.S_IFDIR) {
        out[q.slice(p.length)] = 'dir'
        await walk(q)
      } else if (t === C.S_IFREG) out[q.slice(p.length)] = 'file:' + await readMerged(e, q)
      else if (t === C.S_IFLNK) out[q.slice(p.length)] = 'symlink:' + await e.readlink(q)
      else if (t === C.S_IFIFO) out[q.slice(p.length)] = 'fifo'
      else if (t === C.S_IFCHR) out[q.slice(p.length)] = `chr:${a.rdev}`
      else out[q.slice(p.length)] = `other:${t.toString(8)}`
    }
  }
  await walk(p)
  return out
}

// ---- real layers -------------------------------------------------------------------

/**
 * A real directory tree as path → description: 'dir', 'dir opaque' (xattr
 * in either namespace), 'file:CONTENT', 'symlink:T', 'whiteout' (char 0/0),
 * 'chr:RDEV', 'fifo', 'sock'. `.wh.*` files show as themselves.
 */
export async function realTree (root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name)
      const r = `${rel}/${name}`
      const st = fs.lstatSync(p)
      if (st.isDirectory()) {
        out[r] = await isOpaqueXattr(p) ? 'dir opaque' : 'dir'
        await walk(p, r)
      } else if (st.isFile()) out[r] = 'file:' + fs.readFileSync(p, 'utf8')
      else if (st.isSymbolicLink()) out[r] = 'symlink:' + fs.readlinkSync(p)
      else if (st.isCharacterDevice()) out[r] = st.rdev === 0 ? 'whiteout' : `chr:${st.rdev}`
      else if (st.isFIFO()) out[r] = 'fifo'
      else if (st.isSocket()) out[r] = 'sock'
      else out[r] = 'other'
    }
  }
  await walk(root, '')
  return out
}

export async function isOpaqueXattr (p: string): Promise<boolean> {
  for (const ns of ['trusted', 'user']) {
    const v = await lgetxattr(p, `${ns}.overlay.opaque`).catch(() => null)
    if (v?.toString() === 'y') return true
  }
  return false
}

/** The whiteout the upper layer should hold for `name` in `dirReal`, in the given style. */
export function isWhiteoutIn (dirReal: string, name: string, style: WhiteoutStyle): boolean {
  if (style === 'aufs') return fs.existsSync(path.join(dirReal, '.wh.' + name))
  try {
    const st = fs.lstatSync(path.join(dirReal, name))
    return st.isCharacterDevice() && st.rdev === 0
  } catch {
    return false
  }
}

/** Whether nothing at all is left for `name` in `dirReal` (neither the name nor a `.wh.` file). */
export function absentIn (dirReal: string, name: string): boolean {
  const there = (p: string): boolean => { try { fs.lstatSync(p); return true } catch { return false } }
  return !there(path.join(dirReal, name)) && !there(path.join(dirReal, '.wh.' + name))
}

export async function xattrNames (p: string): Promise<string[]> {
  return (await llistxattr(p)).sort()
}

export const WHITEOUT_STYLES: readonly WhiteoutStyle[] = ['chardev', 'aufs']
