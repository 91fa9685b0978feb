import * as fs from 'node:fs'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { expect, it, vi } from 'vitest'
import { WorkDir } from './workdir'
import { lgetxattr, lsetxattr, utimensat } from '../native/sys'
import { errnoOf } from './errors'
import { Engine } from './engine'
import { C, ROOT, WH, build, dir, file, fifo, opaqueDir, symlink, tmpDir, useTmp, type Tree } from './test-helpers'
useTmp()

const lowers: Tree[] = [
  { a: 'a0', d: dir({ a: 'da0', s: dir({ q: 'q0' }) }), e: dir({ x: 'ex0' }), w: WH, o: opaqueDir({ k: 'k0' }), l: symlink('a'), p: fifo() },
  { b: 'b1', d: dir({ b: 'db1', s: dir({ r: 'r1' }) }), e: 'efile', w: 'w1', o: dir({ m: 'm1' }), f: dir({ g: 'g1' }) },
]
const NAMES = ['/a', '/b', '/c', '/d', '/e', '/w', '/o', '/f', '/l', '/p', '/d/a', '/d/b', '/d/c', '/d/s', '/d/s/q', '/d/s/r', '/e/x', '/o/k', '/o/m', '/f/g', '/f/h', '/n', '/n/z']

function rng (seed: number): () => number { let s = seed >>> 0; return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 } }

type Op = { kind: string, a: string, b: string, n: number }

async function kernelDo (m: string, op: Op): Promise<string> {
  const A = m + op.a, B = m + op.b
  try {
    switch (op.kind) {
      case 'create': { const fd = fs.openSync(A, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o640); fs.writeSync(fd, 'new' + op.n); fs.closeSync(fd); break }
      case 'write': { const fd = fs.openSync(A, fs.constants.O_WRONLY); fs.writeSync(fd, 'W' + op.n, 1); fs.closeSync(fd); break }
      case 'trunc': fs.truncateSync(A, op.n % 3); break
      case 'chmod': fs.chmodSync(A, 0o600 + op.n % 64); break
      case 'chown': fs.lchownSync(A, op.n % 5, op.n % 7); break
      case 'utimens': await utimensat(A, { sec: 1000 + op.n, nsec: 5 }, { sec: 2000 + op.n, nsec: 7 }, true); break
      case 'setxattr': await lsetxattr(A, 'trusted.x', Buffer.from('v' + op.n)); break
      case 'link': fs.linkSync(A, B); break
      case 'symlink': fs.symlinkSync('t' + op.n, A); break
      case 'mkdir': fs.mkdirSync(A, 0o750); break
      case 'rmdir': fs.rmdirSync(A); break
      case 'unlink': fs.unlinkSync(A); break
      case 'rename': fs.renameSync(A, B); break
      case 'removexattr': require('child_process').execFileSync('setfattr', ['-h', '-x', 'trusted.x', A], { stdio: 'pipe' }); break
      case 'append': { const fd = fs.openSync(A, fs.constants.O_WRONLY | fs.constants.O_APPEND); fs.writeSync(fd, '+' + op.n); fs.closeSync(fd); break }
      case 'otrunc': { const fd = fs.openSync(A, fs.constants.O_WRONLY | fs.constants.O_TRUNC); fs.writeSync(fd, 'T' + op.n); fs.closeSync(fd); break }
    }
    return 'ok'
  } catch (e) {
    const err = e as { code?: string, stderr?: Buffer }
    if (err.stderr) { const t = err.stderr.toString(); return t.includes('No such attribute') ? 'ENODATA' : t.includes('No such file') ? 'ENOENT' : t.includes('Not a directory') ? 'ENOTDIR' : 'SETFATTR:' + t }
    return err.code ?? String(e)
  }
}

