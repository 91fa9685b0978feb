/**
 * Overlay-private extended attributes: their names in the two namespaces the
 * kernel uses (`trusted.overlay.*` as root, `user.overlay.*` in its userxattr
 * mode), and which names the merged view hides.
 */
export type XattrNamespace = 'trusted' | 'user'

export interface OverlayXattrs {
  readonly namespace: XattrNamespace
  /** Marks an upper directory whose lower layers are hidden (kernel name). */
  readonly opaque: string
  /** ovlfs's own record of the st_ino an object had before its copy-up. */
  readonly origin: string
  /** The kernel's origin record: the lower object's file handle (hardlinks.ts writes it on index entries). */
  readonly kernelOrigin: string
  /** Where a renamed directory's lower layers are (kernel name, see redirect.ts). */
  readonly redirect: string
  /** Marks an upper file that holds metadata only; its data is still in the lower file (kernel name, metacopy.ts). */
  readonly metacopy: string
  /** The overlay link count of a hard-linked file kept through copy-up, relative to the real one (kernel name and format, hardlinks.ts). */
  readonly nlink: string
}

export function overlayXattrs (namespace: XattrNamespace): OverlayXattrs {
  const prefix = `${namespace}.overlay.`
  return {
    namespace, opaque: `${prefix}opaque`, origin: `${prefix}ovlfs.origin`, kernelOrigin: `${prefix}origin`, redirect: `${prefix}redirect`, metacopy: `${prefix}metacopy`, nlink: `${prefix}nlink`,
  }
}

/** Opaque markers honoured when reading any layer, whoever wrote them. */
export const OPAQUE_NAMES: readonly string[] = ['trusted.overlay.opaque', 'user.overlay.opaque']

/** Redirect markers honoured when reading any layer, whoever wrote them. */
export const REDIRECT_NAMES: readonly string[] = ['trusted.overlay.redirect', 'user.overlay.redirect']

/** Metacopy markers honoured when reading the upper layer, whoever wrote them. */
export const METACOPY_NAMES: readonly string[] = ['trusted.overlay.metacopy', 'user.overlay.metacopy']

/**
 * Whether the merged view hides this name, as the kernel hides its private
 * xattrs: `trusted.overlay.*` always, `user.overlay.*` when that is the
 * namespace in use.
 */
export function isPrivateXattr (name: string, namespace: XattrNamespace): boolean {
  if (name.startsWith('trusted.overlay.')) return true
  return namespace === 'user' && name.startsWith('user.overlay.')
}
