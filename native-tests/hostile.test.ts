// Hostile input (issue 6): layers built to lure ovlfs out of them, whiteouts and opaque markers
// in odd places, names at and past the limits, names that are not UTF-8, and mount points and
// work dirs placed to trap the daemon.
//
// The rule under test: whatever a layer holds, ovlfs's *own* path walks (lookup, copy-up,
// whiteouts, the work dir) never follow a symlink out of the layers. A process that resolves a
// symlink through the mount is fine: that is ordinary symlink semantics, done by the kernel in
// the process's mount namespace. To tell the two apart, the attacks run in a private mount
// namespace where decoys are bind-mounted over the planted secret and over /etc/shadow: what the
// kernel resolves for the attacker lands on a decoy, what the daemon (in the host namespace)
// would follow lands on the real file. Checked after every attack:
//   - the secret (content, mode, owner, xattrs, mtime, ctime) and its directory are unchanged,
//     and no ovlfs daemon opened, read or wrote it or /etc/shadow (fanotify);
//   - the secret's content appears nowhere in the upper or work dir;
//   - every lower layer is byte- and metadata-identical to what it was before (ctime included);
//   - the kernel's overlayfs, given the same layers and the same attack, is the reference for
//     per-operation results and for the resulting upper dir and merged view.
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { assertNativeTestPrerequisites } from './harness/cli'
import { runChildOps, describeChildOp, type ChildOp } from './harness/child-ops'
import {
  FanotifyWatch, describeFanMask, diffStates, filesContaining, forceUnmountUnder, mountsUnder, ovlfsDaemons,
  removeUnmounted, runLimited, showName, treeState, type FanEvent, type TreeState,
} from './harness/hostile-guard'
import { buildLayers, chr, dir, file, setxattr, symlink, whiteout, type LayerSet, type Node } from './harness/layers'
import {
  KERNEL_FULL_OPTS, fuseCommand, mountFuse, mountKernel, prepareSide, tempDir, unmount, unmountAll, type Overlay,
} from './harness/mounts'
import { apply, describe as describeOp, o, type Op } from './harness/ops'
import { diff, snapshotMerged, snapshotUpper } from './harness/snapshot'

afterAll(async () => {
  await unmountAll()
})

// Roots made by a test; afterEach makes sure nothing stays mounted below them, whatever happened.
const roots: string[] = []
afterEach(() => {
  for (const r of roots.splice(0)) {
    forceUnmountUnder(r)
    try { removeUnmounted(r) } catch (e) { console.warn(String(e)) }
  }
})

/** prepareSide, with the parent of `dst` made first. */
function newSide (base: string, dst: string, nLowers: number): Overlay {
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  return prepareSide(base, dst, nLowers)
}

function newRoot (tag: string): string {
  assertNativeTestPrerequisites()
  const r = fs.realpathSync(tempDir(`ovlfs-test-hostile-${tag}-`))
  roots.push(r)
  return r
}

// ------------------------------------------------------------------------------------------
// The planted secret and its decoys

const SECRET_MARK = `SECRET-${randomBytes(6).toString('hex')}`
const DECOY_MARK = 'DECOY'

interface Host {
  dir: string // the host-side directory holding secret/ and the decoys
  secret: string // the secret directory
  secretFile: string
  /** a fresh decoy tree per side, bind-mounted over `secret` in that side's attack namespace */
  decoy: (side: string) => string
  /** a decoy for /etc/shadow */
  shadowDecoy: (side: string) => string
}

