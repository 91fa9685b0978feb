import { CliError } from '../cli/errors'
import { isMappingOption } from '../engine/mapping'

/**
 * Mount options as fuse-overlayfs and mount(8)/mount.fuse pass them:
 * comma-separated `-o` lists (several `-o` add up), `\,` escaping a comma,
 * and in `lowerdir=` a `:`-separated list with `\:` escaping a colon.
 */
export interface MountOptions {
  /** Top-most first. */
  lowerdirs: string[]
  upperdir?: string
  workdir?: string
  /** `ro`: the kernel refuses writes with EROFS. */
  readOnly: boolean
  volatile: boolean
  /** `redirect_dir=on` (the default) renames directories that have lower layers; `off`/`follow` answer EXDEV, as the kernel. */
  redirectDir: boolean
  /** `index=on` (the default) keeps lower hard links through copy-up; `off` breaks them, as the kernel's default. */
  index: boolean
  /**
   * `metacopy=on` copies up metadata only for chmod, chown, utimens, xattrs; `off` copies the data too.
   * Unset: on where trusted.* xattrs can be written, off in the user namespace (the kernel refuses
   * metacopy together with userxattr, so it could never read such an upper layer).
   */
  metacopy?: boolean
  /** Seconds the kernel may cache entries and attributes (fuse-overlayfs `timeout=`). */
  timeout: number
  /** Options handed to FUSE's mount as they are (generic mount flags, allow_other, …). */
  fuseOptions: string[]
  /** fuse-overlayfs options ovlfs accepts but does not implement yet. */
  unimplemented: string[]
  /** Options nobody knows: warned about and ignored, as fuse-overlayfs does. */
  unknown: string[]
  /** fuse-overlayfs's id-mapping family (uidmapping=, squash_to_root, static_nlink, …), for mapping.ts. */
  mapping: string[]
  fsname?: string
}

/** Generic mount options of mount(8) and FUSE, passed to the FUSE mount. */
const PASS_THROUGH = new Set([
  'rw', 'ro', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'sync', 'async', 'dirsync',
  'allow_other', 'allow_root', 'default_permissions', 'auto_unmount', 'nonempty',
])
/** Accepted and meaning the kernel's default already (libfuse2 does not know them). */
const KERNEL_DEFAULTS = new Set(['relatime', 'strictatime', 'nodiratime', 'diratime', 'lazytime', 'nolazytime', 'user', 'nouser', 'auto', 'noauto', 'defaults', '_netdev', 'nofail', 'silent', 'loud'])
/**
 * FUSE options with a value that are passed through, each with the syntax
 * libfuse accepts: a value it would reject only once the kernel mount exists
 * (leaving a dead mount behind) is refused here first. libfuse's cache
 * timeouts come after ovlfs's own in the option list, so they win.
 */
const FUSE_VALUE_SYNTAX: Record<string, { re: RegExp, what: string }> = {
  max_read: { re: /^\d{1,10}$/, what: 'a number of bytes' },
  max_write: { re: /^\d{1,10}$/, what: 'a number of bytes' },
  blksize: { re: /^\d{1,10}$/, what: 'a number of bytes' },
  uid: { re: /^\d{1,10}$/, what: 'a numeric user id' },
  gid: { re: /^\d{1,10}$/, what: 'a numeric group id' },
  user_id: { re: /^\d{1,10}$/, what: 'a numeric user id' },
  group_id: { re: /^\d{1,10}$/, what: 'a numeric group id' },
  umask: { re: /^[0-7]{1,4}$/, what: 'an octal mask' },
  subtype: { re: /^[A-Za-z0-9_.+-]{1,64}$/, what: 'a short name (letters, digits, _ . + -)' },
  entry_timeout: { re: /^\d{1,9}(\.\d{1,9})?$/, what: 'a number of seconds' },
  attr_timeout: { re: /^\d{1,9}(\.\d{1,9})?$/, what: 'a number of seconds' },
  negative_timeout: { re: /^\d{1,9}(\.\d{1,9})?$/, what: 'a number of seconds' },
}
/** fuse-overlayfs options that ovlfs accepts with a warning until they are implemented. */
const FUSE_OVERLAYFS_UNIMPLEMENTED = new Set([
  'context', 'threaded', 'fast_ino', 'writeback', 'noxattrs', 'plugins',
  'xino', 'userxattr', 'debug',
])

/** Split on an unescaped separator; `\x` stands for x. */
export function splitEscaped (s: string, sep: string): string[] {
  const out: string[] = []
  let cur = ''
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string
    if (c === '\\' && i + 1 < s.length) {
      cur += s[++i] as string
    } else if (c === sep) {
      out.push(cur)
      cur = ''
    } else {
      cur += c
    }
  }
  out.push(cur)
  return out
}

