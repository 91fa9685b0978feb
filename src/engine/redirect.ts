import { lgetxattr } from '../native/sys'
import { OvlError, codeOf } from './errors'
import type { Hit } from './lookup'
import { type MaybePromise, andThen } from './maybe'
import { REDIRECT_NAMES } from './xattrs'

/**
 * Renamed directories, as the kernel's overlayfs records them with
 * `redirect_dir=on`: a directory that has lower layers is copied up (itself,
 * not its contents), moved in the upper layer, and given a redirect xattr
 * (`trusted.overlay.redirect`, or `user.overlay.redirect` in userxattr mode)
 * naming where its lower layers are:
 * - relative (just the old name) when it moved within its parent;
 * - absolute ("/a/b/old", from the layer roots) when it moved elsewhere,
 *   built from the old path with each ancestor's own redirect standing in for
 *   its name (an absolute one ends the walk), as ovl_get_redirect does;
 * - a redirect already there is kept when it still holds: moved within the
 *   parent again, or already absolute (ovl_set_redirect).
 * Lookup follows redirects in every layer but the bottom one
 * (ovl_lookup_layer / ovl_lookup_single / ovl_check_redirect): a relative one
 * replaces the name looked up in the lower layers, an absolute one restarts
 * the lookup from the roots of the layers below.
 */

/** The kernel's default `redirect_max`: an absolute redirect longer than this is EXDEV. */
export const REDIRECT_MAX = 256

/** A redirect value from a layer, checked as the kernel checks it; undefined when absent. */
export function parseRedirect (value: Buffer | null, where: string): string | undefined {
  if (value === null) return undefined
  const s = value.toString()
  const valid = s.startsWith('/')
    ? s.slice(1).split('/').every(c => c !== '')
    : s !== '' && !s.includes('/')
  if (!valid || s.includes('\0')) throw new OvlError('EINVAL', `invalid redirect ${JSON.stringify(s)} on ${where}`)
  return s
}

/** The redirect xattr on a real directory (either namespace), or undefined. */
export async function readRedirect (real: string): Promise<string | undefined> {
  for (const name of REDIRECT_NAMES) {
    let v: Buffer | null
    try {
      v = await lgetxattr(real, name)
    } catch (err) {
      const c = codeOf(err)
      if (c === 'ENODATA' || c === 'EOPNOTSUPP' || c === 'ENOTSUP' || c === 'EPERM' || c === 'EACCES') continue
      throw err
    }
    const r = parseRedirect(v, real)
    if (r !== undefined) return r
  }
  return undefined
}

/**
 * The redirect a directory gets when it is renamed (ovl_set_redirect), or
 * undefined when the one it has still holds. `existing` is its own redirect,
 * `oldPath` its merged path before the move, `upperRedirectOf` an ancestor's
 * own redirect (asked nearest first, only as far as the walk goes).
 */
export async function redirectForRename (
  existing: string | undefined,
  samedir: boolean,
  oldPath: string,
  upperRedirectOf: (path: string) => Promise<string | undefined>,
): Promise<string | undefined> {
  const absolute = !samedir
  if (existing !== undefined && (!absolute || existing.startsWith('/'))) return undefined
  const name = oldPath.slice(oldPath.lastIndexOf('/') + 1)
  if (!absolute) return name
  let out = ''
  for (let p = oldPath; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) {
    const own = p === oldPath ? existing : await upperRedirectOf(p)
    const part = own ?? p.slice(p.lastIndexOf('/') + 1)
    if (part.startsWith('/')) {
      out = part + out
      break
    }
    out = '/' + part + out
  }
  if (out.length > REDIRECT_MAX) throw new OvlError('EXDEV', `the redirect for ${oldPath} would be longer than ${REDIRECT_MAX} bytes`)
  return out
}

/** Whether a name exists in one directory of one layer, is whited out there, or is absent. */
/** `belowHidden`: the same layer also holds `.wh.NAME`, so nothing below merges into it (as if opaque). */
export type Probe = { kind: 'none' } | { kind: 'whiteout' } | { kind: 'entry', isDir: boolean, belowHidden?: boolean }

