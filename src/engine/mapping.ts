import { readFileSync } from 'node:fs'

/**
 * fuse-overlayfs's id mapping and ownership options, as one pure module:
 * `uidmapping=`, `gidmapping=`, `squash_to_root`, `squash_to_uid=`,
 * `squash_to_gid=`, `static_nlink`, `noacl`, `xattr_permissions=` (the
 * last one's file work is in override-stat.ts).
 *
 * Two id spaces meet in a mount with a mapping:
 * - **host** ids: what the layers' filesystem stores (st_uid of a file in
 *   lowerdir/upperdir, the owner given to lchown on the upper layer);
 * - **merged** ids: what the mount shows in stat and what the FUSE caller's
 *   fsuid/fsgid and chown(2) arguments are expressed in.
 *
 * `uidmapping=H:M:L[:H2:M2:L2...]` says host ids H..H+L-1 appear as merged
 * ids M..M+L-1. fuse-overlayfs (1.10, checked against the binary; the same in
 * upstream main.c's `find_mapping`/`get_uid`/`rpl_stat`) applies it:
 * - stat (getattr, lookup, readdirplus, the reply to create/mkdir/...):
 *   host → merged; a host id outside every range shows as the overflow id
 *   (/proc/sys/kernel/overflowuid|gid, 65534 by default);
 * - create/mkdir/mknod/symlink (the caller's fsuid/fsgid) and chown/chgrp:
 *   merged → host; a merged id outside every range is written as the
 *   overflow id;
 * - no mapping configured (or `uidmapping=` empty): ids pass unchanged;
 * - squash options change only what stat shows (never what is written) and,
 *   when any is set, a failing chown/lchown is reported as success;
 * - ids inside POSIX ACL xattrs are NOT mapped by fuse-overlayfs (stored and
 *   returned as the caller gave them); {@link IdMapping.aclToHost} /
 *   {@link IdMapping.aclToMerged} offer the translation if ovlfs wants it.
 */

export type IdKind = 'uid' | 'gid'

/** Host ids `host..host+length-1` appear as merged ids `merged..merged+length-1`. */
export interface IdRange {
  readonly host: number
  readonly merged: number
  readonly length: number
}

/** A parsed `uidmapping=`/`gidmapping=` value; no ranges means no mapping (ids unchanged). */
export interface IdMap {
  readonly ranges: readonly IdRange[]
}

/** The kernel's default overflow uid/gid ("nobody"), used for ids outside every range. */
export const OVERFLOW_ID = 65534

/** Largest id a range may reach: 2^32-1 is (uid_t)-1, "no id" (chown's "leave unchanged"), as in the kernel's uid_map. */
const MAX_ID = 0xFFFFFFFE
const NO_ID = 0xFFFFFFFF

/** An invalid mount option value of this family; the message is one sentence. */
export class MappingOptionError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MappingOptionError'
  }
}

/**
 * Parse `H:M:L[:H2:M2:L2...]`: every field separated by ':' (fuse-overlayfs
 * splits with strtok on ':' only; the `,` its man page shows between ranges
 * ends the `-o` option, so fuse-overlayfs warns "unknown argument ignored"
 * about the rest and ignores those ranges). Empty fields (a leading, trailing
 * or doubled ':') are skipped, as strtok does; '' is no mapping.
 *
 * Stricter than fuse-overlayfs, which takes strtol's view of numbers (signs,
 * spaces, wrap-around modulo 2^32) and accepts zero lengths and overlaps (the
 * last range given wins there): each field must be decimal digits, lengths at
 * least 1, every range within 0..2^32-2 on both sides, and no two ranges may
 * overlap on either side.
 */