async function engineDo (e: Engine, op: Op): Promise<string> {
  try {
    switch (op.kind) {
      case 'create': { const h = await e.create(op.a, 0o640, C.O_WRONLY, ROOT); const b = Buffer.from('new' + op.n); await e.write(h, b, b.length, 0); await e.release(h); break }
      case 'write': { const h = await e.open(op.a, C.O_WRONLY); const b = Buffer.from('W' + op.n); await e.write(h, b, b.length, 1); await e.release(h); break }
      case 'trunc': await e.truncate(op.a, op.n % 3); break
      case 'chmod': await e.chmod(op.a, 0o600 + op.n % 64); break
      case 'chown': await e.chown(op.a, op.n % 5, op.n % 7); break
      case 'utimens': await e.utimens(op.a, { sec: 1000 + op.n, nsec: 5 }, { sec: 2000 + op.n, nsec: 7 }); break
      case 'setxattr': await e.setxattr(op.a, 'trusted.x', Buffer.from('v' + op.n), 0); break
      case 'link': await e.link(op.a, op.b); break
      case 'symlink': await e.symlink('t' + op.n, op.a, ROOT); break
      case 'mkdir': await e.mkdir(op.a, 0o750, ROOT); break
      case 'rmdir': await e.rmdir(op.a); break
      case 'unlink': await e.unlink(op.a); break
      case 'rename': await e.rename(op.a, op.b); break
      case 'removexattr': await e.removexattr(op.a, 'trusted.x'); break
      case 'append': { const h = await e.open(op.a, C.O_WRONLY | C.O_APPEND); const b = Buffer.from('+' + op.n); await e.write(h, b, b.length, 0); await e.release(h); break }
      case 'otrunc': { const h = await e.open(op.a, C.O_WRONLY | C.O_TRUNC); const b = Buffer.from('T' + op.n); await e.write(h, b, b.length, 0); await e.release(h); break }
    }
    return 'ok'
  } catch (err) {
    const n = errnoOf(err)
    return Object.entries(require('os').constants.errno).find(([, v]) => v === n)?.[0] ?? String(n)
  }
}

async function view (root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = (d: string, rel: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name), r = rel + '/' + name
      const st = fs.lstatSync(p, { bigint: true })
      const base = `${(st.mode & 0o7777n).toString(8)} ${st.uid}:${st.gid} m=${st.mtimeNs}`
      if (st.isDirectory()) { out[r] = 'dir ' + base; walk(p, r) }
      else if (st.isFile()) out[r] = `file ${base} ${fs.readFileSync(p, 'utf8')} n=${st.nlink}`
      else if (st.isSymbolicLink()) out[r] = 'link ' + fs.readlinkSync(p)
      else out[r] = 'other ' + st.mode.toString(8) + ' ' + base
    }
  }
  walk(root, '')
  for (const k of Object.keys(out)) if (out[k]!.startsWith('file') || out[k]!.startsWith('dir')) {
    const v = await lgetxattr(root + k, 'trusted.x').catch(() => null)
    if (v) out[k] += ' x=' + v.toString()
  }
  return out
}
async function upperView (root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name), r = rel + '/' + name
      const st = fs.lstatSync(p)
      if (st.isDirectory()) { const o = await lgetxattr(p, 'trusted.overlay.opaque').catch(() => null); out[r] = o?.toString() === 'y' ? 'dir opaque' : 'dir'; await walk(p, r) }
      else if (st.isCharacterDevice() && st.rdev === 0) out[r] = 'whiteout'
      else out[r] = st.isFile() ? 'file' : st.isSymbolicLink() ? 'link' : 'other'
    }
  }
  await walk(root, '')
  return out
}

