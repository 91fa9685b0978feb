// A canonical, comparable picture of a directory tree (lstat, never following symlinks).
//
// Recorded per relative path ('.' is the root): type, permission bits (with setuid, setgid,
// sticky), uid, gid, size (files, symlinks), sha256 of file content, symlink target, rdev
// (devices), visible xattrs (sorted, hex values), nlink and the other names of the same inode
// (non-directories), d_type when readdir disagrees with lstat, and mtime in ns when it is
// "old" (before OLD_TIME_LIMIT): only layers built by layers.ts and explicit utimens ops set
// such times; whatever the mount itself touches gets "now", which legitimately differs
// between two mounts. Duplicate names in a readdir are reported as problems.
//
// What is deliberately NOT compared (the explicit ignore list):
//   - atime, ctime, st_ino/st_dev values, directory sizes and directory link counts;
//   - mtimes that are not old (see above);
//   - in the merged view: overlay-private xattrs, PRIVATE_XATTR_PREFIXES (the kernel hides
//     its own; the overlay-private-xattrs case checks hiding separately);
//   - in the upper dir: the workdir (not below upper), every overlay-private xattr except
//     the opaque, redirect and metacopy markers (OPAQUE_XATTRS, REDIRECT_XATTRS, METACOPY_XATTRS), the link count and metadata of whiteouts (the
//     kernel hard-links one shared whiteout), and entries whose names start with
//     IGNORED_NAME_PREFIXES (private files of ovlfs / libfuse).
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { OLD_TIME_LIMIT } from './layers'

export type Type = 'file' | 'dir' | 'symlink' | 'fifo' | 'chr' | 'blk' | 'socket' | 'whiteout'

export interface Entry {
  type: Type
  dtype?: string // readdir's d_type when it disagrees with lstat
  mode?: string
  uid?: number
  gid?: number
  size?: number
  sha256?: string
  target?: string
  rdev?: string
  nlink?: number
  sameInode?: string[]
  mtime?: string
  xattrs?: Record<string, string>
}

export interface Snapshot { entries: Record<string, Entry>, problems: string[] }

export const IGNORED_NAME_PREFIXES = ['#ovlfs', '.fuse_hidden']
// The last two are fuse-overlayfs's own (it stands in for ovlfs while the harness is developed).
export const PRIVATE_XATTR_PREFIXES = ['trusted.overlay.', 'user.overlay.', 'user.fuseoverlayfs.', 'trusted.fuseoverlayfs.']
export const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque']
/** Where a renamed directory's lower layers are: compared in the upper dir like the opaque markers. */
export const REDIRECT_XATTRS = ['trusted.overlay.redirect', 'user.overlay.redirect']
/** A metadata-only copy's marker: compared in the upper dir like the opaque markers. */
export const METACOPY_XATTRS = ['trusted.overlay.metacopy', 'user.overlay.metacopy']

/** Snapshot of a merged view (a mount point). */
export function snapshotMerged (root: string): Snapshot {
  return walk(root, false)
}

/** Snapshot of an upper dir: whiteouts and opaque markers are recorded, private files skipped. */
export function snapshotUpper (root: string): Snapshot {
  return walk(root, true)
}

function walk (root: string, upper: boolean): Snapshot {
  const entries: Record<string, Entry> = {}
  const problems: string[] = []
  const inodes = new Map<string, string[]>()
  const xattrs = readXattrs(root)
  const visit = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel)
    let dirents: fs.Dirent[]
    try { dirents = fs.readdirSync(abs, { withFileTypes: true }) } catch (e) { problems.push(`readdir ${rel || '.'}: ${code(e)}`); return }
    const seen = new Set<string>()
    for (const d of dirents.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) {
      if (seen.has(d.name)) { problems.push(`readdir ${rel || '.'}: duplicate name ${d.name}`); continue }
      seen.add(d.name)
      if (upper && IGNORED_NAME_PREFIXES.some(p => d.name.startsWith(p))) continue
      const r = rel === '' ? d.name : `${rel}/${d.name}`
      let st: fs.BigIntStats
      try { st = fs.lstatSync(path.join(root, r), { bigint: true }) } catch (e) { problems.push(`lstat ${r}: ${code(e)}`); continue }
      const e = entry(path.join(root, r), st, xattrs.get(r) ?? {}, upper)
      const dt = direntType(d)
      if (dt !== e.type && !(e.type === 'whiteout' && dt === 'chr')) e.dtype = dt
      entries[r] = e
      if (e.type !== 'dir' && e.type !== 'whiteout') {
        const key = `${st.dev}:${st.ino}`
        inodes.set(key, [...(inodes.get(key) ?? []), r])
      }
      if (e.type === 'dir') visit(r)
    }
  }
  try {
    entries['.'] = entry(root, fs.lstatSync(root, { bigint: true }), xattrs.get('') ?? {}, upper)
  } catch (e) { problems.push(`lstat .: ${code(e)}`) }
  visit('')
  for (const names of inodes.values()) {
    if (names.length > 1) for (const n of names) entries[n]!.sameInode = names.filter(m => m !== n)
  }
  return { entries, problems }
}