export function parseIdMapping (spec: string): IdMap {
  const fields = spec.split(':').filter(f => f !== '')
  if (fields.length % 3 !== 0) {
    throw new MappingOptionError(`invalid id mapping "${spec}": expected groups of three ':'-separated numbers ID:MAPPED-ID:LENGTH`)
  }
  const ranges: IdRange[] = []
  for (let i = 0; i < fields.length; i += 3) {
    const r: IdRange = { host: parseId(fields[i] as string, spec, MAX_ID), merged: parseId(fields[i + 1] as string, spec, MAX_ID), length: parseId(fields[i + 2] as string, spec, NO_ID) }
    if (r.length === 0) throw new MappingOptionError(`invalid id mapping "${spec}": range ${r.host}:${r.merged}:0 has length 0`)
    if (r.host + r.length - 1 > MAX_ID || r.merged + r.length - 1 > MAX_ID) {
      throw new MappingOptionError(`invalid id mapping "${spec}": range ${r.host}:${r.merged}:${r.length} goes beyond the largest id ${MAX_ID}`)
    }
    for (const o of ranges) {
      if (overlaps(o.host, o.length, r.host, r.length) || overlaps(o.merged, o.length, r.merged, r.length)) {
        throw new MappingOptionError(`invalid id mapping "${spec}": ranges ${o.host}:${o.merged}:${o.length} and ${r.host}:${r.merged}:${r.length} overlap`)
      }
    }
    ranges.push(r)
  }
  return { ranges }
}

/** The option value for a map (inverse of {@link parseIdMapping}). */
export function formatIdMapping (map: IdMap): string {
  return map.ranges.map(r => `${r.host}:${r.merged}:${r.length}`).join(':')
}

function parseId (field: string, spec: string, max: number): number {
  if (!/^[0-9]+$/.test(field)) throw new MappingOptionError(`invalid id mapping "${spec}": "${field}" is not a decimal number`)
  const n = Number(field)
  if (n > max) throw new MappingOptionError(`invalid id mapping "${spec}": ${field} is larger than the largest ${max === MAX_ID ? 'id' : 'length'} ${max}`)
  return n
}

function overlaps (a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen
}

/**
 * `xattr_permissions=`: where fuse-overlayfs keeps ownership and mode when the
 * daemon cannot chown/chmod for real (rootless without a full user namespace).
 * - 0 (default): real chown/chmod on the upper layer.
 * - 1: chown/chmod (and creation, and copy-up) write
 *   `security.fuseoverlayfs.override_stat` = "UID:GID:MODE" (decimal host
 *   ids, octal st_mode with the type bits, e.g. "11:12:100600") on the upper
 *   object instead; stat of an upper object takes uid, gid and permission
 *   bits from it (then maps the ids host → merged as usual). Objects are
 *   created (and copied up) with mode|0755 so the daemon can always use them
 *   (ovlfs: mode|0700, see override-stat.ts).
 * - 2: the same with `user.fuseoverlayfs.override_stat`; EPERM writing it is
 *   ignored.
 * At mount the upper root gets the xattr if it lacks it (copied from a lower
 * root's, else owner 0:0 with the upper root's mode). Any other value is fatal.
 * Both 1.10 and 1.14 also read a lower layer's objects' xattr when that
 * layer's root has one. fuse-overlayfs 1.10 rewrites the owner from the real
 * st_uid/st_gid on chmod, stores -1 for the id a chown leaves unchanged and
 * records the backing mode (mode|0755) at copy-up; 1.14 fixed the first two.
 * ovlfs does what 1.14 does; the details, and where ovlfs differs, are in
 * override-stat.ts, which implements it.
 */
export type XattrPermissions = 0 | 1 | 2

/** The override xattr's name for an xattr_permissions level (none for 0). */
export function overrideStatXattr (level: XattrPermissions): string | undefined {
  return level === 1 ? 'security.fuseoverlayfs.override_stat' : level === 2 ? 'user.fuseoverlayfs.override_stat' : undefined
}

/** Encode an override_stat value as fuse-overlayfs writes it: `${uid}:${gid}:${mode in octal}` (host ids). */
export function encodeOverrideStat (o: { uid: number, gid: number, mode: number }): Buffer {
  return Buffer.from(`${o.uid | 0}:${o.gid | 0}:${o.mode.toString(8)}`)
}

/** Decode an override_stat value (as sscanf "%d:%d:%o": trailing fields ignored); null when malformed. */
export function decodeOverrideStat (value: Buffer | string): { uid: number, gid: number, mode: number } | null {
  const m = /^(-?[0-9]+):(-?[0-9]+):([0-7]+)/.exec(value.toString())
  if (m === null) return null
  return { uid: Number(m[1]) >>> 0, gid: Number(m[2]) >>> 0, mode: parseInt(m[3] as string, 8) }
}

