// Permissions with allow_other (issue 6, "Hostile input"): an unprivileged user (uid/gid 65534,
// through setpriv with numeric ids; no user is created) works on files of other owners and
// modes through an ovlfs mount made with -o allow_other (ovlfs always adds default_permissions),
// and through a kernel overlayfs mount over identical layers, which is the reference for every
// result: EACCES/EPERM where the kernel gives them, new files owned by the caller (in the upper
// dir too), sticky directories, setuid/setgid cleared on write and on chown, chmod and explicit
// times reserved to the owner, "touch" (UTIME_NOW) allowed to whoever may write.
// The merged views and the upper dirs must come out the same, and the lower layers untouched.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { assertNativeTestPrerequisites } from './harness/cli'
import { describeChildOp, runChildOps, type ChildOp } from './harness/child-ops'
import { diffStates, forceUnmountUnder, removeUnmounted, treeState } from './harness/hostile-guard'
import { buildLayers, dir, file, symlink, type LayerSet } from './harness/layers'
import { KERNEL_FULL_OPTS, mountFuse, mountKernel, prepareSide, tempDir, unmount, unmountAll, type Overlay } from './harness/mounts'
import { diff, snapshotMerged, snapshotUpper } from './harness/snapshot'

const NOBODY = { uid: 65534, gid: 65534 }
const OTHER = 1000

afterAll(async () => { await unmountAll() })

const roots: string[] = []
afterEach(() => {
  for (const r of roots.splice(0)) {
    forceUnmountUnder(r)
    try { removeUnmounted(r) } catch (e) { console.warn(String(e)) }
  }
})

interface Step { as: 'user' | 'root', op: ChildOp }
const U = (op: ChildOp): Step => ({ as: 'user', op })
const R = (op: ChildOp): Step => ({ as: 'root', op })

interface Outcome { steps: Array<{ step: string, kernel: string, fuse: string }>, divergences: string[], kernel: Overlay, fuse: Overlay }

/**
 * Build `set`, mount it with the kernel and with ovlfs (-o allow_other), run the steps on both
 * (runs of consecutive user steps in one child as NOBODY, root steps as root), and compare.
 */
async function compare (tag: string, set: LayerSet, steps: Step[]): Promise<Outcome> {
  assertNativeTestPrerequisites()
  const root = fs.realpathSync(tempDir(`ovlfs-test-perm-${tag}-`))
  roots.push(root)
  fs.chmodSync(root, 0o755) // mkdtemp makes it 0700: the unprivileged user must get to the mounts
  const base = path.join(root, 'base')
  buildLayers(base, set)
  fs.mkdirSync(path.join(root, 'w'), { mode: 0o755 })
  const kernel = prepareSide(base, path.join(root, 'w', 'kernel'), set.lowers.length)
  const fuse = prepareSide(base, path.join(root, 'w', 'fuse'), set.lowers.length)
  const lowersBefore = fuse.lowers.map(l => treeState(l))
  const results = { kernel: [] as string[], fuse: [] as string[] }
  const divergences: string[] = []
  try {
    mountKernel(kernel, KERNEL_FULL_OPTS)
    await mountFuse(fuse, 'allow_other')
    for (const [name, o] of [['kernel', kernel], ['fuse', fuse]] as const) {
      for (let i = 0; i < steps.length;) {
        let j = i
        while (j < steps.length && steps[j]!.as === steps[i]!.as) j++
        const batch = steps.slice(i, j)
        results[name].push(...runChildOps(batch.map(s => s.op), { cwd: o.mnt, user: steps[i]!.as === 'user' ? NOBODY : undefined }))
        i = j
      }
    }
    divergences.push(...diff(snapshotMerged(kernel.mnt), snapshotMerged(fuse.mnt)).map(l => 'merged ' + l))
  } finally {
    await Promise.allSettled([unmount(fuse.mnt), unmount(kernel.mnt)])
  }
  const out: Outcome['steps'] = steps.map((s, i) => ({ step: `${s.as}: ${describeChildOp(s.op)}`, kernel: results.kernel[i]!, fuse: results.fuse[i]! }))
  for (const s of out) if (s.kernel !== s.fuse) divergences.push(`${s.step}: kernel=${s.kernel} ovlfs=${s.fuse}`)
  divergences.push(...diff(snapshotUpper(kernel.upper), snapshotUpper(fuse.upper)).map(l => 'upper  ' + l))
  divergences.push(...fuse.lowers.flatMap((l, i) => diffStates(lowersBefore[i]!, treeState(l), `ovlfs lower${i} was written`)))
  return { steps: out, divergences, kernel, fuse }
}