function entry (abs: string, st: fs.BigIntStats, xattrs: Record<string, string>, upper: boolean): Entry {
  const type = typeOf(st)
  if (upper && type === 'chr' && st.rdev === 0n) return { type: 'whiteout' }
  const e: Entry = {
    type,
    mode: (Number(st.mode) & 0o7777).toString(8).padStart(4, '0'),
    uid: Number(st.uid),
    gid: Number(st.gid),
  }
  if (type !== 'dir') e.nlink = Number(st.nlink)
  if (type === 'file' || type === 'symlink') e.size = Number(st.size)
  if (type === 'file') e.sha256 = sha256File(abs)
  if (type === 'symlink') e.target = fs.readlinkSync(abs)
  if (type === 'chr' || type === 'blk') e.rdev = `${(st.rdev >> 8n & 0xfffn) | (st.rdev >> 32n & ~0xfffn)}:${(st.rdev & 0xffn) | (st.rdev >> 12n & ~0xffn)}`
  if (st.mtimeNs < BigInt(OLD_TIME_LIMIT) * 1_000_000_000n) e.mtime = st.mtimeNs.toString()
  const visible = Object.entries(xattrs).filter(([k]) =>
    !PRIVATE_XATTR_PREFIXES.some(p => k.startsWith(p)) || (upper && (OPAQUE_XATTRS.includes(k) || REDIRECT_XATTRS.includes(k) || METACOPY_XATTRS.includes(k))))
  if (visible.length > 0) e.xattrs = Object.fromEntries(visible.sort(([a], [b]) => a < b ? -1 : 1))
  return e
}

/** The file type of an lstat, by name. */
export function typeOf (st: fs.BigIntStats): Type {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isFIFO()) return 'fifo'
  if (st.isCharacterDevice()) return 'chr'
  if (st.isBlockDevice()) return 'blk'
  return 'socket'
}

function direntType (d: fs.Dirent): string {
  if (d.isFile()) return 'file'
  if (d.isDirectory()) return 'dir'
  if (d.isSymbolicLink()) return 'symlink'
  if (d.isFIFO()) return 'fifo'
  if (d.isCharacterDevice()) return 'chr'
  if (d.isBlockDevice()) return 'blk'
  if (d.isSocket()) return 'socket'
  return 'unknown'
}

function sha256File (abs: string): string {
  try {
    // O_NONBLOCK: harmless for regular files, and never hangs on something that changed type.
    const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    try {
      const h = createHash('sha256')
      const buf = Buffer.alloc(1 << 16)
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n))
      return h.digest('hex')
    } finally { fs.closeSync(fd) }
  } catch (e) { return `error ${code(e)}` }
}

/** All xattrs of a tree, by relative path, in one getfattr call (values in hex). */
export function readXattrs (root: string): Map<string, Record<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root],
    { encoding: 'utf8', maxBuffer: 64 << 20 })
  const out = new Map<string, Record<string, string>>()
  let cur: Record<string, string> | undefined
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = line.slice(8).replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
      cur = {}
      out.set(path.relative(root, abs), cur)
    } else if (line !== '' && cur !== undefined) {
      const eq = line.indexOf('=')
      if (eq < 0) cur[line] = ''
      else cur[line.slice(0, eq)] = line.slice(eq + 1)
    }
  }
  return out
}

/** Human-readable differences, one line per path and field; empty when equal. */
export function diff (a: Snapshot, b: Snapshot, names: [string, string] = ['kernel', 'ovlfs']): string[] {
  const lines: string[] = []
  const [na, nb] = names
  for (const p of a.problems.filter(x => !b.problems.includes(x))) lines.push(`${na} only: ${p}`)
  for (const p of b.problems.filter(x => !a.problems.includes(x))) lines.push(`${nb} only: ${p}`)
  const paths = [...new Set([...Object.keys(a.entries), ...Object.keys(b.entries)])].sort()
  for (const p of paths) {
    const ea = a.entries[p]
    const eb = b.entries[p]
    if (ea === undefined) { lines.push(`${p}: only in ${nb} (${show(eb!)})`); continue }
    if (eb === undefined) { lines.push(`${p}: only in ${na} (${show(ea)})`); continue }
    for (const k of [...new Set([...Object.keys(ea), ...Object.keys(eb)])].sort() as Array<keyof Entry>) {
      const va = JSON.stringify(ea[k])
      const vb = JSON.stringify(eb[k])
      if (va !== vb) lines.push(`${p}: ${k} ${na}=${va ?? '-'} ${nb}=${vb ?? '-'}`)
    }
  }
  return lines
}

/** A one-line summary of an entry. */
export function show (e: Entry): string {
  const extra = e.type === 'file' ? ` size=${e.size}` : e.type === 'symlink' ? ` -> ${e.target}` : e.rdev ? ` ${e.rdev}` : ''
  return `${e.type}${e.mode ? ' ' + e.mode : ''}${extra}`
}

/**
 * The merged view reduced to what an expected view can state compactly:
 * path -> 'dir', 'file:<content>' (content as text), 'symlink:<target>', or the type.
 */
export function view (root: string): Record<string, string> {
  const snap = snapshotMerged(root)
  const out: Record<string, string> = {}
  for (const [p, e] of Object.entries(snap.entries)) {
    if (p === '.') continue
    if (e.type === 'file') out[p] = 'file:' + fs.readFileSync(path.join(root, p), 'utf8')
    else if (e.type === 'symlink') out[p] = 'symlink:' + e.target
    else out[p] = e.type
  }
  for (const p of snap.problems) out[`!${p}`] = 'problem'
  return out
}

function code (e: unknown): string {
  return (e as { code?: string }).code ?? String(e)
}