/** The options of this family, parsed from mount option strings. */
export interface MappingOptions {
  /** `uidmapping=`; undefined (or no ranges) = ids unchanged. */
  uidmapping?: IdMap
  gidmapping?: IdMap
  /** `squash_to_root`: stat shows uid 0 and gid 0 (each unless squash_to_uid/gid sets it). */
  squashToRoot: boolean
  /** `squash_to_uid=N`: stat shows uid N, whatever squash_to_root says. */
  squashToUid?: number
  /** `squash_to_gid=N`: stat shows gid N, whatever squash_to_root says. */
  squashToGid?: number
  /**
   * `static_nlink`: every directory reports st_nlink 1 (fuse-overlayfs
   * otherwise counts 2 + merged subdirectories; it also skips reloading the
   * directory for that count).
   */
  staticNlink: boolean
  /**
   * `noacl`: fuse-overlayfs then (a) does not ask the kernel for
   * FUSE_CAP_POSIX_ACL, so the kernel does not enforce ACLs in its
   * permission checks: `system.posix_acl_*` xattrs are still stored and
   * returned as plain xattrs, but grant or deny nothing; and (b) does not
   * copy a parent's default ACL (`system.posix_acl_default`) onto new
   * directories and nodes. It is also forced on when a layer does not
   * support ACLs. Without it, fuse-overlayfs enables kernel ACL checks and
   * copies the parent's default ACL as the new directory's default ACL only
   * (not into its access ACL, and not onto regular files).
   *
   * ovlfs (libfuse 2, which cannot ask for FUSE_POSIX_ACL) never has the
   * kernel enforce ACLs; in a user namespace the kernel then refuses ACL
   * xattrs on the mount itself (EOPNOTSUPP), with or without noacl. With
   * `noacl` ovlfs answers EOPNOTSUPP for them everywhere, the host included,
   * and leaves them out of listxattr (src/fuse/adapter.ts); without it they
   * are stored and returned as plain xattrs.
   */
  noacl: boolean
  xattrPermissions: XattrPermissions
  /**
   * Options of this family in a form fuse-overlayfs does not recognise
   * (`noacl=1`, `squash_to_root=1`, `uidmapping` without '='): it prints
   * "unknown argument ignored" and ignores them; so should the caller.
   */
  ignored: string[]
  /** One-sentence warnings, e.g. a mapping range cut off by ',' instead of ':'. */
  warnings: string[]
}

const KEYS = new Set(['uidmapping', 'gidmapping', 'squash_to_root', 'squash_to_uid', 'squash_to_gid', 'static_nlink', 'noacl', 'xattr_permissions'])

/** Whether an option string (`key` or `key=value`) belongs to this family. */
export function isMappingOption (opt: string): boolean {
  const eq = opt.indexOf('=')
  return KEYS.has(eq < 0 ? opt : opt.slice(0, eq))
}

/**
 * Parse the family's options out of single option strings (already split on
 * ','), e.g. `['uidmapping=0:1000:1', 'squash_to_root']`; other options are
 * skipped. A later occurrence of an option overrides an earlier one. Throws
 * {@link MappingOptionError} for values fuse-overlayfs rejects at mount
 * (`uidmapping=0:x:1`, `squash_to_uid=abc`, `xattr_permissions=3`) and for
 * the malformed mappings {@link parseIdMapping} rejects.
 */
export function fromMountOptions (opts: readonly string[]): MappingOptions {
  const o: MappingOptions = { squashToRoot: false, staticNlink: false, noacl: false, xattrPermissions: 0, ignored: [], warnings: [] }
  let lastMapping: string | undefined
  for (const opt of opts) {
    const eq = opt.indexOf('=')
    const key = eq < 0 ? opt : opt.slice(0, eq)
    const value = eq < 0 ? undefined : opt.slice(eq + 1)
    if (!KEYS.has(key)) {
      if (lastMapping !== undefined && /^[0-9]+:[0-9]+:[0-9]+(:|$)/.test(opt)) {
        o.warnings.push(`option "${opt}" after ${lastMapping}= looks like more mapping ranges separated by ',': fuse-overlayfs ignores it, separate ranges with ':'`)
      }
      lastMapping = undefined
      continue
    }
    lastMapping = undefined
    const flag = key === 'squash_to_root' || key === 'static_nlink' || key === 'noacl'
    if (flag !== (value === undefined)) {
      o.ignored.push(opt)
      continue
    }
    switch (key) {
      case 'uidmapping':
        o.uidmapping = parseIdMapping(value as string)
        lastMapping = key
        break
      case 'gidmapping':
        o.gidmapping = parseIdMapping(value as string)
        lastMapping = key
        break
      case 'squash_to_root':
        o.squashToRoot = true
        break
      case 'squash_to_uid':
        o.squashToUid = parseSquashId(key, value as string)
        break
      case 'squash_to_gid':
        o.squashToGid = parseSquashId(key, value as string)
        break
      case 'static_nlink':
        o.staticNlink = true
        break
      case 'noacl':
        o.noacl = true
        break
      case 'xattr_permissions': {
        const v = value as string
        if (!/^[0-9]+$/.test(v) || Number(v) > 2) throw new MappingOptionError(`xattr_permissions= must be 0, 1 or 2, not "${v}"`)
        o.xattrPermissions = Number(v) as XattrPermissions
        break
      }
    }
  }
  return o
}