/**
 * What lookup needs from one layer to follow names and redirects. Answers
 * known without I/O (cached lower listings and flags) come back synchronously
 * (maybe.ts), so a lookup through many layers costs no promise per layer.
 */
export interface LayerProbe {
  /** Whether `name` exists in the directory `dir`, is whited out there, or is absent. */
  probe: (dir: Hit, name: string) => MaybePromise<Probe>
  isOpaque: (hit: Hit) => MaybePromise<boolean>
  /** The redirect on a directory of a layer (cached for lower layers). */
  redirectOf: (hit: Hit) => MaybePromise<string | undefined>
  /** Whether the layer is the bottom one (whose redirects and opaque markers matter to no one). */
  isBottom: (hit: Hit) => boolean
}

/** The state of one merged-name lookup across layers (the kernel's ovl_lookup_data). */
export interface LookupState {
  /** What to look up in the next layer: a name in the parent's directory there, or an absolute path. */
  name: string
  /** The name turned out to be a directory (in a higher layer). */
  isDir: boolean
  /** Nothing below may be merged (whiteout, opaque dir, non-directory). */
  stop: boolean
}

/**
 * Look the state's name up in one layer (ovl_lookup_layer): in `parent` (the
 * parent directory's part in this layer) for a name, from the layer root for
 * an absolute path. Returns where it was found, if anywhere, and updates the
 * state: stop, isDir, and the name the layers below will look for.
 */
export function lookupInLayer (lp: LayerProbe, parent: Hit, st: LookupState): MaybePromise<Hit | undefined> {
  if (!st.name.startsWith('/')) return lookupSingle(lp, parent, st.name, st, 0, '')
  return lookupAbsolute(lp, parent, st)
}

/** An absolute redirect: its path components one by one from the layer root. */
async function lookupAbsolute (lp: LayerProbe, parent: Hit, st: LookupState): Promise<Hit | undefined> {
  const comps = st.name.slice(1).split('/')
  let base: Hit = { layer: parent.layer, rel: '' }
  for (let i = 0; i < comps.length; i++) {
    const comp = comps[i] as string
    const post = i + 1 < comps.length ? '/' + comps.slice(i + 1).join('/') : ''
    // Counted from the end, as the kernel does: an earlier redirect may have changed the prefix.
    const prelen = st.name.length - comp.length - post.length
    const found = await lookupSingle(lp, base, comp, st, prelen, post)
    if (found === undefined) return undefined
    base = found
  }
  return base
}

/** One path element in one layer (ovl_lookup_single). */
function lookupSingle (lp: LayerProbe, dir: Hit, comp: string, st: LookupState, prelen: number, post: string): MaybePromise<Hit | undefined> {
  return andThen(lp.probe(dir, comp), (r) => {
    const last = post === ''
    if (r.kind === 'none') return undefined
    if (r.kind === 'whiteout') {
      st.stop = true
      return undefined
    }
    const hit: Hit = { layer: dir.layer, rel: dir.rel + '/' + comp }
    if (!r.isDir) {
      // Below a directory a non-directory ends the merge; on its own it is the result, and nothing merges below it.
      st.stop = true
      return st.isDir || !last ? undefined : hit
    }
    if (last) st.isDir = true
    if (lp.isBottom(hit)) return hit
    if (r.belowHidden === true) {
      st.stop = true
      return hit
    }
    return andThen(lp.isOpaque(hit), (opaque) => {
      if (opaque) {
        st.stop = true
        return hit
      }
      return andThen(lp.redirectOf(hit), (redirect) => {
        if (redirect !== undefined) {
          if (redirect.startsWith('/')) {
            // An absolute redirect below an opaque ancestor still leads on.
            st.stop = false
            st.name = redirect + post
          } else {
            st.name = st.name.slice(0, prelen) + redirect + post
          }
        }
        return hit
      })
    })
  })
}