function table (o: Outcome): string {
  return o.steps.map((s, i) => `${String(i + 1).padStart(2)}. ${s.step}\n      kernel=${s.kernel}  ovlfs=${s.fuse}`).join('\n')
}

/** The kernel's result of the step described by `prefix` (to check the case means what it says). */
function kernelResult (o: Outcome, prefix: string): string {
  const s = o.steps.find(x => x.step.startsWith(prefix))
  if (s === undefined) throw new Error(`no step ${prefix}`)
  return s.kernel
}

const P = (mode: number, uid = 0, gid = 0): { mode: number, uid: number, gid: number } => ({ mode, uid, gid })

describe('allow_other: an unprivileged user against other owners (kernel overlayfs is the reference)', () => {
  it('reading, writing and creating: modes are enforced, new files belong to the caller', async () => {
    const set: LayerSet = {
      lowers: [
        {
          secret: file('root only\n', P(0o600)),
          pub: file('everyone reads\n', P(0o644)),
          world: file('everyone writes\n', P(0o666)),
          open: dir(P(0o777)),
          'open/exists': file('x', P(0o644)),
          closed: dir(P(0o755)),
          'closed/f': file('f', P(0o666)),
          priv: dir(P(0o700)),
          'priv/f': file('f', P(0o644)),
          grp: file('group rw\n', P(0o660, 0, NOBODY.gid)),
          run: file('#!/bin/sh\necho ran\n', P(0o755)),
          norun: file('#!/bin/sh\necho ran\n', P(0o644)),
          sgdir: dir(P(0o2777, 0, 1234)),
          link: symlink('secret'),
          xonly: dir(P(0o711)),
          'xonly/known': file('reachable by name\n', P(0o644)),
          'open/rootdir': dir(P(0o755)),
          'open/rootdir/f': file('f', P(0o644)),
        },
        { 'open/lower1': file('merged dir below', P(0o644)), 'closed/g': file('g', P(0o644)) },
      ],
    }
    const steps: Step[] = [
      U({ op: 'read', path: 'secret' }), U({ op: 'read', path: 'link' }), U({ op: 'read', path: 'pub' }),
      U({ op: 'append', path: 'pub', data: 'no' }), U({ op: 'openTrunc', path: 'pub' }), U({ op: 'truncate', path: 'pub', size: 0 }),
      U({ op: 'append', path: 'world', data: 'yes\n' }), U({ op: 'read', path: 'world' }),
      U({ op: 'create', path: 'closed/new', data: 'n' }), U({ op: 'unlink', path: 'closed/f' }), U({ op: 'rename', from: 'closed/f', to: 'open/f' }),
      U({ op: 'mkdir', path: 'closed/d' }), U({ op: 'symlink', target: 'x', path: 'closed/l' }), U({ op: 'mkfifo', path: 'closed/p' }),
      U({ op: 'append', path: 'closed/f', data: 'writable file in a closed dir\n' }),
      U({ op: 'readdir', path: 'priv' }), U({ op: 'read', path: 'priv/f' }), U({ op: 'create', path: 'priv/new' }),
      U({ op: 'append', path: 'grp', data: 'no group\n' }), // --clear-groups: not in group 65534? (gid is)
      U({ op: 'create', path: 'open/mine', data: 'mine\n', mode: 0o640 }), U({ op: 'mkdir', path: 'open/mydir', mode: 0o750 }),
      U({ op: 'symlink', target: 'mine', path: 'open/mylink' }), U({ op: 'mkfifo', path: 'open/myfifo' }),
      U({ op: 'mknod', path: 'open/mydev', kind: 'c', major: 1, minor: 3 }),
      U({ op: 'create', path: 'sgdir/f', data: 'f' }), U({ op: 'mkdir', path: 'sgdir/d' }), U({ op: 'lstat', path: 'sgdir/f' }), U({ op: 'lstat', path: 'sgdir/d' }),
      U({ op: 'unlink', path: 'open/exists' }), U({ op: 'unlink', path: 'open/lower1' }), U({ op: 'rename', from: 'open/mine', to: 'open/mine2' }),
      U({ op: 'openCreat', path: 'open/exists2' }), U({ op: 'link', from: 'secret', to: 'open/hardlink-to-secret' }),
      U({ op: 'link', from: 'open/mine2', to: 'open/mine.hard' }),
      U({ op: 'exec', path: './run' }), U({ op: 'exec', path: './norun' }),
      U({ op: 'lstat', path: 'open/mine2' }), U({ op: 'lstat', path: 'open/mydir' }), U({ op: 'lstat', path: 'open/mylink' }),
      U({ op: 'setxattr', path: 'pub', name: 'user.x', value: 'v' }), U({ op: 'setxattr', path: 'open/mine2', name: 'user.x', value: 'v' }),
      U({ op: 'setxattr', path: 'open/mine2', name: 'trusted.x', value: 'v' }), U({ op: 'getxattr', path: 'open/mine2', name: 'user.x' }),
      U({ op: 'readdir', path: 'xonly' }), U({ op: 'read', path: 'xonly/known' }), U({ op: 'create', path: 'xonly/new' }),
      U({ op: 'truncate', path: 'world', size: 3 }), U({ op: 'openCreat', path: 'world' }),
      U({ op: 'rename', from: 'open/rootdir', to: 'open/rootdir2' }), // a lower dir: which error comes first is the kernel's call
      U({ op: 'rmdir', path: 'open/rootdir' }), U({ op: 'unlink', path: 'open/rootdir/f' }),
      R({ op: 'lstat', path: 'open/mine2' }),
    ]
    const o = await compare('rw', set, steps)
    expect(o.divergences, table(o)).toEqual([])
    expect(kernelResult(o, 'user: read "secret"')).toBe('EACCES')
    expect(kernelResult(o, 'user: append "pub"')).toBe('EACCES')
    expect(kernelResult(o, 'user: create "closed/new"')).toBe('EACCES')
    expect(kernelResult(o, 'user: create "open/mine"')).toBe('ok')
    // the new file belongs to the caller, in the upper dir as well as in the merged view
    for (const ov of [o.kernel, o.fuse]) {
      const st = fs.lstatSync(path.join(ov.upper, 'open', 'mine2'))
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([NOBODY.uid, NOBODY.gid, 0o640])
      const sg = fs.lstatSync(path.join(ov.upper, 'sgdir', 'f'))
      expect([sg.uid, sg.gid]).toEqual([NOBODY.uid, 1234])
    }
  })

  it('sticky directories: only the owner of a file (or of the dir) may delete or rename it', async () => {
    const set: LayerSet = {
      lowers: [
        {
          sticky: dir(P(0o1777)),
          'sticky/other': file('other\n', P(0o666, OTHER, OTHER)),
          'sticky/mine': file('mine\n', P(0o644, NOBODY.uid, NOBODY.gid)),
          'sticky/rootf': file('root\n', P(0o666)),
          'sticky/odir': dir(P(0o777, OTHER, OTHER)),
          'sticky/odir2': dir(P(0o777, OTHER, OTHER)),
          mysticky: dir(P(0o1777, NOBODY.uid, NOBODY.gid)),
          'mysticky/other': file('other\n', P(0o644, OTHER, OTHER)),
        },
        { 'sticky/other2': file('other in the layer below\n', P(0o666, OTHER, OTHER)) },
      ],
    }
    const steps: Step[] = [
      U({ op: 'unlink', path: 'sticky/other' }), U({ op: 'unlink', path: 'sticky/other2' }), U({ op: 'unlink', path: 'sticky/rootf' }),
      U({ op: 'rename', from: 'sticky/other', to: 'sticky/taken' }), U({ op: 'rmdir', path: 'sticky/odir' }),
      U({ op: 'rename', from: 'sticky/mine', to: 'sticky/other' }), // replacing another's file is deleting it
      U({ op: 'append', path: 'sticky/other', data: 'writable though\n' }),
      U({ op: 'unlink', path: 'sticky/mine' }), U({ op: 'create', path: 'sticky/new', data: 'n' }), U({ op: 'unlink', path: 'sticky/new' }),
      U({ op: 'create', path: 'sticky/new2', data: 'n' }),
      U({ op: 'rename', from: 'sticky/odir2', to: 'sticky/mine-now' }), U({ op: 'create', path: 'sticky/odir2/inside', data: 'x' }),
      U({ op: 'unlink', path: 'mysticky/other' }), // the owner of the sticky dir may
      R({ op: 'unlink', path: 'sticky/other2' }),
    ]
    const o = await compare('sticky', set, steps)
    expect(o.divergences, table(o)).toEqual([])
    expect(kernelResult(o, 'user: unlink "sticky/other"')).toMatch(/^(EPERM|EACCES)$/)
    expect(kernelResult(o, 'user: unlink "sticky/mine"')).toBe('ok')
    expect(kernelResult(o, 'user: unlink "mysticky/other"')).toBe('ok')
  })

  it('setuid/setgid: cleared on write by a non-root caller and on chown, as the kernel does', async () => {
    const set: LayerSet = {
      lowers: [
        {
          suid: file('s\n', P(0o4777)),
          sgid: file('g\n', P(0o2777)), // group-executable: cleared on write
          sgid_nox: file('g\n', P(0o2766)), // setgid without group exec: the kernel clears it too (the writer is not in group 0)
          both: file('b\n', P(0o6777)),
          trunc: file('t\n', P(0o4777)),
          own: file('o\n', P(0o4755, NOBODY.uid, NOBODY.gid)), // the owner writes: cleared too
          ownsg: file('o\n', P(0o2775, NOBODY.uid, NOBODY.gid)),
          chown_suid: file('c\n', P(0o4755)),
          chown_sgid: file('c\n', P(0o2755)),
          chown_both: file('c\n', P(0o6755)),
          chgrp_only: file('c\n', P(0o6755)),
          chown_same: file('c\n', P(0o4755)),
          chown_dir: dir(P(0o2775)), // directories keep setgid on chown
          mine: file('m\n', P(0o755, NOBODY.uid, 0)), // group 0: the user is not a member
          upper_suid: file('u\n', P(0o4777)),
        },
      ],
    }
    const steps: Step[] = [
      U({ op: 'append', path: 'suid', data: 'x' }), U({ op: 'append', path: 'sgid', data: 'x' }), U({ op: 'append', path: 'sgid_nox', data: 'x' }),
      U({ op: 'append', path: 'both', data: 'x' }), U({ op: 'openTrunc', path: 'trunc' }),
      U({ op: 'append', path: 'own', data: 'x' }), U({ op: 'append', path: 'ownsg', data: 'x' }),
      ...['suid', 'sgid', 'sgid_nox', 'both', 'trunc', 'own', 'ownsg'].map(p => U({ op: 'lstat', path: p })),
      U({ op: 'chmod', path: 'mine', mode: 0o2755 }), U({ op: 'lstat', path: 'mine' }), // setgid dropped: not in the file's group
      U({ op: 'chmod', path: 'mine', mode: 0o4755 }), U({ op: 'lstat', path: 'mine' }),
      U({ op: 'chown', path: 'mine', uid: OTHER, gid: 0 }), U({ op: 'chown', path: 'mine', uid: NOBODY.uid, gid: 0 }),
      U({ op: 'chown', path: 'mine', uid: NOBODY.uid, gid: NOBODY.gid }), U({ op: 'lstat', path: 'mine' }),
      R({ op: 'chown', path: 'chown_suid', uid: OTHER, gid: OTHER }), R({ op: 'chown', path: 'chown_sgid', uid: OTHER, gid: OTHER }),
      R({ op: 'chown', path: 'chown_both', uid: OTHER, gid: 0 }), R({ op: 'chown', path: 'chgrp_only', uid: 0, gid: OTHER }),
      R({ op: 'chown', path: 'chown_same', uid: 0, gid: 0 }), R({ op: 'chown', path: 'chown_dir', uid: OTHER, gid: OTHER }),
      R({ op: 'append', path: 'upper_suid', data: 'root writes: kept' }),
      ...['chown_suid', 'chown_sgid', 'chown_both', 'chgrp_only', 'chown_same', 'chown_dir', 'upper_suid'].map(p => R({ op: 'lstat', path: p })),
      U({ op: 'append', path: 'upper_suid', data: 'now the user, after the copy-up' }), U({ op: 'lstat', path: 'upper_suid' }),
    ]
    const o = await compare('suid', set, steps)
    expect(o.divergences, table(o)).toEqual([])
    expect(kernelResult(o, 'user: lstat "suid"')).toBe('ok:file 0777 0:0 3')
    expect(kernelResult(o, 'root: lstat "chown_suid"')).toBe(`ok:file 0755 ${OTHER}:${OTHER} 2`)
  })

  it('chmod, chown and explicit times are the owner\'s; touch (now) needs only write access', async () => {
    const set: LayerSet = {
      lowers: [
        {
          rootfile: file('r\n', P(0o666)),
          rootro: file('r\n', P(0o644)),
          mine: file('m\n', P(0o644, NOBODY.uid, NOBODY.gid)),
          rootdir: dir(P(0o777)),
          link: symlink('rootfile'),
        },
      ],
    }
    const steps: Step[] = [
      U({ op: 'chmod', path: 'rootfile', mode: 0o777 }), U({ op: 'chmod', path: 'rootdir', mode: 0o700 }), U({ op: 'chown', path: 'rootfile', uid: NOBODY.uid, gid: NOBODY.gid }),
      U({ op: 'lchown', path: 'link', uid: NOBODY.uid, gid: NOBODY.gid }),
      U({ op: 'utimes', path: 'rootfile', sec: 1000000000 }), U({ op: 'touch', path: 'rootfile' }), U({ op: 'touch', path: 'rootro' }),
      U({ op: 'utimes', path: 'rootro', sec: 1000000000 }), U({ op: 'lutimes', path: 'link', sec: 1000000000 }),
      U({ op: 'utimes', path: 'mine', sec: 1000000000 }), U({ op: 'chmod', path: 'mine', mode: 0o600 }), U({ op: 'touch', path: 'mine' }),
      U({ op: 'setxattr', path: 'rootfile', name: 'user.u', value: 'v' }), U({ op: 'setxattr', path: 'mine', name: 'user.u', value: 'v' }),
      U({ op: 'setxattr', path: 'rootro', name: 'user.u', value: 'v' }),
      U({ op: 'lstat', path: 'rootfile' }), U({ op: 'lstat', path: 'mine' }), U({ op: 'lstat', path: 'rootdir' }),
    ]
    const o = await compare('owner', set, steps)
    expect(o.divergences, table(o)).toEqual([])
    expect(kernelResult(o, 'user: chmod "rootfile"')).toBe('EPERM')
    expect(kernelResult(o, 'user: utimes "rootfile"')).toBe('EPERM')
    expect(kernelResult(o, 'user: touch "rootfile"')).toBe('ok')
    expect(kernelResult(o, 'user: touch "rootro"')).toBe('EACCES')
    expect(kernelResult(o, 'user: utimes "mine"')).toBe('ok')
  })
})