/** A squash id: 0..2^32-2; -1 (or 4294967295) means off, as fuse-overlayfs's default -1. */
function parseSquashId (key: string, value: string): number | undefined {
  if (value === '-1') return undefined
  if (!/^[0-9]+$/.test(value)) throw new MappingOptionError(`${key}= must be a decimal id, not "${value}"`)
  const n = Number(value)
  if (n === NO_ID) return undefined
  if (n > MAX_ID) throw new MappingOptionError(`${key}= must be at most ${MAX_ID}, not ${value}`)
  return n
}

export interface IdMappingConfig {
  uidmapping?: IdMap
  gidmapping?: IdMap
  squashToRoot?: boolean
  squashToUid?: number
  squashToGid?: number
  /** Shown for host ids outside every range, and written for merged ids outside every range; 65534 unless given. */
  overflowUid?: number
  overflowGid?: number
}

/**
 * The id translation of one mount. Pure: build it once at mount and call it
 * on every reply and every write of an owner.
 */
export class IdMapping {
  private readonly uid: readonly IdRange[]
  private readonly gid: readonly IdRange[]
  private readonly squashUid: number | undefined
  private readonly squashGid: number | undefined
  private readonly overflowUid: number
  private readonly overflowGid: number

  constructor (c: IdMappingConfig = {}) {
    this.uid = c.uidmapping?.ranges ?? []
    this.gid = c.gidmapping?.ranges ?? []
    this.squashUid = c.squashToUid ?? (c.squashToRoot === true ? 0 : undefined)
    this.squashGid = c.squashToGid ?? (c.squashToRoot === true ? 0 : undefined)
    this.overflowUid = c.overflowUid ?? OVERFLOW_ID
    this.overflowGid = c.overflowGid ?? OVERFLOW_ID
  }

  /** From parsed mount options; overflow ids e.g. from {@link readKernelOverflowIds}. */
  static fromOptions (o: MappingOptions, overflow?: { uid: number, gid: number }): IdMapping {
    return new IdMapping({ ...o, overflowUid: overflow?.uid, overflowGid: overflow?.gid })
  }

  /** Nothing to translate: no ranges and no squash (the adapter may skip every call). */
  get identity (): boolean {
    return this.uid.length === 0 && this.gid.length === 0 && this.squashUid === undefined && this.squashGid === undefined
  }

  /**
   * A squash option is set: fuse-overlayfs then reports success for a chown
   * or lchown that fails (creation's chown included), since stat ignores
   * the stored owner anyway.
   */
  get ignoresChownErrors (): boolean {
    return this.squashUid !== undefined || this.squashGid !== undefined
  }

  /**
   * The id to write on the layers for a merged id: the caller's fsuid/fsgid
   * as owner of a new object, or a chown argument (use {@link chownToHost}
   * there, which keeps -1). Squash options do not apply in this direction.
   */
  toHost (kind: IdKind, id: number): number {
    const ranges = kind === 'uid' ? this.uid : this.gid
    checkId(id)
    if (ranges.length === 0) return id
    for (const r of ranges) {
      if (id >= r.merged && id - r.merged < r.length) return r.host + (id - r.merged)
    }
    return kind === 'uid' ? this.overflowUid : this.overflowGid
  }