it('fuzz vs kernel', async () => {
  const seeds = Number(process.env.SEEDS ?? 100)
  const report: string[] = []
  for (let seed = Number(process.env.SEED_FROM ?? 1); seed <= seeds && report.length < 8; seed++) {
    const rnd = rng(seed)
    const root = tmpDir()
    const mk = async (tag: string): Promise<{ l: string[], u: string, w: string }> => {
      const l = lowers.map((_, i) => `${root}/${tag}l${i}`)
      for (const [i, t] of lowers.entries()) { fs.mkdirSync(l[i]!); await build(l[i]!, t) }
      fs.mkdirSync(`${root}/${tag}u`); fs.mkdirSync(`${root}/${tag}w`)
      return { l, u: `${root}/${tag}u`, w: `${root}/${tag}w` }
    }
    const E = await mk('e')
    for (const x of E.l) execFileSync('find', [x, '-exec', 'touch', '-h', '-d', '2001-01-01 00:00:00.123456789', '{}', '+'])
    const K = { l: E.l.map(x => x.replace('/el', '/kl')), u: `${root}/ku`, w: `${root}/kw` }
    for (const [i, x] of E.l.entries()) execFileSync('cp', ['-a', x, K.l[i]!])
    fs.mkdirSync(K.u); fs.mkdirSync(K.w)
    // identical lower mtimes
    const m = `${root}/km`; fs.mkdirSync(m)
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${K.l.join(':')},upperdir=${K.u},workdir=${K.w},redirect_dir=off,index=off,metacopy=off`, m])
    try {
      const realProbe = WorkDir.prototype.probe
      const spy = vi.spyOn(WorkDir.prototype, 'probe').mockImplementation(async function (this: WorkDir) {
        const r = await realProbe.call(this)
        return { whiteouts: process.env.AUFS ? 'aufs' : r.whiteouts, xattrNamespace: (process.env.XNS as 'user' | undefined) ?? r.xattrNamespace }
      })
      const eng = await Engine.open({ lowerdirs: E.l, upperdir: E.u, workdir: E.w })
      spy.mockRestore()
      const hs: Array<{ p: string, kfd: number, eh: import('./handles').OpenFile }> = []
      const kinds = ['openro', 'readh', 'readh', 'removexattr', 'append', 'otrunc', 'create', 'write', 'trunc', 'chmod', 'chown', 'utimens', 'setxattr', 'link', 'symlink', 'mkdir', 'rmdir', 'unlink', 'rename', 'rename', 'unlink', 'rmdir']
      const log: string[] = []
      for (let i = 0; i < 30; i++) {
        const op: Op = { kind: kinds[Math.floor(rnd() * kinds.length)]!, a: NAMES[Math.floor(rnd() * NAMES.length)]!, b: NAMES[Math.floor(rnd() * NAMES.length)]!, n: i }
        const viaLink = (q: string): boolean => { const parts = q.split('/').slice(1, -1); let cur = m; for (const x of parts) { cur += '/' + x; try { if (fs.lstatSync(cur).isSymbolicLink()) return true } catch { return false } } return false }
        if (viaLink(op.a) || viaLink(op.b)) continue
        if (['chmod', 'trunc', 'write', 'append', 'otrunc'].includes(op.kind)) { try { if (fs.lstatSync(m + op.a).isSymbolicLink() || fs.lstatSync(m + op.a).isFIFO()) continue } catch {} }
        if (op.kind === 'openro') {
          let kfd = -1
          try { if (!fs.lstatSync(m + op.a).isFile()) continue; kfd = fs.openSync(m + op.a, 'r') } catch { continue }
          const eh = await eng.open(op.a, C.O_RDONLY)
          hs.push({ p: op.a, kfd, eh }); log.push(`openro ${op.a}`); continue
        }
        if (op.kind === 'readh') {
          let bad = ''
          for (const h of hs) {
            const kb = Buffer.alloc(4096); const kn = fs.readSync(h.kfd, kb, 0, 4096, 0)
            const eb = Buffer.alloc(4096); const en = await eng.read(h.eh, eb, 4096, 0)
            const ks = fs.fstatSync(h.kfd); const ea = await eng.fgetattr(h.eh)
            const kv = `${kb.subarray(0, kn)} ${ks.size} ${(ks.mode & 0o7777).toString(8)} ${ks.uid}`, ev = `${eb.subarray(0, en)} ${ea.size} ${(ea.mode & 0o7777).toString(8)} ${ea.uid}`
            if (kv !== ev) bad += ` handle(${h.p}): k=${kv} e=${ev}`
          }
          log.push(`readh (${hs.length})`)
          if (bad) { report.push(`seed ${seed} step ${i}: HANDLE DIVERGE${bad}\n  ${log.join('\n  ')}`); break }
          continue
        }
        const rk = await kernelDo(m, op)
        if (process.env.UPPER && rk !== 'ok') continue
        const re = await engineDo(eng, op)
        log.push(`${op.kind} ${op.a} ${op.b} -> k=${rk} e=${re}`)
        const ek = rk === 'ENOTSUP' ? 'EOPNOTSUPP' : rk
        const benign = (op.kind === 'link' && re === 'EPERM' && (ek === 'EEXIST' || ek === 'ENOENT')) || (op.kind === 'rename' && re === 'EXDEV' && ek === 'ENOENT') || (op.kind === 'rename' && ek === 'ENOTEMPTY' && op.a.startsWith(op.b + '/'))
        if (ek !== re && !benign) { report.push(`seed ${seed} step ${i}: ERRNO DIVERGE\n  ${log.join('\n  ')}`); break }
        const vk = await view(m); const ve = await view2(eng)
        const diff = Object.keys({ ...vk, ...ve }).filter(k => vk[k] !== ve[k] && !(vk[k] !== undefined && ve[k] !== undefined && strip(vk[k]) === strip(ve[k])))
        const uk = await upperView(K.u), ue = await upperView(E.u)
        const udiff = Object.keys({ ...uk, ...ue }).filter(k => uk[k] !== ue[k])
        if (udiff.length > 0 && process.env.UPPER) { report.push(`seed ${seed} step ${i}: UPPER DIVERGE ${udiff.map(k => `${k}: k=${uk[k]} e=${ue[k]}`).join('; ')}\n  ${log.join('\n  ')}`); break }
        if (diff.length > 0) { report.push(`seed ${seed} step ${i}: VIEW DIVERGE ${diff.map(k => `${k}: k=${vk[k]} e=${ve[k]}`).join('; ')}\n  ${log.join('\n  ')}`); break }
      }
      for (const h of hs) { fs.closeSync(h.kfd); await eng.release(h.eh) }
    } finally {
      execFileSync('umount', [m])
    }
  }
  console.log(report.join('\n\n') || 'no divergence')
  expect(true).toBe(true)
}, 600_000)

function strip (s: string): string { return s.replace(/ m=(\d+)/, (_m, t: string) => BigInt(t) < 1577836800000000000n ? ` m=${t}` : ' m=recent') }

async function view2 (e: Engine): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string): Promise<void> => {
    for (const ent of (await e.readdir(d)).map(x => x.name).sort()) {
      const p = d + '/' + ent
      const a = await e.getattr(p)
      const t = a.mode & C.S_IFMT
      const base = `${(a.mode & 0o7777).toString(8)} ${a.uid}:${a.gid} m=${a.mtimeNs}`
      if (t === C.S_IFDIR) { out[p] = 'dir ' + base; await walk(p) }
      else if (t === C.S_IFREG) {
        const h = await e.open(p, C.O_RDONLY); const b = Buffer.alloc(4096); const n = await e.read(h, b, 4096, 0); await e.release(h)
        out[p] = `file ${base} ${b.subarray(0, n).toString()} n=${a.nlink}`
      } else if (t === C.S_IFLNK) out[p] = 'link ' + await e.readlink(p)
      else out[p] = 'other ' + (BigInt(a.mode)).toString(8) + ' ' + base
      if (t === C.S_IFREG || t === C.S_IFDIR) { const v = await e.getxattr(p, 'trusted.x').catch(() => null); if (v) out[p] += ' x=' + v.toString() }
    }
  }
  await walk('')
  return out
}