function plantSecret (root: string): Host {
  const dirPath = path.join(root, 'host')
  const secret = path.join(dirPath, 'secret')
  const fill = (d: string, mark: string): void => {
    fs.mkdirSync(path.join(d, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(d, 'secret.txt'), `${mark} file\n`, { mode: 0o600 })
    fs.writeFileSync(path.join(d, 'sub', 'deep.txt'), `${mark} deep\n`, { mode: 0o640 })
  }
  fill(secret, SECRET_MARK)
  setxattr(path.join(secret, 'secret.txt'), 'user.secret', SECRET_MARK)
  setxattr(path.join(secret, 'secret.txt'), 'trusted.secret', SECRET_MARK)
  fs.chmodSync(secret, 0o700)
  for (const p of [path.join(secret, 'sub', 'deep.txt'), path.join(secret, 'secret.txt'), path.join(secret, 'sub'), secret]) {
    fs.utimesSync(p, 1104537600, 1104537600)
  }
  return {
    dir: dirPath,
    secret,
    secretFile: path.join(secret, 'secret.txt'),
    decoy: (side) => {
      const d = path.join(dirPath, `decoy-${side}`)
      if (!fs.existsSync(d)) fill(d, DECOY_MARK)
      return d
    },
    shadowDecoy: (side) => {
      const f = path.join(dirPath, `shadow-decoy-${side}`)
      if (!fs.existsSync(f)) fs.writeFileSync(f, `${DECOY_MARK} shadow\n`, { mode: 0o600 })
      return f
    },
  }
}

/** What must not change on the host: the secret tree, and /etc/shadow's content and metadata. */
function hostState (h: Host): { secret: TreeState, shadow: TreeState } {
  return { secret: treeState(h.secret), shadow: shadowState() }
}

function shadowState (): TreeState {
  const st = fs.lstatSync('/etc/shadow', { bigint: true })
  const sha = spawnSync('sha256sum', ['/etc/shadow'], { encoding: 'utf8' }).stdout.split(' ')[0]
  return new Map([['/etc/shadow', `${(Number(st.mode) & 0o7777).toString(8)} ${st.uid}:${st.gid} ino=${st.ino} sha256=${sha}`]])
}

/** Events on the watched host paths that an ovlfs daemon caused, or anyone caused on the secret. */
function suspicious (events: FanEvent[], h: Host, daemons: number[]): string[] {
  return events
    .filter(e => daemons.includes(e.pid) || e.path === h.secret || e.path.startsWith(h.secret + '/'))
    .map(e => `pid ${e.pid} (${e.cmd.trim() || '?'}) ${describeFanMask(e.mask)} ${e.path}`)
}

// ------------------------------------------------------------------------------------------
// Running an attack on both mounts

interface Attack {
  /** per op: [kernel result, ovlfs result] */
  results: Array<{ op: string, kernel: string, fuse: string }>
  kernel: Overlay
  fuse: Overlay
  /** differences between the kernel and ovlfs (results, upper dir, merged view) */
  divergences: string[]
  /** anything that reached the host or a lower layer */
  breaches: string[]
}

/**
 * Build `set`, clone it for the kernel and for ovlfs, mount both, run `ops` against each mount
 * from a child in a private mount namespace with the decoys in place, and collect divergences
 * and breaches. Both mounts are unmounted before it returns.
 */
async function attack (root: string, h: Host, set: LayerSet, ops: ChildOp[], prepare?: (o: Overlay) => void): Promise<Attack> {
  const base = path.join(root, 'base')
  buildLayers(base, set)
  const side = (name: string): Overlay => newSide(base, path.join(root, 'w', name), set.lowers.length)
  const kernel = side('kernel')
  const fuse = side('fuse')
  prepare?.(kernel)
  prepare?.(fuse)
  const lowersBefore = [...kernel.lowers, ...fuse.lowers].map(l => treeState(l))
  const hostBefore = hostState(h)
  const watch = await FanotifyWatch.start([h.secret, path.join(h.secret, 'sub'), '/etc/shadow'])
  let events: FanEvent[] = []
  let daemons: number[] = []
  const results: Attack['results'] = []
  const divergences: string[] = []
  try {
    mountKernel(kernel, KERNEL_FULL_OPTS)
    await mountFuse(fuse)
    daemons = ovlfsDaemons(fuse.mnt)
    const run = (o: Overlay, name: string): string[] => runChildOps(ops, {
      cwd: o.mnt,
      decoys: [[h.decoy(name), h.secret], [h.shadowDecoy(name), '/etc/shadow']],
    })
    const k = run(kernel, 'kernel')
    const f = run(fuse, 'fuse')
    ops.forEach((op, i) => {
      results.push({ op: describeChildOp(op), kernel: k[i]!, fuse: f[i]! })
      if (k[i] !== f[i]) divergences.push(`result of op ${i + 1} (${describeChildOp(op)}): kernel=${k[i]} ovlfs=${f[i]}`)
    })
    divergences.push(...diff(snapshotMerged(kernel.mnt), snapshotMerged(fuse.mnt)).map(l => 'merged ' + l))
  } finally {
    events = await watch.stop()
    await Promise.allSettled([unmount(fuse.mnt), unmount(kernel.mnt)])
  }
  divergences.push(...diff(snapshotUpper(kernel.upper), snapshotUpper(fuse.upper)).map(l => 'upper  ' + l))
  const hostAfter = hostState(h)
  const breaches = [
    ...diffStates(hostBefore.secret, hostAfter.secret, 'host secret'),
    ...diffStates(hostBefore.shadow, hostAfter.shadow, 'host'),
    ...suspicious(events, h, daemons).map(s => `fanotify: ${s}`),
    ...[...kernel.lowers, ...fuse.lowers].flatMap((l, i) => diffStates(lowersBefore[i]!, treeState(l), `lower ${path.relative(root, l)}`)),
    ...filesContaining(fuse.upper, SECRET_MARK).map(p => `secret content in ovlfs upper: ${p}`),
    ...filesContaining(fuse.work, SECRET_MARK).map(p => `secret content in ovlfs work: ${p}`),
    ...results.filter(r => r.fuse.includes(SECRET_MARK)).map(r => `secret content seen through ovlfs: ${r.op} -> ${r.fuse}`),
  ]
  return { results, kernel, fuse, divergences, breaches }
}

function report (a: Attack): string {
  const table = a.results.map((r, i) => `  ${String(i + 1).padStart(2)}. ${r.op}\n      kernel: ${r.kernel}\n      ovlfs:  ${r.fuse}`).join('\n')
  return `breaches:\n  ${a.breaches.join('\n  ') || '(none)'}\ndivergences from the kernel:\n  ${a.divergences.join('\n  ') || '(none)'}\nresults:\n${table}`
}

function resultOf (a: Attack, opIndex: number): { kernel: string, fuse: string } {
  return a.results[opIndex]!
}

// ------------------------------------------------------------------------------------------
// 1. Symlinks out of the layers

describe('symlinks pointing out of the layers', () => {
  /** Every kind of escaping symlink; `S` is the secret dir, `rel` climbs from a layer dir to it. */
  function escapingLayers (h: Host): LayerSet {
    const S = h.secret
    // Layers sit at <root>/w/<side>/lowerN, the mount at <root>/w/<side>/mnt: the same depth,
    // so from either place ../../../host/secret is the secret (and the decoy in the attack namespace).
    const rel = '../../../host/secret'
    const lower0: Record<string, Node> = {
      abs_etc: symlink('/etc'),
      abs_root: symlink('/'),
      abs_secretdir: symlink(S),
      abs_secret: symlink(`${S}/secret.txt`),
      abs_shadow: symlink('/etc/shadow'),
      abs_dangling: symlink(`${S}/created-through-a-dangling-link`),
      rel_up: symlink('../../../../../../../../../../..'),
      rel_secret: symlink(`${rel}/secret.txt`),
      rel_secretdir: symlink(rel),
      loop1: symlink('loop2'),
      loop2: symlink('loop1'),
      self: symlink('self'),
      // a real directory above a directory symlink: the symlink must not merge in
      'shadowed/inner': file('inner\n'),
      // a symlink above a real directory: the merged name is the symlink
      rev: symlink(S),
      // a merged directory that holds an escaping link in a lower layer
      'm/top': file('top\n'),
      'nested/deep/link': symlink(S),
      'nested/deep/keep': file('keep\n'),
    }
    const lower1: Record<string, Node> = {
      shadowed: symlink(S),
      'rev/x': file('under the link\n'),
      'm/s': symlink(S),
      'm/f': file('f\n'),
      'm/rel': symlink(`../${rel}`),
    }
    const upper: Record<string, Node> = {
      up_secret: symlink(`${S}/secret.txt`),
      'updir/esc': symlink(S),
    }
    return { lowers: [lower0, lower1], upper }
  }

  it('reads through the mount see only what the kernel resolves (the decoys), never the secret', async () => {
    const root = newRoot('read')
    const h = plantSecret(root)
    const ops: ChildOp[] = [
      { op: 'read', path: 'abs_secret' }, { op: 'read', path: 'rel_secret' }, { op: 'read', path: 'abs_shadow' },
      { op: 'read', path: 'up_secret' }, { op: 'read', path: 'abs_etc/shadow' }, { op: 'read', path: 'abs_secretdir/sub/deep.txt' },
      { op: 'readdir', path: 'abs_secretdir' }, { op: 'readdir', path: 'rel_secretdir' }, { op: 'readdir', path: 'shadowed' },
      { op: 'readdir', path: 'rev' }, { op: 'readdir', path: 'm' }, { op: 'read', path: 'm/s/secret.txt' }, { op: 'read', path: 'm/rel/secret.txt' },
      { op: 'read', path: 'shadowed/secret.txt' }, { op: 'read', path: 'rev/x' }, { op: 'read', path: 'loop1' }, { op: 'read', path: 'self' },
      { op: 'readlink', path: 'rel_up' }, { op: 'lstat', path: 'abs_root' }, { op: 'stat', path: 'abs_secret' },
      { op: 'getxattr', path: 'abs_secret', name: 'trusted.secret' }, { op: 'readdir', path: 'nested/deep' },
      { op: 'read', path: 'updir/esc/secret.txt' },
    ]
    const a = await attack(root, h, escapingLayers(h), ops)
    expect(a.breaches, report(a)).toEqual([])
    expect(a.divergences, report(a)).toEqual([])
    // The real directory above the directory symlink is all there is of `shadowed`.
    expect(resultOf(a, 8).fuse).toBe('ok:inner')
    expect(resultOf(a, 13).fuse).toBe('ENOENT')
    expect(resultOf(a, 0).fuse).toBe(`ok:${DECOY_MARK} file\n`)
    expect(resultOf(a, 15).fuse).toBe('ELOOP')
  })

  it('copy-up triggers on the symlinks act on the links themselves; following ones are resolved by the kernel', async () => {
    const root = newRoot('copyup')
    const h = plantSecret(root)
    const links = ['abs_secret', 'rel_secret', 'abs_shadow', 'abs_secretdir', 'abs_etc', 'abs_root', 'rel_up', 'loop1', 'self', 'abs_dangling', 'up_secret']
    const ops: ChildOp[] = [
      // no-follow operations: they copy up (or change) the link itself
      ...links.map((l): ChildOp => ({ op: 'lchown', path: l, uid: 1234, gid: 4321 })),
      ...links.map((l): ChildOp => ({ op: 'lutimes', path: l, sec: 1000000000 })),
      ...links.map((l): ChildOp => ({ op: 'setxattr', path: l, name: 'trusted.attack', value: 'x' })),
      { op: 'setxattr', path: 'abs_secret', name: 'user.attack', value: 'x' },
      { op: 'link', from: 'abs_secret', to: 'abs_secret.hard' }, { op: 'link', from: 'loop1', to: 'loop1.hard' },
      { op: 'link', from: 'abs_secretdir', to: 'abs_secretdir.hard' },
      { op: 'rename', from: 'abs_shadow', to: 'abs_shadow.moved' }, { op: 'rename', from: 'abs_shadow.moved', to: 'abs_shadow' },
      { op: 'rename', from: 'rel_secret', to: 'm/rel_secret' }, { op: 'rename', from: 'abs_secretdir', to: 'nested/abs_secretdir' },
      { op: 'readlink', path: 'm/rel_secret' }, { op: 'lstat', path: 'abs_secret' },
      // following operations: the kernel resolves the link (to the decoy in this namespace)
      { op: 'chmod', path: 'abs_secret', mode: 0o777 }, { op: 'chown', path: 'up_secret', uid: 7, gid: 7 },
      { op: 'touch', path: 'abs_secret' }, { op: 'utimes', path: 'm/rel_secret', sec: 5 },
      { op: 'truncate', path: 'abs_secret', size: 1 }, { op: 'append', path: 'up_secret', data: 'appended' },
      { op: 'openTrunc', path: 'm/rel_secret' }, { op: 'setxattr', path: 'abs_secret', name: 'trusted.follow', value: 'f', follow: true },
      { op: 'create', path: 'abs_dangling', data: 'through a dangling link' },
      { op: 'create', path: 'nested/abs_secretdir/new-in-secret-dir', data: 'n' },
      { op: 'read', path: 'rel_up/etc/shadow' },
      { op: 'read', path: 'abs_secret' }, { op: 'lstat', path: 'abs_secret' },
    ]
    const a = await attack(root, h, escapingLayers(h), ops)
    expect(a.breaches, report(a)).toEqual([])
    expect(a.divergences, report(a)).toEqual([])
    // The links were copied up as links, owned as asked, pointing where they pointed.
    expect(fs.readlinkSync(path.join(a.fuse.upper, 'abs_secret'))).toBe(`${h.secret}/secret.txt`)
    expect(fs.lstatSync(path.join(a.fuse.upper, 'abs_secret')).uid).toBe(1234)
    expect(fs.lstatSync(path.join(a.fuse.upper, 'abs_etc')).isSymbolicLink()).toBe(true)
  })

  it('a lower file hard-linked to a host file (same filesystem): every change copies up, the shared inode is never written', async () => {
    const root = newRoot('hardlink')
    const h = plantSecret(root)
    const ops: ChildOp[] = [
      { op: 'read', path: 'hl' }, { op: 'chmod', path: 'hl', mode: 0o777 }, { op: 'read', path: 'hl2' }, { op: 'lchown', path: 'hl2', uid: 5, gid: 5 },
      { op: 'read', path: 'hl3' }, { op: 'lutimes', path: 'hl3', sec: 1000 }, { op: 'read', path: 'hl4' }, { op: 'setxattr', path: 'hl4', name: 'trusted.x', value: 'y' },
      { op: 'truncate', path: 'hl5', size: 1 }, { op: 'append', path: 'hl6', data: 'appended' }, { op: 'openTrunc', path: 'hl7' },
      { op: 'link', from: 'hl8', to: 'hl8.more' }, { op: 'rename', from: 'hl9', to: 'hl9.moved' }, { op: 'unlink', path: 'hl10' },
      { op: 'setxattr', path: 'hl11', name: 'user.x', value: 'y' }, { op: 'lstat', path: 'hl' }, { op: 'lstat', path: 'hl8.more' },
    ]
    const names = ['hl', 'hl2', 'hl3', 'hl4', 'hl5', 'hl6', 'hl7', 'hl8', 'hl9', 'hl10', 'hl11']
    // cp -a cannot carry a link that leaves the tree: the links are made in each side's lower
    const a = await attack(root, h, { lowers: [{ other: file('o') }] }, ops, (o) => {
      for (const n of names) fs.linkSync(h.secretFile, path.join(o.lowers[0]!, n))
    })
    // Here the secret's content *is* layer content (the lower holds a name of its inode), so it
    // may show through the mount and be copied up; its inode (the baseline is taken after the
    // links were planted) must not change at all, ctime included.
    expect(a.breaches.filter(b => !b.startsWith('secret content')), report(a)).toEqual([])
    expect(a.divergences, report(a)).toEqual([])
  })

  it('directory copy-ups next to escaping links: new entries land in the upper dir, never behind a link', async () => {
    const root = newRoot('dirs')
    const h = plantSecret(root)
    const ops: ChildOp[] = [
      { op: 'create', path: 'shadowed/secret.txt', data: 'mine' }, // the real dir above the dir symlink
      { op: 'mkdir', path: 'shadowed/sub' }, { op: 'create', path: 'shadowed/sub/deep.txt', data: 'mine too' },
      { op: 'setxattr', path: 'shadowed', name: 'trusted.d', value: 'd' }, { op: 'chmod', path: 'shadowed', mode: 0o700 },
      { op: 'readdir', path: 'shadowed' },
      { op: 'create', path: 'm/new', data: 'n' }, { op: 'rename', from: 'm/f', to: 'm/f2' }, { op: 'lchown', path: 'm/s', uid: 1, gid: 1 },
      { op: 'unlink', path: 'm/rel' }, { op: 'readdir', path: 'm' },
      { op: 'unlink', path: 'nested/deep/link' }, { op: 'readdir', path: 'nested/deep' },
      { op: 'unlink', path: 'rev' }, { op: 'mkdir', path: 'rev' }, { op: 'readdir', path: 'rev' }, { op: 'create', path: 'rev/secret.txt', data: 'r' },
      { op: 'rename', from: 'updir/esc', to: 'updir/esc2' }, { op: 'lchown', path: 'updir/esc2', uid: 2, gid: 2 },
      { op: 'unlink', path: 'abs_root' }, { op: 'symlink', target: h.secret, path: 'abs_root' }, { op: 'readlink', path: 'abs_root' },
      { op: 'rmdir', path: 'shadowed/sub' },
    ]
    const a = await attack(root, h, escapingLayers(h), ops)
    expect(a.breaches, report(a)).toEqual([])
    expect(a.divergences, report(a)).toEqual([])
    expect(fs.readFileSync(path.join(a.fuse.upper, 'shadowed', 'secret.txt'), 'utf8')).toBe('mine')
    expect(resultOf(a, 5).fuse).toBe('ok:inner|secret.txt|sub')
  })
})

// ------------------------------------------------------------------------------------------
// 2. A work dir that leads out of itself

describe('the work dir', () => {
  it('<workdir>/work as a symlink to a host dir: ovlfs never empties or writes the target (the kernel replaces the link)', async () => {
    const root = newRoot('workdir')
    const h = plantSecret(root)
    const variants: Array<{ name: string, link: string }> = [
      { name: 'to-the-secret-dir', link: h.secret },
      { name: 'dangling-into-the-secret-dir', link: path.join(h.secret, 'made-by-ovlfs') },
    ]
    const failures: string[] = []
    for (const v of variants) {
      for (const kind of ['kernel', 'ovlfs'] as const) {
        const d = path.join(root, v.name, kind)
        const o: Overlay = { lowers: [path.join(d, 'lower')], upper: path.join(d, 'upper'), work: path.join(d, 'work'), mnt: path.join(d, 'mnt') }
        for (const p of [o.lowers[0]!, o.upper, o.work, o.mnt]) fs.mkdirSync(p, { recursive: true })
        fs.writeFileSync(path.join(o.lowers[0]!, 'f'), 'lower\n')
        fs.symlinkSync(v.link, path.join(o.work, 'work'))
        const before = hostState(h)
        const lowerBefore = treeState(o.lowers[0]!)
        let mounted = false
        let outcome: string
        if (kind === 'kernel') {
          mountKernel(o)
          mounted = true
          outcome = 'mounted'
        } else {
          const r = runCliLimited(['-o', `lowerdir=${o.lowers[0]},upperdir=${o.upper},workdir=${o.work}`, o.mnt])
          mounted = mountsUnder(o.mnt).length > 0
          outcome = r.status === 0 ? 'mounted' : `exit ${r.status}: ${r.stderr.trim()}`
          if (r.status !== 0 && r.status !== 1) failures.push(`${v.name}: ovlfs exited ${r.status} (signal ${r.signal})`)
          if (r.status === 1 && !/^ovlfs: [^\n]+\n?$/.test(r.stderr)) failures.push(`${v.name}: ovlfs refused without one clear line: ${JSON.stringify(r.stderr)}`)
        }
        if (mounted) {
          // a copy-up and a whiteout go through the work dir
          const w = runChildOps([{ op: 'append', path: 'f', data: 'x' }, { op: 'create', path: 'g', data: 'g' }, { op: 'unlink', path: 'g' }, { op: 'unlink', path: 'f' }], { cwd: o.mnt, timeoutMs: 20_000 })
          if (kind === 'ovlfs' && w.some(x => x !== 'ok')) failures.push(`${v.name}: writes through the ovlfs mount failed: ${w.join(', ')}`)
          if (kind === 'kernel') await unmount(o.mnt)
          else forceUnmountUnder(o.mnt)
        }
        const broke = [...diffStates(before.secret, hostState(h).secret, 'host secret'), ...diffStates(lowerBefore, treeState(o.lowers[0]!), 'lower')]
        if (kind === 'kernel') {
          // The reference: the kernel mounts, replaces the link with a directory, leaves the target alone.
          expect(broke, `kernel with work/work -> ${v.link}`).toEqual([])
          expect(fs.lstatSync(path.join(o.work, 'work')).isDirectory()).toBe(true)
        } else {
          failures.push(...broke.map(b => `${v.name} (${outcome}): ${b}`))
          if (fs.lstatSync(path.join(o.work, 'work')).isSymbolicLink() && outcome === 'mounted') {
            failures.push(`${v.name}: ovlfs mounted and kept using ${o.work}/work -> ${v.link}`)
          }
        }
      }
    }
    expect(failures).toEqual([])
  })

  it('mount-image of a container whose work dir in the data root is a symlink out of it: the target is untouched', async () => {
    const root = newRoot('workimg')
    const h = plantSecret(root)
    const fx = path.join(root, 'fx')
    const made = runLimited(process.execPath, [path.join(__dirname, '..', 'scripts', 'make-docker-fixture.js'), fx, 'base'])
    expect(made.status, made.stderr).toBe(0)
    const containerWork = path.join(fx, 'overlay2', '7518056fea3709f00609f896954dbe47d2b5d8ac39366d45770caa7a9d3247b3', 'work')
    expect(fs.existsSync(containerWork)).toBe(true)
    fs.rmSync(path.join(containerWork, 'work'), { recursive: true, force: true })
    fs.symlinkSync(h.secret, path.join(containerWork, 'work'))
    const mnt = path.join(root, 'mnt')
    fs.mkdirSync(mnt)
    const before = hostState(h)
    const r = runCliLimited(['mount-image', '--docker-root', fx, 'web', mnt])
    const mounted = mountsUnder(mnt).length > 0
    forceUnmountUnder(mnt)
    expect([0, 1], `exit ${r.status} signal ${r.signal}: ${r.stderr}`).toContain(r.status)
    expect(diffStates(before.secret, hostState(h).secret, 'host secret'), `mount-image ${mounted ? 'mounted' : 'refused: ' + r.stderr.trim()}`).toEqual([])
  })
})

// ------------------------------------------------------------------------------------------
// 3. Mount points that overlap the layers

describe('a mount point on or inside a layer', () => {
  it('is refused with one line, or served without deadlock (the kernel serves all of them)', async () => {
    const root = newRoot('mntlayer')
    const failures: string[] = []
    const outcomes: string[] = []
    const cases: Array<{ name: string, mnt: (o: Overlay) => string }> = [
      { name: 'mountpoint = upperdir', mnt: o => o.upper },
      { name: 'mountpoint = empty dir inside the lowerdir', mnt: o => path.join(o.lowers[0]!, 'empty') },
      { name: 'mountpoint = empty dir inside the upperdir', mnt: o => path.join(o.upper, 'empty') },
    ]
    for (const c of cases) {
      for (const kind of ['kernel', 'ovlfs'] as const) {
        const d = path.join(root, c.name.replace(/\W+/g, '-'), kind)
        const o: Overlay = { lowers: [path.join(d, 'lower')], upper: path.join(d, 'upper'), work: path.join(d, 'work'), mnt: '' }
        for (const p of [o.lowers[0]!, o.upper, o.work]) fs.mkdirSync(p, { recursive: true })
        fs.writeFileSync(path.join(o.lowers[0]!, 'f'), 'lower\n')
        o.mnt = c.mnt(o)
        fs.mkdirSync(o.mnt, { recursive: true })
        // Everything that touches the mount runs in a child with a time limit: a deadlocked
        // daemon must not hang the test process.
        const probe = (): string => {
          // ls -la stats every entry, the mount point's own name included where the merged view shows it
          const r = runLimited('sh', ['-c', 'ls -la "$1" >/dev/null && for d in "$1"/*; do if [ -d "$d" ]; then ls -la "$d" >/dev/null || exit 1; fi; done && cat "$1/f" && echo new > "$1/new" && cat "$1/new"', 'sh', o.mnt], { timeoutMs: 10_000 })
          return r.timedOut ? 'hung (no answer in 10 s)' : r.status === 0 ? 'served' : `failed: ${r.stderr.trim()}`
        }
        if (kind === 'kernel') {
          mountKernel(o)
          const got = probe()
          forceUnmountUnder(d)
          expect(got, `kernel, ${c.name}`).toBe('served')
          continue
        }
        const r = runCliLimited(['-o', `lowerdir=${o.lowers[0]},upperdir=${o.upper},workdir=${o.work}`, o.mnt])
        if (r.timedOut) failures.push(`${c.name}: the mount command did not return in 30 s`)
        else if (r.status === 1) {
          outcomes.push(`${c.name}: refused: ${r.stderr.trim()}`)
          if (!/^ovlfs: [^\n]+\n?$/.test(r.stderr)) failures.push(`${c.name}: refused without one clear line: ${JSON.stringify(r.stderr)}`)
        } else if (r.status === 0) {
          const got = probe()
          outcomes.push(`${c.name}: mounted, ${got}`)
          if (got !== 'served') failures.push(`${c.name}: ovlfs mounted (exit 0) but the mount is ${got}`)
        } else failures.push(`${c.name}: exit ${r.status}, signal ${r.signal}: ${r.stderr}`)
        forceUnmountUnder(d)
      }
    }
    expect(failures, `what ovlfs did:\n  ${outcomes.join('\n  ')}`).toEqual([])
  })
})

/** The CLI under test in a child with a hard time limit; it returns once the mount is live. */
function runCliLimited (args: string[]): ReturnType<typeof runLimited> {
  const [cmd, ...pre] = fuseCommand()
  return runLimited(cmd!, [...pre, ...args], { timeoutMs: 30_000 })
}

// ------------------------------------------------------------------------------------------
// 4. Whiteouts and opaque markers in odd places

/** Both mounts over clones of `set`; ops applied by the test process to each (kernel first). */
async function differential (root: string, set: LayerSet, ops: Op[]): Promise<{ lines: string[], results: Array<[string, string, string]>, fuse: Overlay }> {
  const base = path.join(root, 'base')
  buildLayers(base, set)
  const kernel = newSide(base, path.join(root, 'w', 'kernel'), set.lowers.length)
  const fuse = newSide(base, path.join(root, 'w', 'fuse'), set.lowers.length)
  const lowersBefore = fuse.lowers.map(l => treeState(l))
  const lines: string[] = []
  const results: Array<[string, string, string]> = []
  try {
    mountKernel(kernel, KERNEL_FULL_OPTS)
    await mountFuse(fuse)
    for (const op of ops) {
      const k = apply(kernel.mnt, op)
      const f = apply(fuse.mnt, op)
      results.push([describeOp(op), k, f])
      if (k !== f) lines.push(`result of ${describeOp(op)}: kernel=${k} ovlfs=${f}`)
    }
    lines.push(...diff(snapshotMerged(kernel.mnt), snapshotMerged(fuse.mnt)).map(l => 'merged ' + l))
    if (ovlfsDaemons(fuse.mnt).length === 0) lines.push('the ovlfs daemon is gone')
  } finally {
    await Promise.allSettled([unmount(fuse.mnt), unmount(kernel.mnt)])
  }
  lines.push(...diff(snapshotUpper(kernel.upper), snapshotUpper(fuse.upper)).map(l => 'upper  ' + l))
  lines.push(...fuse.lowers.flatMap((l, i) => diffStates(lowersBefore[i]!, treeState(l), `lower${i}`)))
  return { lines, results, fuse }
}

const showResults = (r: Array<[string, string, string]>): string => r.map(([op, k, f]) => `${op}: kernel=${k} ovlfs=${f}`).join('\n')
/** Long runs of one character (the 255-byte names) shortened for reading: nnnn… -> n×255. */
const abbrev = (s: string): string => s.replace(/(.)\1{15,}/g, (m, c: string) => `${c}×${m.length}`)

describe('whiteouts and opaque markers in odd places', () => {
  it('kernel-format markers (char 0/0 whiteouts, opaque xattrs) where nothing expects them: the same view as the kernel', async () => {
    const root = newRoot('oddkernel')
    const opaque = (v: string): Record<string, string> => ({ 'trusted.overlay.opaque': v })
    const set: LayerSet = {
      lowers: [
        {
          wh_nothing_below: whiteout(), // a whiteout with nothing to hide
          'd/wh_in_dir': whiteout(),
          'd/keep': file('keep'),
          hidden_dir: whiteout(), // hides a whole directory below
          opq_file: file('a file marked opaque', { xattrs: opaque('y') }),
          opq_link: symlink('target', { xattrs: opaque('y') }),
          'opq_n/top': file('top'),
          opq_n: dir({ xattrs: opaque('n') }), // only "y" means opaque
          'opq_y/top': file('top'),
          opq_y: dir({ xattrs: opaque('y') }),
          'opq_empty/top': file('top'),
          opq_empty: dir({ xattrs: opaque('') }),
          dev_1_3: chr(1, 3), // a real char device is not a whiteout
        },
        {
          'hidden_dir/a': file('a'), 'hidden_dir/sub/b': file('b'),
          'opq_n/below': file('below'), 'opq_y/below': file('below'), 'opq_empty/below': file('below'),
          bottom_wh: whiteout(), // a whiteout in the bottom layer
        },
      ],
      upper: {
        up_wh_nothing: whiteout(),
        up_opq: dir({ opaque: true }),
        'up_opq/x': file('x'),
        'd/wh_in_dir': whiteout(),
      },
    }
    const ops: Op[] = [
      o.read('wh_nothing_below'), o.read('hidden_dir/a'), o.read('opq_n/below'), o.read('opq_y/below'), o.read('opq_empty/below'),
      o.read('bottom_wh'), o.read('d/keep'),
      o.create('wh_nothing_below', 'new over a whiteout'), o.mkdir('hidden_dir'), o.create('hidden_dir/n', 'n'),
      o.create('bottom_wh', 'b'), o.chmod('opq_file', 0o600), o.chown('opq_link', 5, 5), o.create('opq_n/new', 'n'),
      o.create('up_wh_nothing', 'u'), o.unlink('d/keep'), o.rmdir('opq_y'),
      // Not here: setting or removing trusted.overlay.* through the mount. Kernels since 6.7
      // escape them (stored as trusted.overlay.overlay.*, for nested overlays); ovlfs refuses
      // them with EOPNOTSUPP, as older kernels did.
    ]
    const r = await differential(root, set, ops)
    expect(r.lines.map(abbrev), abbrev(showResults(r.results))).toEqual([])
  })

  it('the root of a lower layer marked opaque is ignored, as the kernel does', async () => {
    const root = newRoot('opqroot')
    const set: LayerSet = { lowers: [{ top: file('t') }, { bottom: file('b') }] }
    const base = path.join(root, 'base')
    buildLayers(base, set)
    setxattr(path.join(base, 'lower0'), 'trusted.overlay.opaque', 'y')
    fs.utimesSync(path.join(base, 'lower0'), 1104537600, 1104537600)
    const kernel = newSide(base, path.join(root, 'w', 'kernel'), 2)
    const fuse = newSide(base, path.join(root, 'w', 'fuse'), 2)
    try {
      mountKernel(kernel, KERNEL_FULL_OPTS)
      await mountFuse(fuse)
      expect(fs.readdirSync(fuse.mnt).sort()).toEqual(fs.readdirSync(kernel.mnt).sort())
      expect(diff(snapshotMerged(kernel.mnt), snapshotMerged(fuse.mnt))).toEqual([])
    } finally {
      await Promise.allSettled([unmount(fuse.mnt), unmount(kernel.mnt)])
    }
  })

  it('OCI/AUFS .wh. entries in odd places: never a crash, never followed, a listing that lookups agree with', async () => {
    const root = newRoot('oddoci')
    const h = plantSecret(root)
    const long = 'n'.repeat(251) // .wh. + 251 bytes = 255: the longest possible whiteout name
    const base = path.join(root, 'base')
    const set: LayerSet = {
      lowers: [
        {
          x: file('L0 x'), // '.wh.x' beside it in the same layer: x stays, from this layer
          'x2/in': file('in'), // '.wh.x2' beside a directory of the same layer
          'od/top': file('top'), // '.wh..wh..opq' is a directory here
          'os/top': file('top'), // '.wh..wh..opq' is a symlink to the secret dir here
          'oc/top': file('top'), // '.wh..wh..opq' is a char 0/0 whiteout here
          'wd/keep': file('keep'),
          keep: file('keep'),
          'nul0/x': whiteout(), // a char 0/0 whiteout in a dir that is a file in the layer below
        },
        {
          x: file('L1 x'), y: file('L1 y'), abs: file('L1 abs'), [long]: file('long'), 'nl\nname': file('nl'),
          'od/below': file('below'), 'os/below': file('below'), 'oc/below': file('below'), 'wd/sub/deep': file('deep'),
          'x2/below': file('below x2'),
          nul0: file('a file under a dir'),
        },
      ],
    }
    buildLayers(base, set)
    const l0 = path.join(base, 'lower0')
    const touch = (rel: string): void => fs.writeFileSync(path.join(l0, rel), '')
    touch('.wh.x'); touch('.wh.y'); touch('.wh.x2'); touch('.wh.'); touch('.wh..'); touch('.wh...'); touch(`.wh.${long}`); touch('.wh.nl\nname')
    fs.mkdirSync(path.join(l0, 'od', '.wh..wh..opq'))
    fs.symlinkSync(h.secret, path.join(l0, 'os', '.wh..wh..opq'))
    spawnSync('mknod', [path.join(l0, 'oc', '.wh..wh..opq'), 'c', '0', '0'])
    touch('wd/.wh.sub')
    fs.symlinkSync(h.secretFile, path.join(l0, '.wh.abs')) // a whiteout marker that is a symlink to the secret
    fs.mkdirSync(path.join(l0, '.wh..wh.plnk'))
    fs.linkSync(path.join(l0, 'keep'), path.join(l0, '.wh..wh.plnk', '1234.5678'))
    const o = newSide(base, path.join(root, 'w', 'fuse'), 2)
    const lowersBefore = o.lowers.map(l => treeState(l))
    const hostBefore = hostState(h)
    const problems: string[] = []
    let rootList: string[] = []
    const made: Record<string, string> = {}
    try {
      await mountFuse(o)
      rootList = fs.readdirSync(o.mnt).sort()
      // Every name a listing shows must be there for a lookup too.
      for (const d of ['', 'od', 'os', 'oc', 'wd', 'x2', 'nul0']) {
        for (const n of fs.readdirSync(path.join(o.mnt, d))) {
          try { fs.lstatSync(path.join(o.mnt, d, n)) } catch (e) { problems.push(`listed but not found: ${path.join(d, n)} (${(e as NodeJS.ErrnoException).code})`) }
        }
      }
      const read = (p: string): string => { try { return fs.readFileSync(path.join(o.mnt, p), 'utf8') } catch (e) { return (e as NodeJS.ErrnoException).code! } }
      const list = (p: string): string[] | string => { try { return fs.readdirSync(path.join(o.mnt, p)).sort() } catch (e) { return (e as NodeJS.ErrnoException).code! } }
      const got = {
        x: read('x'), y: read('y'), abs: read('abs'), long: read(long), nl: read('nl\nname'), keep: read('keep'),
        od: list('od'), os: list('os'), oc: list('oc'), wd: list('wd'), x2: list('x2'), 'x2/below': read('x2/below'), nul0: list('nul0'),
      }
      const want = {
        x: 'L0 x', // .wh.x hides x only in the layers below its own
        y: 'ENOENT', abs: 'ENOENT', long: 'ENOENT', nl: 'ENOENT', keep: 'keep',
        od: ['top'], os: ['top'], oc: ['top'], // .wh..wh..opq of any type makes its dir opaque
        wd: ['keep'],
        // .wh.x2 deletes x2 of the layers below; the x2 of its own layer is a new directory
        // that does not merge with them (what applying the layer tar produces)
        x2: ['in'], 'x2/below': 'ENOENT',
        nul0: [], // a char 0/0 whiteout in a directory that merges with nothing
      }
      // ... and what a listing leaves out, a lookup does not find either.
      for (const hidden of ['.wh.x', '.wh.', '.wh..', '.wh...', '.wh..wh.plnk', '.wh.abs', 'od/.wh..wh..opq', 'os/.wh..wh..opq', 'oc/.wh..wh..opq', 'wd/.wh.sub', 'nul0/x']) {
        let res = 'ENOENT'
        try { const st = fs.lstatSync(path.join(o.mnt, hidden)); res = st.isSymbolicLink() ? `a symlink -> ${fs.readlinkSync(path.join(o.mnt, hidden))}` : st.isDirectory() ? 'a directory' : 'a file' } catch (e) { res = (e as NodeJS.ErrnoException).code! }
        if (res !== 'ENOENT') problems.push(`not listed, yet a lookup of ${JSON.stringify(hidden)} finds ${res}`)
      }
      for (const [k, v] of Object.entries(want)) {
        const g = (got as Record<string, unknown>)[k]
        if (JSON.stringify(g) !== JSON.stringify(v)) problems.push(`${JSON.stringify(k)}: expected ${JSON.stringify(v)}, got ${JSON.stringify(g)}`)
      }
      // Creating such names through the mount: refused, or (as the kernel does) an ordinary
      // visible file that hides nothing. Never a name that silently deletes another.
      for (const name of ['.wh.keep', '.wh.', '.wh..wh..opq', `.wh.${long}`, 'od/.wh..wh..opq', '.wh..wh.plnk2']) {
        let res: string
        try { fs.writeFileSync(path.join(o.mnt, name), 'made through the mount', { flag: 'wx' }); res = 'ok' } catch (e) { res = (e as NodeJS.ErrnoException).code! }
        made[name] = res
        const visible = res === 'ok' && fs.readdirSync(path.dirname(path.join(o.mnt, name))).includes(path.basename(name))
        if (res === 'ok' && !visible) problems.push(`created ${JSON.stringify(name)} through the mount, but it is not listed`)
        if (res !== 'ok' && fs.existsSync(path.join(o.upper, name))) problems.push(`creating ${JSON.stringify(name)} failed (${res}) but left it in the upper dir`)
      }
      const after = fs.readdirSync(o.mnt).sort()
      for (const n of rootList) if (!after.includes(n)) problems.push(`${JSON.stringify(n)} disappeared after creating .wh. names through the mount`)
      if (fs.readdirSync(path.join(o.mnt, 'od')).join() !== 'top') problems.push(`od changed: ${fs.readdirSync(path.join(o.mnt, 'od')).join()}`)
    } finally {
      await Promise.allSettled([unmount(o.mnt)])
    }
    if (JSON.stringify(rootList) !== JSON.stringify(['keep', 'nul0', 'oc', 'od', 'os', 'wd', 'x', 'x2'])) problems.push(`root lists ${JSON.stringify(rootList)}`)
    problems.push(...o.lowers.flatMap((l, i) => diffStates(lowersBefore[i]!, treeState(l), `lower${i}`)))
    problems.push(...diffStates(hostBefore.secret, hostState(h).secret, 'host secret'))
    expect(problems.map(abbrev), abbrev(`creating .wh. names through the mount: ${JSON.stringify(made)}`)).toEqual([])
  })
})

// ------------------------------------------------------------------------------------------
// 5. Names at the limits

describe('names', () => {
  const n = (len: number, c = 'n'): string => c.repeat(len)

  it('255-byte names work like on the kernel (create, list, rename, link, mkdir, delete); 256 bytes is ENAMETOOLONG', async () => {
    const root = newRoot('n255')
    const set: LayerSet = {
      lowers: [{ [n(255, 'l')]: file('lower 255'), [n(252, 'w')]: file('lower 252'), 'd/x': file('x') }],
    }
    const ops: Op[] = [
      o.create(n(255), 'a'), o.create(n(254, 'b'), 'b'), o.create(n(253, 'c'), 'c'), o.create(n(252, 'e'), 'e'), o.create(n(251, 'f'), 'f'),
      o.read(n(255)), o.mkdir(n(255, 'D')), o.create(`${n(255, 'D')}/${n(255, 'F')}`, 'inside'), o.symlink(n(255), n(255, 'S')),
      o.link(n(255), n(255, 'H')), o.rename(n(254, 'b'), n(255, 'R')), o.rename('d/x', `d/${n(255, 'X')}`),
      o.chmod(n(255, 'l'), 0o600), o.rename(n(255, 'l'), n(255, 'L')), o.unlink(n(252, 'w')), o.mkfifo(n(255, 'P')),
      o.unlink(n(255, 'H')), o.rmdir(n(255, 'D')), o.unlink(`${n(255, 'D')}/${n(255, 'F')}`), o.rmdir(n(255, 'D')),
      o.create(n(256), 'too long'), o.mkdir(n(256, 'D')), o.rename(n(255), n(256, 'R')), o.symlink('x', n(256, 'S')), o.read(n(256)),
    ]
    const r = await differential(root, set, ops)
    expect(r.lines.map(abbrev), abbrev(showResults(r.results))).toEqual([])
  })

  it('names with newlines, tabs, backslashes, quotes, dashes, blanks, colons, commas and non-ASCII: as the kernel', async () => {
    const root = newRoot('names')
    const odd = ['nl\nname', 'tab\tname', 'back\\slash', 'q"u\'ote', '-dash', ' blank ', 'colon:name', 'comma,name', 'ünïcödé', 'emoji😀', '\u{fffd}', 'ctl\u0001\u001f\u007f', '*?[glob]']
    const set: LayerSet = {
      lowers: [Object.fromEntries(odd.map((name): [string, Node] => [`low/${name}`, file(`lower ${name}`)]))],
    }
    const ops: Op[] = odd.flatMap((name): Op[] => [
      o.read(`low/${name}`), o.create(name, name), o.rename(name, `${name}.moved`), o.chmod(`low/${name}`, 0o600),
      o.rename(`low/${name}`, `low/${name}.r`), o.link(`${name}.moved`, `${name}.hard`), o.unlink(`${name}.hard`),
    ])
    const r = await differential(root, set, ops)
    expect(r.lines.map(abbrev), abbrev(showResults(r.results))).toEqual([])
  })

  it('names that are not UTF-8: the daemon survives, other names work, nothing is aliased, listed-but-missing or mis-created', async () => {
    const root = newRoot('utf8')
    const base = path.join(root, 'base')
    buildLayers(base, { lowers: [{ good: file('good'), 'dir/inner': file('inner') }, { good2: file('good2') }] })
    const l0 = Buffer.from(path.join(base, 'lower0') + '/')
    const raw = (...parts: Array<string | number[]>): Buffer => Buffer.concat(parts.map(p => typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))
    const put = (name: Buffer, content: string): void => fs.writeFileSync(Buffer.concat([l0, name]), content)
    put(raw('bad', [0xff]), 'BAD-FF')
    put(raw('bad', [0xfe]), 'BAD-FE')
    put(raw('alias', [0xef, 0xbf, 0xbd]), 'VALID-U+FFFD') // the valid name U+FFFD that invalid bytes decode to
    put(raw('lat', [0xe9]), 'LATIN-1')
    fs.mkdirSync(Buffer.concat([l0, raw('baddir', [0xc3])]))
    fs.writeFileSync(Buffer.concat([l0, raw('baddir', [0xc3], '/inside')]), 'inside')
    for (const p of [raw('bad', [0xff]), raw('bad', [0xfe]), raw('alias', [0xef, 0xbf, 0xbd]), raw('lat', [0xe9]), raw('baddir', [0xc3])]) {
      fs.utimesSync(Buffer.concat([l0, p]), 1104537600, 1104537600)
    }
    fs.utimesSync(l0, 1104537600, 1104537600)
    const o = newSide(base, path.join(root, 'w', 'fuse'), 2)
    const lowersBefore = o.lowers.map(l => treeState(l))
    const mnt = Buffer.from(o.mnt + '/')
    const at = (name: Buffer): Buffer => Buffer.concat([mnt, name])
    const tryRead = (name: Buffer): string => { try { return fs.readFileSync(at(name), 'utf8') } catch (e) { return (e as NodeJS.ErrnoException).code! } }
    const problems: string[] = []
    const seen: Record<string, unknown> = {}
    try {
      await mountFuse(o)
      const listing = fs.readdirSync(o.mnt, { encoding: 'buffer' })
      seen.listing = listing.map(b => showName(b.toString('latin1')))
      const names = listing.map(b => b.toString('latin1'))
      if (new Set(names).size !== names.length) problems.push(`duplicate names in the listing: ${JSON.stringify(seen.listing)}`)
      for (const want of ['good', 'good2', 'dir']) if (!names.includes(want)) problems.push(`${want} is not listed`)
      // every listed name can be looked up (no phantom entries)
      for (const b of listing) {
        try { fs.lstatSync(at(b)) } catch (e) { problems.push(`listed but not found: ${showName(b.toString('latin1'))} (${(e as NodeJS.ErrnoException).code})`) }
      }
      // a name that exists nowhere must not find another file
      const ghost = tryRead(raw('alias', [0xff]))
      seen.ghost = ghost
      if (ghost !== 'ENOENT') problems.push(`reading "alias\\xff" (no such name in any layer) gave ${JSON.stringify(ghost)}, expected ENOENT`)
      // an existing non-UTF-8 name gives its own content or an error, never another file's
      for (const [name, own] of [[raw('bad', [0xff]), 'BAD-FF'], [raw('bad', [0xfe]), 'BAD-FE'], [raw('lat', [0xe9]), 'LATIN-1']] as const) {
        const got = tryRead(name)
        seen[showName(name.toString('latin1'))] = got
        if (got !== own && ['BAD-FF', 'BAD-FE', 'LATIN-1', 'VALID-U+FFFD'].includes(got)) problems.push(`reading ${showName(name.toString('latin1'))} gave another file's content: ${got}`)
      }
      // creating and renaming to a non-UTF-8 name: exactly that name, or refused with nothing made
      const upperBefore = fs.readdirSync(o.upper, { encoding: 'buffer' }).map(b => b.toString('latin1'))
      const attempts: Array<[string, () => void, Buffer]> = [
        ['create "new\\xff"', () => fs.writeFileSync(at(raw('new', [0xff])), 'new', { flag: 'wx' }), raw('new', [0xff])],
        ['mkdir "newdir\\xfe"', () => fs.mkdirSync(at(raw('newdir', [0xfe]))), raw('newdir', [0xfe])],
        ['rename good to "good\\xfd"', () => fs.renameSync(at(raw('good')), at(raw('good', [0xfd]))), raw('good', [0xfd])],
        ['symlink "ln\\xfc"', () => fs.symlinkSync('good2', at(raw('ln', [0xfc]))), raw('ln', [0xfc])],
      ]
      const outcome: Record<string, string> = {}
      for (const [what, f, name] of attempts) {
        try { f(); outcome[what] = 'ok' } catch (e) { outcome[what] = (e as NodeJS.ErrnoException).code! }
        const upperNow = fs.readdirSync(o.upper, { encoding: 'buffer' }).map(b => b.toString('latin1'))
        const added = upperNow.filter(x => !upperBefore.includes(x) && x !== 'good').map(showName)
        upperBefore.push(...upperNow.filter(x => !upperBefore.includes(x)))
        if (outcome[what] === 'ok') {
          if (!upperNow.includes(name.toString('latin1'))) problems.push(`${what} succeeded but the upper dir got ${added.join(', ') || 'nothing'} instead of ${showName(name.toString('latin1'))}`)
        } else if (added.length > 0) problems.push(`${what} failed (${outcome[what]}) but the upper dir got ${added.join(', ')}`)
      }
      seen.outcome = outcome
      // still serving
      if (tryRead(raw('good2')) !== 'good2') problems.push(`the mount stopped serving: good2 -> ${tryRead(raw('good2'))}`)
      if (fs.readdirSync(path.join(o.mnt, 'dir')).join() !== 'inner') problems.push('dir no longer lists')
    } finally {
      await Promise.allSettled([unmount(o.mnt)])
    }
    problems.push(...o.lowers.flatMap((l, i) => diffStates(lowersBefore[i]!, treeState(l), `lower${i}`)))
    expect(problems, `what happened: ${JSON.stringify(seen, null, 1)}`).toEqual([])
  })
})
