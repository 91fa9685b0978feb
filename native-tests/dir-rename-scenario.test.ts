// A real tool renaming lower directories: a busybox root in two lower layers, ovlfs mounted
// over it (defaults: redirect_dir=on), and busybox's sh/mv/cp/rm run chrooted inside the mount
// doing what package managers do (dpkg's unpack: new dir beside the old one, old renamed away,
// new renamed into place, old deleted; plain `mv` of lower dirs within and across parents).
// Checked: the tool's own view (find) inside the mount, the merged tree from outside, the same
// after a remount, and what the kernel's overlayfs (redirect_dir=on,index=on,metacopy=on) shows over the upper dir
// ovlfs wrote.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { KERNEL_FULL_OPTS, mountFuse, mountKernel, removeTree, tempDir, unmount, unmountAll, type Overlay } from './harness/mounts'
import { diff, snapshotMerged } from './harness/snapshot'

afterAll(unmountAll)

const BUSYBOX = '/bin/busybox'
const APPLETS = ['sh', 'mv', 'cp', 'rm', 'mkdir', 'find', 'cat', 'ls', 'echo', 'sort', 'test']

function write (p: string, data: string): void {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
}

/** lower0: the package's files (top); lower1: a busybox root with the package's old version too. */
function buildRoot (root: string): Overlay {
  const l0 = path.join(root, 'lower0')
  const l1 = path.join(root, 'lower1')
  fs.mkdirSync(path.join(l1, 'bin'), { recursive: true })
  fs.copyFileSync(BUSYBOX, path.join(l1, 'bin', 'busybox'))
  fs.chmodSync(path.join(l1, 'bin', 'busybox'), 0o755)
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(l1, 'bin', a))
  fs.mkdirSync(path.join(l1, 'tmp'), { mode: 0o1777 })
  write(path.join(l1, 'usr/lib/pkg/mod/old.so'), 'old module\n')
  write(path.join(l1, 'usr/lib/pkg/VERSION'), '1.0\n')
  write(path.join(l1, 'usr/share/doc/pkg/README'), 'read me\n')
  write(path.join(l1, 'opt/tool/bin/run'), '#!/bin/sh\necho run\n')
  fs.chmodSync(path.join(l1, 'opt/tool/bin/run'), 0o755)
  write(path.join(l0, 'usr/lib/pkg/mod/extra.so'), 'extra module\n')
  write(path.join(l0, 'usr/share/doc/pkg/changelog'), 'changes\n')
  write(path.join(l0, 'opt/tool/etc/conf'), 'conf\n')
  const o: Overlay = { lowers: [l0, l1], upper: path.join(root, 'upper'), work: path.join(root, 'work'), mnt: path.join(root, 'mnt') }
  for (const d of [o.upper, o.work, o.mnt]) fs.mkdirSync(d)
  return o
}

function chroot (mnt: string, script: string): { status: number | null, out: string } {
  const r = spawnSync('chroot', [mnt, '/bin/sh', '-c', script], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, out: (r.stdout + r.stderr).trim() }
}

const FIND = 'cd / && find usr opt | sort'

const EXPECTED_FIND = [
  'opt', 'opt/tool2', 'opt/tool2/bin', 'opt/tool2/bin/run', 'opt/tool2/etc', 'opt/tool2/etc/conf',
  'usr', 'usr/lib', 'usr/lib/pkg', 'usr/lib/pkg/VERSION', 'usr/lib/pkg/mod', 'usr/lib/pkg/mod/new.so',
  'usr/local', 'usr/share', 'usr/share/doc', 'usr/share/doc/pkg-1.0', 'usr/share/doc/pkg-1.0/README', 'usr/share/doc/pkg-1.0/changelog',
].join('\n')

describe('busybox renaming lower directories inside an ovlfs mount', () => {
  let root = ''
  afterEach(async () => {
    if (root !== '') {
      await unmountAll()
      removeTree(root)
      root = ''
    }
  })

  it('a dpkg-style replace and plain mv of lower dirs work, survive a remount, and the kernel reads the upper the same', async () => {
    root = tempDir('ovlfs-busybox-')
    const o = buildRoot(root)
    await mountFuse(o)
    const steps = [
      // dpkg unpack of pkg 2.0 over 1.0: the new tree beside, the old one renamed away, the new into place
      'mkdir -p /usr/lib/pkg.dpkg-new/mod',
      'echo 2.0 > /usr/lib/pkg.dpkg-new/VERSION',
      'echo new module > /usr/lib/pkg.dpkg-new/mod/new.so',
      'mv /usr/lib/pkg /usr/lib/pkg.dpkg-old',
      'mv /usr/lib/pkg.dpkg-new /usr/lib/pkg',
      'cat /usr/lib/pkg.dpkg-old/mod/old.so /usr/lib/pkg.dpkg-old/mod/extra.so > /tmp/kept',
      'rm -rf /usr/lib/pkg.dpkg-old',
      // a merged dir renamed within its parent, a lower dir moved to another parent and on again
      'mv /usr/share/doc/pkg /usr/share/doc/pkg-1.0',
      'mkdir -p /usr/local',
      'mv /opt/tool /usr/local/tool',
      'mv /usr/local/tool /opt/tool2',
      'test "$(/opt/tool2/bin/run)" = run',
    ]
    const r = chroot(o.mnt, 'set -e; ' + steps.join('; '))
    expect(r, r.out).toEqual({ status: 0, out: '' })
    expect(chroot(o.mnt, FIND).out).toBe(EXPECTED_FIND)
    expect(fs.readFileSync(path.join(o.mnt, 'tmp/kept'), 'utf8')).toBe('old module\nextra module\n')
    expect(fs.readFileSync(path.join(o.mnt, 'usr/lib/pkg/VERSION'), 'utf8')).toBe('2.0\n')
    // Renamed, not copied: the upper holds the renamed dirs empty, with redirects.
    const redirect = (p: string): string => spawnSync('getfattr', ['--only-values', '-n', 'trusted.overlay.redirect', path.join(o.upper, p)], { encoding: 'utf8' }).stdout
    expect(redirect('usr/share/doc/pkg-1.0')).toBe('pkg')
    expect(redirect('opt/tool2')).toBe('/opt/tool')
    expect(fs.readdirSync(path.join(o.upper, 'usr/share/doc/pkg-1.0'))).toEqual([])
    const seen = snapshotMerged(o.mnt)

    await unmount(o.mnt)
    await mountFuse(o)
    expect(diff(seen, snapshotMerged(o.mnt), ['before remount', 'after remount'])).toEqual([])
    expect(chroot(o.mnt, FIND).out).toBe(EXPECTED_FIND)
    await unmount(o.mnt)

    const k: Overlay = { ...o, work: path.join(root, 'work-kernel'), mnt: path.join(root, 'mnt-kernel') }
    fs.mkdirSync(k.work)
    fs.mkdirSync(k.mnt)
    mountKernel(k, KERNEL_FULL_OPTS)
    try {
      expect(diff(snapshotMerged(k.mnt), seen, ['kernel over ovlfs upper', 'ovlfs'])).toEqual([])
      expect(chroot(k.mnt, FIND).out).toBe(EXPECTED_FIND)
    } finally {
      await unmount(k.mnt)
    }
  }, 180_000)
})