/** Split a `-o` list on unescaped commas, keeping other escapes for the value parsers. */
function splitOptionList (s: string): string[] {
  const out: string[] = []
  let cur = ''
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string
    if (c === '\\' && i + 1 < s.length) {
      const n = s[++i] as string
      cur += n === ',' ? ',' : '\\' + n
    } else if (c === ',') {
      out.push(cur)
      cur = ''
    } else {
      cur += c
    }
  }
  out.push(cur)
  return out.filter(o => o !== '')
}

/** Escape a path for a `lowerdir=`/`upperdir=` value in an option string. */
export function escapePath (p: string): string {
  return p.replace(/[\\:,]/g, (c) => '\\' + c)
}

export function parseMountOptions (lists: readonly string[]): MountOptions {
  const o: MountOptions = { lowerdirs: [], readOnly: false, volatile: false, redirectDir: true, index: true, timeout: 1, fuseOptions: [], unimplemented: [], unknown: [], mapping: [] }
  for (const list of lists) {
    for (const opt of splitOptionList(list)) {
      const eq = opt.indexOf('=')
      const key = eq < 0 ? opt : opt.slice(0, eq)
      const value = eq < 0 ? undefined : opt.slice(eq + 1)
      switch (key) {
        case 'lowerdir':
          if (value === undefined || value === '') throw new CliError('lowerdir= needs at least one directory')
          o.lowerdirs = splitEscaped(value, ':')
          if (o.lowerdirs.some(d => d === '')) throw new CliError(`lowerdir has an empty entry: ${value}`)
          break
        case 'upperdir':
          o.upperdir = requireValue(key, value)
          break
        case 'workdir':
          o.workdir = requireValue(key, value)
          break
        case 'volatile':
          o.volatile = true
          break
        case 'fsync': {
          // fuse-overlayfs's spelling: fsync=0 is its volatile (it documents `volatile` as "fsync=0").
          const v = requireValue(key, value)
          if (v !== '0' && v !== '1') throw new CliError(`fsync= must be 0 (skip fsync, as volatile) or 1, not ${v}`)
          if (v === '0') o.volatile = true
          break
        }
        case 'redirect_dir': {
          // The kernel's values; ovlfs follows redirects in any case, so 'nofollow' cannot be honoured.
          const v = requireValue(key, value)
          if (v !== 'on' && v !== 'off' && v !== 'follow') throw new CliError(`redirect_dir= must be on, off or follow (ovlfs always follows redirects), not ${v}`)
          o.redirectDir = v === 'on'
          break
        }
        case 'index':
        case 'metacopy': {
          const v = requireValue(key, value)
          if (v !== 'on' && v !== 'off') throw new CliError(`${key}= must be on or off, not ${v}`)
          o[key] = v === 'on'
          break
        }
        case 'timeout': {
          const t = Number(requireValue(key, value))
          if (!Number.isFinite(t) || t < 0) throw new CliError(`timeout= must be a number of seconds, not ${value ?? ''}`)
          o.timeout = t
          break
        }
        case 'fsname':
          o.fsname = requireValue(key, value)
          break
        case 'ro':
          o.readOnly = true
          o.fuseOptions.push('ro')
          break
        case 'rw':
          o.readOnly = false
          o.fuseOptions.push('rw')
          break
        default:
          if (value === undefined && PASS_THROUGH.has(key)) o.fuseOptions.push(key)
          else if (value !== undefined && Object.hasOwn(FUSE_VALUE_SYNTAX, key)) o.fuseOptions.push(`${key}=${checkFuseValue(key, value)}`)
          else if (isMappingOption(opt)) o.mapping.push(opt)
          else if (KERNEL_DEFAULTS.has(key)) { /* the kernel's default; nothing to pass */ } else if (FUSE_OVERLAYFS_UNIMPLEMENTED.has(key)) o.unimplemented.push(opt)
          // fuse-overlayfs warns about options it does not know and mounts anyway; so does ovlfs.
          else o.unknown.push(opt)
      }
    }
  }
  return o
}

function checkFuseValue (key: string, value: string): string {
  const syntax = FUSE_VALUE_SYNTAX[key] as { re: RegExp, what: string }
  if (!syntax.re.test(value)) throw new CliError(`${key}= must be ${syntax.what}, not ${JSON.stringify(value)}`)
  return value
}

function requireValue (key: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new CliError(`${key}= needs a value`)
  return value
}
