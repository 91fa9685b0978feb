// Build layer directories from a compact declarative spec, and clone them.
//
//   buildLayers(dir, { lowers: [{ a: file('top') }, { a: file('bottom') }], upper: { w: whiteout() } })
//
// makes dir/lower0 (the top lower, leftmost in lowerdir=), dir/lower1, … and dir/upper.
// Paths are relative ('d/x'); missing parent directories are created with defaults.
// Every entry gets a fixed old mtime/atime (DEFAULT_MTIME) unless it says otherwise,
// so a snapshot can tell preserved times (old) from times set by the mount ("now").
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

/** 2005-01-01T00:00:00Z: any time before OLD_TIME_LIMIT was set on purpose (by a layer or by utimens). */
export const DEFAULT_MTIME = 1104537600
export const OLD_TIME_LIMIT = 1262304000 // 2010-01-01

interface Meta {
  mode?: number
  uid?: number
  gid?: number
  /** seconds since the epoch, or a string '@SEC.FRACTION' for touch -d (ns exact) */
  mtime?: number | string
  xattrs?: Record<string, string> // value: text, or '0x…' hex as setfattr takes it
}

export type Node =
  | ({ t: 'file', data?: string, sparse?: { size: number, chunks: Array<[number, string]> } } & Meta)
  | ({ t: 'dir', opaque?: boolean, ociOpaque?: boolean } & Meta)
  | ({ t: 'symlink', target: string } & Meta)
  | { t: 'link', to: string }
  | ({ t: 'fifo' } & Meta)
  | ({ t: 'chr' | 'blk', major: number, minor: number } & Meta)
  | { t: 'whiteout' } // character device 0/0 (the kernel's form)
  | { t: 'ociWhiteout' } // an empty file '.wh.NAME' next to NAME (OCI/AUFS form)

export type Layer = Record<string, Node>
export interface LayerSet { lowers: Layer[], upper?: Layer }

// Compact constructors.
export const file = (data = '', meta: Meta = {}): Node => ({ t: 'file', data, ...meta })
export const sparse = (size: number, chunks: Array<[number, string]>, meta: Meta = {}): Node => ({ t: 'file', sparse: { size, chunks }, ...meta })
export const dir = (meta: Meta & { opaque?: boolean, ociOpaque?: boolean } = {}): Node => ({ t: 'dir', ...meta })
export const symlink = (target: string, meta: Meta = {}): Node => ({ t: 'symlink', target, ...meta })
export const hardlink = (to: string): Node => ({ t: 'link', to })
export const fifo = (meta: Meta = {}): Node => ({ t: 'fifo', ...meta })
export const chr = (major: number, minor: number, meta: Meta = {}): Node => ({ t: 'chr', major, minor, ...meta })
export const blk = (major: number, minor: number, meta: Meta = {}): Node => ({ t: 'blk', major, minor, ...meta })
export const whiteout = (): Node => ({ t: 'whiteout' })
export const ociWhiteout = (): Node => ({ t: 'ociWhiteout' })

/** The opaque marker the kernel honours (trusted namespace, we are root). */
export const OPAQUE_XATTR = 'trusted.overlay.opaque'

export function run (cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

export function setxattr (p: string, name: string, value: string): void {
  run('setfattr', ['-h', '-n', name, '-v', value, p])
}

/** Build one layer directory from its spec. */
export function buildLayer (root: string, layer: Layer): void {
  fs.mkdirSync(root, { recursive: true })
  const names = Object.keys(layer).sort((a, b) => depth(a) - depth(b) || a.localeCompare(b))
  const links = names.filter(n => layer[n]!.t === 'link')
  for (const name of names.filter(n => layer[n]!.t !== 'link')) create(root, name, layer[name]!)
  for (const name of links) fs.linkSync(path.join(root, (layer[name] as { to: string }).to), path.join(root, name))
  // Metadata last, deepest first, so creating children does not move a directory's mtime.
  const all = new Set<string>(names.filter(n => layer[n]!.t !== 'link' && layer[n]!.t !== 'ociWhiteout'))
  for (const n of names) for (let p = path.dirname(n); p !== '.'; p = path.dirname(p)) all.add(p)
  for (const name of [...all].sort((a, b) => depth(b) - depth(a))) {
    applyMeta(path.join(root, name), (layer[name] ?? { t: 'dir' }) as Node & Meta)
  }
  applyMeta(root, { t: 'dir' })
}

/** Build dir/lower0.., dir/upper; returns the lower paths, top first. */
export function buildLayers (root: string, set: LayerSet): { lowers: string[], upper: string } {
  const lowers = set.lowers.map((l, i) => { const p = path.join(root, `lower${i}`); buildLayer(p, l); return p })
  const upper = path.join(root, 'upper')
  buildLayer(upper, set.upper ?? {})
  return { lowers, upper }
}

/** Copy a tree exactly: xattrs (trusted.* too, we are root), devices, hard links, holes. */
export function cloneTree (src: string, dst: string): void {
  run('cp', ['-a', '--sparse=always', src, dst])
}

function depth (p: string): number { return p.split('/').length }

function create (root: string, name: string, node: Node): void {
  const p = path.join(root, name)
  fs.mkdirSync(path.dirname(p), { recursive: true })
  switch (node.t) {
    case 'file':
      if (node.sparse !== undefined) {
        const fd = fs.openSync(p, 'w')
        for (const [off, data] of node.sparse.chunks) fs.writeSync(fd, data, off)
        fs.ftruncateSync(fd, node.sparse.size)
        fs.closeSync(fd)
      } else {
        fs.writeFileSync(p, node.data ?? '')
      }
      break
    case 'dir':
      fs.mkdirSync(p, { recursive: true })
      if (node.opaque === true) setxattr(p, OPAQUE_XATTR, 'y')
      if (node.ociOpaque === true) fs.writeFileSync(path.join(p, '.wh..wh..opq'), '')
      break
    case 'symlink': fs.symlinkSync(node.target, p); break
    case 'fifo': run('mkfifo', [p]); break
    case 'chr': case 'blk':
      run('mknod', [p, node.t === 'chr' ? 'c' : 'b', String(node.major), String(node.minor)]); break
    case 'whiteout': run('mknod', ['-m', '000', p, 'c', '0', '0']); break
    case 'ociWhiteout': fs.writeFileSync(path.join(path.dirname(p), '.wh.' + path.basename(p)), ''); break
    case 'link': break
  }
}

function applyMeta (p: string, node: Node & Meta): void {
  if (node.t === 'whiteout') return
  const isLink = node.t === 'symlink'
  if (node.uid !== undefined || node.gid !== undefined) fs.lchownSync(p, node.uid ?? 0, node.gid ?? 0)
  if (!isLink) fs.chmodSync(p, node.mode ?? (node.t === 'dir' ? 0o755 : 0o644))
  for (const [k, v] of Object.entries(node.xattrs ?? {})) setxattr(p, k, v)
  const t = node.mtime ?? DEFAULT_MTIME
  if (typeof t === 'number') fs.lutimesSync(p, t, t)
  else run('touch', ['-h', '-d', t, p])
}