  /** The id stat shows for an id stored on the layers: squash first, then the mapping. */
  toMerged (kind: IdKind, hostId: number): number {
    const squash = kind === 'uid' ? this.squashUid : this.squashGid
    if (squash !== undefined) return squash
    return this.mapToMerged(kind, hostId)
  }

  /** host → merged through the ranges only (no squash): for ids that are not an owner, e.g. inside ACLs. */
  mapToMerged (kind: IdKind, hostId: number): number {
    const ranges = kind === 'uid' ? this.uid : this.gid
    checkId(hostId)
    if (ranges.length === 0) return hostId
    for (const r of ranges) {
      if (hostId >= r.host && hostId - r.host < r.length) return r.merged + (hostId - r.host)
    }
    return kind === 'uid' ? this.overflowUid : this.overflowGid
  }

  /** chown(2)'s arguments to host ids; -1 / 4294967295 ("leave unchanged") stays -1. */
  chownToHost (uid: number, gid: number): { uid: number, gid: number } {
    return {
      uid: uid === -1 || uid === NO_ID ? -1 : this.toHost('uid', uid),
      gid: gid === -1 || gid === NO_ID ? -1 : this.toHost('gid', gid),
    }
  }

  /** A copy of stat attributes with uid and gid as the mount shows them. */
  attrToMerged<T extends { uid: number, gid: number }> (attr: T): T {
    if (this.identity) return attr
    return { ...attr, uid: this.toMerged('uid', attr.uid), gid: this.toMerged('gid', attr.gid) }
  }

  /**
   * A `system.posix_acl_access`/`_default` value from the caller, with the ids
   * of its named user/group entries mapped merged → host (for setxattr).
   * fuse-overlayfs does not do this (see the module comment). A value that is
   * not a well-formed version-2 ACL is returned as is, for the filesystem to
   * refuse.
   */
  aclToHost (value: Buffer): Buffer {
    return this.mapAcl(value, (k, id) => this.toHost(k, id))
  }

  /** An ACL xattr value read from a layer, with named entries mapped host → merged (no squash), for getxattr. */
  aclToMerged (value: Buffer): Buffer {
    return this.mapAcl(value, (k, id) => this.mapToMerged(k, id))
  }

  private mapAcl (value: Buffer, map: (kind: IdKind, id: number) => number): Buffer {
    if (this.uid.length === 0 && this.gid.length === 0) return value
    if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== ACL_VERSION) return value
    const out = Buffer.from(value)
    for (let off = 4; off < out.length; off += 8) {
      const tag = out.readUInt16LE(off)
      const kind: IdKind | undefined = tag === ACL_USER ? 'uid' : tag === ACL_GROUP ? 'gid' : undefined
      if (kind !== undefined) out.writeUInt32LE(map(kind, out.readUInt32LE(off + 4)), off + 4)
    }
    return out
  }
}

const ACL_VERSION = 2
const ACL_USER = 0x02
const ACL_GROUP = 0x08

/** The two xattrs that hold POSIX ACLs (ids inside: see {@link IdMapping.aclToHost}). */
export function isAclXattr (name: string): boolean {
  return name === 'system.posix_acl_access' || name === 'system.posix_acl_default'
}

function checkId (id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > NO_ID) throw new RangeError(`not a 32-bit id: ${id}`)
}

const S_IFMT = 0o170000
const S_IFDIR = 0o040000

/**
 * `static_nlink`: a directory reports st_nlink 1 (any directory: merged,
 * upper-only or lower-only); other objects keep theirs. Returns the same
 * object when nothing changes.
 */
export function staticNlink<T extends { mode: number, nlink: number }> (attr: T): T {
  if ((attr.mode & S_IFMT) !== S_IFDIR || attr.nlink === 1) return attr
  return { ...attr, nlink: 1 }
}

/**
 * The kernel's overflow ids, which fuse-overlayfs reads at start
 * (/proc/sys/kernel/overflowuid and overflowgid); 65534 where unreadable.
 * The one function here that touches the system.
 */
export function readKernelOverflowIds (): { uid: number, gid: number } {
  const read = (f: string): number => {
    try {
      const n = Number(readFileSync(`/proc/sys/kernel/${f}`, 'utf8').trim())
      return Number.isInteger(n) && n > 0 ? n : OVERFLOW_ID
    } catch {
      return OVERFLOW_ID
    }
  }
  return { uid: read('overflowuid'), gid: read('overflowgid') }
}
