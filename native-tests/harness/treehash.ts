// A fingerprint of every object of a directory tree, to prove a layer was not written:
// per relative path the type, mode, owner, size, sha256 of the content, symlink target,
// rdev, every xattr (hex), the mtime and the ctime in ns (ctime changes on any write,
// chmod, chown, xattr change, link or rename of the inode itself). atime is left out:
// reading legitimately changes it.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { readXattrs, typeOf } from './snapshot'

export type TreeHash = Map<string, string>

export function hashTree (root: string): TreeHash {
  const out: TreeHash = new Map()
  const xattrs = readXattrs(root)
  const visit = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel)
    const st = fs.lstatSync(abs, { bigint: true })
    const parts = [
      typeOf(st), (Number(st.mode) & 0o7777).toString(8), `${st.uid}:${st.gid}`,
      `mtime=${st.mtimeNs}`, `ctime=${st.ctimeNs}`, `nlink=${st.nlink}`,
    ]
    if (st.isFile()) parts.push(`size=${st.size}`, `sha256=${sha256File(abs)}`)
    if (st.isSymbolicLink()) parts.push(`-> ${fs.readlinkSync(abs)}`)
    if (st.isCharacterDevice() || st.isBlockDevice()) parts.push(`rdev=${st.rdev}`)
    const xa = xattrs.get(rel) ?? {}
    for (const k of Object.keys(xa).sort()) parts.push(`${k}=${xa[k]}`)
    out.set(rel === '' ? '.' : rel, parts.join(' '))
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) visit(rel === '' ? name : `${rel}/${name}`)
    }
  }
  visit('')
  return out
}

/** Differences between two fingerprints, one line per path (empty when equal). */
export function diffTreeHash (before: TreeHash, after: TreeHash): string[] {
  const lines: string[] = []
  for (const [p, v] of before) {
    const w = after.get(p)
    if (w === undefined) lines.push(`${p}: removed (was ${v})`)
    else if (w !== v) lines.push(`${p}: changed\n    before ${v}\n    after  ${w}`)
  }
  for (const [p, w] of after) if (!before.has(p)) lines.push(`${p}: added (${w})`)
  return lines
}

/** Remembers layer fingerprints and checks them later (e.g. in afterAll). */
export class LayerGuard {
  private readonly saved = new Map<string, TreeHash>()

  record (...roots: string[]): void {
    for (const r of roots) this.saved.set(r, hashTree(r))
  }

  /** Differences for every recorded root, prefixed by the root. */
  check (): string[] {
    const lines: string[] = []
    for (const [root, before] of this.saved) {
      for (const l of diffTreeHash(before, hashTree(root))) lines.push(`${root}: ${l}`)
    }
    return lines
  }

  get roots (): string[] { return [...this.saved.keys()] }
}

function sha256File (abs: string): string {
  const h = createHash('sha256')
  const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const buf = Buffer.allocUnsafe(1 << 20)
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n))
  } finally { fs.closeSync(fd) }
  return h.digest('hex')
}
