// Every entry point of the ovlfs command line fuzzed with malformed arguments (issue 6): the
// mount form (-o lists: empty, commas, '=' without values, escapes, a '\' at the end, huge
// values, binary-ish junk, unknown keys, repeated options; missing, nonexistent, relative,
// overlapping directories, files instead of directories, odd mount points), `layers` and
// `mount-image` (refs: empty, '@', ':', huge, uppercase, 'sha256:' junk, path traversal; data
// roots: '/', a file, nothing, an empty dir, each variant of the generated Docker fixture).
//
// For every case: exit status 0 or 1, never another one, never a signal, never a crash; no
// stack trace or internal error on stderr; on exit 1 exactly one "ovlfs: " line (besides
// "ovlfs: warning:" lines for ignored options, which the CLI contract allows); a mount command
// that exits 0 left its mount live, one that fails left none; a failed mount-image leaves no
// temporary directory; nothing stays mounted and no daemon stays alive after the cleanup.
//
//   OVLFS_FUZZ_CASES       number of cases (default 2000)
//   OVLFS_FUZZ_SEED        the seed (default 20251123); printed, with each failure's argv
//   OVLFS_FUZZ_ONLY=i,j    replay these cases only (as real processes)
//   OVLFS_FUZZ_REPORT=F    write every failure (not only 3 per kind) to the file F
//   OVLFS_FUZZ_REAL_EVERY  also run every Nth case as a real process (default 40); the
//                          in-process driver must agree with it. Cases that would serve in the
//                          foreground (-f, -d, --debug, the daemon flag) always run for real.
//
// Most cases run in the in-process driver (harness/fuzz-driver.ts): a fresh Node process per
// case would cost ~0.15 s of CPU each, minutes for a few thousand cases on two shared cores.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { assertNativeTestPrerequisites } from './harness/cli'
import { runAsProcess, runInDriver, type CaseResult, type FuzzCase } from './harness/fuzz-driver'
import { forceUnmountUnder, mountsUnder, ovlfsDaemons, removeUnmounted, runLimited } from './harness/hostile-guard'
import { fuseCommand, tempDir, unmountAll } from './harness/mounts'
import { mulberry32 } from './harness/random'

const CASES = Number(process.env.OVLFS_FUZZ_CASES ?? 2000)
const SEED = Number(process.env.OVLFS_FUZZ_SEED ?? 20251123) >>> 0
const ONLY = (process.env.OVLFS_FUZZ_ONLY ?? '').split(',').filter(Boolean).map(Number)
const REAL_EVERY = Math.max(1, Number(process.env.OVLFS_FUZZ_REAL_EVERY ?? 40))

const R = '@ROOT@' // the pool root in argv templates; each runner has its own pool

afterAll(async () => { await unmountAll() })

// ------------------------------------------------------------------------------------------
// The pool of paths the cases point at

interface Pool { root: string, tmp: string, shm: string | null, reset: Array<[string, string[]]> }

const FIXTURE_VARIANTS = [
  'base', 'legacy', 'noisy', 'noisy-size', 'missing-cache-id', 'ambiguous', 'zero-layer', 'removing', 'names',
  'deep', 'hostile', 'corrupt-repositories', 'running', 'fuse-overlayfs', 'vfs', 'aufs', 'devicemapper', 'btrfs',
  'zfs', 'containerd', 'multi-driver',
]

function makePool (root: string): Pool {
  fs.mkdirSync(root, { recursive: true })
  const mk = (p: string, files: Record<string, string> = {}): void => {
    fs.mkdirSync(path.join(root, p), { recursive: true })
    for (const [n, c] of Object.entries(files)) fs.writeFileSync(path.join(root, p, n), c)
  }
  mk('l1', { a: 'l1 a\n', both: 'l1\n' }); mk('l2', { b: 'l2 b\n', both: 'l2\n' }); mk('l3/sub', { c: 'l3 c\n' })
  mk('u'); mk('w'); mk('u2'); mk('w2'); mk('mnt'); mk('mnt2'); mk('empty'); mk('nonempty', { x: 'x' })
  mk('a:b', { colon: 'c' }); mk('c,d', { comma: 'c' }); mk('back\\slash', { b: 'b' }); mk('sp ace', { s: 's' })
  mk('uw/u/inner'); mk('uw/w')
  mk('tmp')
  fs.writeFileSync(path.join(root, 'file'), 'a file\n')
  fs.symlinkSync(path.join(root, 'l1'), path.join(root, 'link-l1'))
  fs.symlinkSync('loop', path.join(root, 'loop'))
  fs.symlinkSync(path.join(root, 'nope'), path.join(root, 'dangling'))
  const made = runLimited(process.execPath, [path.join(__dirname, '..', 'scripts', 'make-docker-fixture.js'), path.join(root, 'fx'), 'all'], { timeoutMs: 120_000 })
  if (made.status !== 0) throw new Error(`make-docker-fixture failed: ${made.stderr}`)
  // a directory on another filesystem (a workdir there is refused), if the machine has /dev/shm
  let shm: string | null = null
  try {
    if (fs.statSync('/dev/shm').dev !== fs.statSync(root).dev) shm = fs.mkdtempSync('/dev/shm/ovlfs-test-fuzz-')
  } catch { shm = null }
  const reset: Array<[string, string[]]> = [
    ...['u', 'w', 'u2', 'w2', 'mnt', 'mnt2', 'empty', 'uw/w', 'l3/sub'].map((d): [string, string[]] => [path.join(root, d), []]),
    [path.join(root, 'uw/u'), ['inner']], [path.join(root, 'nonempty'), ['x']], [path.join(root, 'uw'), ['u', 'w']],
    ...(shm !== null ? [[shm, []] as [string, string[]]] : []),
  ]
  return { root, tmp: path.join(root, 'tmp'), shm, reset }
}

/** Refs that exist in each fixture variant (from its repositories.json and containers), by variant. */
function harvestRefs (fx: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const v of FIXTURE_VARIANTS) out.set(v, harvestVariant(path.join(fx, v)))
  return out
}

function harvestVariant (fx: string): string[] {
  const refs = new Set<string>()
  const walk = (d: string, depth: number): void => {
    if (depth > 6) return
    let names: fs.Dirent[]
    try { names = fs.readdirSync(d, { withFileTypes: true }) } catch { return }
    for (const n of names) {
      const p = path.join(d, n.name)
      if (n.isDirectory()) walk(p, depth + 1)
      else if (n.name === 'repositories.json') {
        try {
          const j = JSON.parse(fs.readFileSync(p, 'utf8')) as { Repositories?: Record<string, Record<string, string>> }
          for (const [repo, tags] of Object.entries(j.Repositories ?? {})) {
            refs.add(repo)
            for (const [t, id] of Object.entries(tags)) { refs.add(t); refs.add(id); refs.add(id.replace(/^sha256:/, '').slice(0, 12)) }
          }
        } catch { /* the corrupt variant */ }
      } else if (n.name === 'config.v2.json') {
        try {
          const j = JSON.parse(fs.readFileSync(p, 'utf8')) as { ID?: string, Name?: string }
          if (j.Name) { refs.add(j.Name); refs.add(j.Name.replace(/^\//, '')) }
          if (j.ID) { refs.add(j.ID); refs.add(j.ID.slice(0, 4)); refs.add(j.ID.slice(0, 12)) }
        } catch { /* broken container */ }
      }
    }
  }
  walk(fx, 0)
  return [...refs].sort()
}

// ------------------------------------------------------------------------------------------
// The generator

type Rng = () => number
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
const chance = (r: Rng, p: number): boolean => r() < p
const int = (r: Rng, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1))

/** Junk text: ASCII punctuation, control characters, non-ASCII, lone surrogates (encoded as U+FFFD). */
function junk (r: Rng, max = 24): string {
  const alphabets = [
    'abcxyz019', ':,=\\/ .-_@#%&*?![]{}()<>|;\'"`~$^+', '\t\n\r\u0001\u001b\u007f', 'éü€😀\u{10ffff}\ufffd\u200b',
    String.fromCharCode(0xd800), 'A:B,C=D',
  ]
  let s = ''
  const n = int(r, 1, max)
  for (let i = 0; i < n; i++) s += pick(r, [...pick(r, alphabets)])
  return s
}

/** A long argument: up to 100000 bytes (exec refuses a single argument over 128 KiB). */
const huge = (r: Rng): string => {
  const unit = pick(r, ['x', 'a/', '\\', ',', ':', 'é', '='] as const)
  return unit.repeat(Math.floor(pick(r, [300, 4097, 20000, 100000]) / Buffer.byteLength(unit)))
}

function dirRef (r: Rng, pool: Pool | null, forLower: boolean): string {
  const inPool = [
    `${R}/l1`, `${R}/l2`, `${R}/l3`, `${R}/u`, `${R}/w`, `${R}/u2`, `${R}/w2`, `${R}/empty`, `${R}/nonempty`, `${R}/file`,
    `${R}/nope`, `${R}/l1/`, `${R}//l2`, `${R}/l3/sub/..`, `${R}/link-l1`, `${R}/dangling`, `${R}/loop`, `${R}/file/x`,
    `${R}/a\\:b`, `${R}/a:b`, `${R}/c\\,d`, `${R}/c,d`, `${R}/back\\\\slash`, `${R}/back\\slash`, `${R}/sp ace`, `${R}/uw/u`, `${R}/uw/w`, `${R}/uw/u/inner`,
    `${R}/mnt`, `${R}/l1\\`, 'l1', './l2', 'u', 'w', 'nope', '', ' ', '.', `${R}/${'n'.repeat(300)}`,
  ]
  const outside = ['/', '/dev/null', '/nonexistent-ovlfs-fuzz', '/proc/self/status']
  const lowerOnly = ['/etc', '/usr/share']
  const r0 = r()
  if (r0 < 0.75) return pick(r, inPool)
  if (r0 < 0.85) return pick(r, forLower ? [...outside, ...lowerOnly] : outside)
  if (r0 < 0.9 && pool?.shm) return `${pool.shm}`
  if (r0 < 0.95) return junk(r)
  return huge(r)
}

const MOUNTPOINTS = [
  `${R}/mnt`, `${R}/mnt2`, `${R}/mnt/`, `${R}//mnt2`, 'mnt', './mnt2', `${R}/nope`, `${R}/file`, `${R}/nonempty`, `${R}/empty`,
  `${R}/l1`, `${R}/u`, `${R}/uw/u`, `${R}/link-l1`, `${R}/dangling`, `${R}/loop`, `${R}/mnt/../mnt2`, `${R}/file/x`,
  '', '.', '/', '/dev/null', '/nonexistent-ovlfs-fuzz/mnt', 'ovlfs', '-', `${R}/a:b`, `${R}/c,d`, `${R}/sp ace`,
]

const mountpoint = (r: Rng): string => chance(r, 0.9) ? pick(r, MOUNTPOINTS) : chance(r, 0.5) ? junk(r) : huge(r)

const PASS = ['ro', 'rw', 'allow_other', 'default_permissions', 'nosuid', 'nodev', 'noexec', 'suid', 'dev', 'exec', 'atime', 'noatime',
  'sync', 'async', 'dirsync', 'allow_root', 'auto_unmount', 'nonempty', 'relatime', 'strictatime', 'defaults', '_netdev', 'nofail', 'volatile', 'user']
const VALUED = ['timeout', 'fsname', 'max_read', 'blksize', 'uid', 'gid', 'umask', 'user_id', 'group_id', 'subtype', 'max_write',
  'entry_timeout', 'attr_timeout', 'negative_timeout', 'uidmapping', 'gidmapping', 'squash_to_uid', 'squash_to_gid', 'xattr_permissions']
/** id mappings as fuse-overlayfs takes them, good and bad */
const MAPPINGS = ['0:0:1', '0:1000:1', '0:0:4294967295', '0:0:4294967296', '0:1:0', '0:0:1:1:1:1', '0:0:2:1:1:1', '1:2', 'a:b:c', '0:0:1:', ':0:0:1',
  '4294967295:0:1', '0:4294967295:2', '-1:0:1', '0x1:0:1', '00:00:01', '1e3:0:1', '']
const UNIMPLEMENTED = ['uidmapping=0:0:1', 'gidmapping=0:0:4294967295', 'squash_to_root', 'squash_to_uid=5', 'noacl', 'redirect_dir=on',
  'index=on', 'metacopy=on', 'xino=auto', 'userxattr', 'debug', 'threaded=1', 'fsync=0', 'fast_ino=1', 'writeback=1', 'noxattrs=1',
  'plugins=/nonexistent.so', 'context="system_u:object_r:tmp_t:s0"', 'static_nlink', 'xattr_permissions=2']
const NUMBERS = ['0', '1', '-1', '2', '1e309', 'NaN', 'Infinity', '0x10', '010', '99999999999999999999', '1.5', '', ' ', '+1', '4294967296']

function optionItem (r: Rng, pool: Pool | null): string {
  switch (int(r, 0, 11)) {
    case 0: case 1: {
      const n = int(r, 0, 3)
      const dirs = Array.from({ length: n }, () => dirRef(r, pool, true))
      return pick(r, ['lowerdir=', 'lowerdir=', 'lowerdir', 'lowerdir==', 'LOWERDIR=', ' lowerdir=']) + dirs.join(pick(r, [':', ':', '::', '\\:', ',']))
    }
    case 2: return pick(r, ['upperdir=', 'upperdir', 'upperdir==']) + dirRef(r, pool, false)
    case 3: return pick(r, ['workdir=', 'workdir', 'workdir==']) + dirRef(r, pool, false)
    case 4: return pick(r, PASS)
    case 5: {
      const k = pick(r, VALUED)
      const v = /mapping$/.test(k) && chance(r, 0.7) ? pick(r, MAPPINGS) : chance(r, 0.6) ? pick(r, NUMBERS) : junk(r, 12)
      return `${k}${pick(r, ['=', '=', '', '=='])}${v}`
    }
    case 6: return pick(r, UNIMPLEMENTED)
    case 7: return pick(r, ['', '=', '==', '=x', ',', ',,', '\\', '\\,', 'a\\', 'x=y=z', 'lowerdir\\=x', '-o', 'ro\\', '\\\\'])
    case 8: return junk(r) + (chance(r, 0.5) ? `=${junk(r)}` : '')
    case 9: return `${pick(r, ['fsname', 'x', 'lowerdir', 'subtype', 'timeout'])}=${huge(r)}`
    case 10: return pick(r, PASS) + pick(r, ['=1', '=', '=no'])
    default: return junk(r, 6)
  }
}

function optionList (r: Rng, pool: Pool | null): string {
  const items = Array.from({ length: int(r, 0, 5) }, () => optionItem(r, pool))
  if (chance(r, 0.15) && items.length > 0) items.push(items[0]!) // repeated option
  return items.join(pick(r, [',', ',', ',', ',,']))
}

/** A valid mount (lowerdirs, maybe upper/work, a free mount point) and harmless extras. */
function validMount (r: Rng): string[] {
  const lowers = [`${R}/l1`, `${R}/l2`, `${R}/l3`, `${R}/a\\:b`, `${R}/c\\,d`].slice(0, int(r, 1, 5))
  let opts = `lowerdir=${lowers.join(':')}`
  if (chance(r, 0.6)) opts += pick(r, [`,upperdir=${R}/u,workdir=${R}/w`, `,upperdir=${R}/u2,workdir=${R}/w2`, `,workdir=${R}/w2,upperdir=${R}/u2`])
  if (chance(r, 0.5)) opts += ',' + pick(r, ['ro', 'nosuid', 'timeout=2', 'fsname=fuzz', 'volatile', 'squash_to_root', 'bogus_option', 'relatime'])
  const mnt = pick(r, [`${R}/mnt`, `${R}/mnt2`, 'mnt'])
  return chance(r, 0.7) ? ['-o', opts, mnt] : chance(r, 0.5) ? ['ovlfs', mnt, '-o', opts] : [`-o${opts}`, mnt]
}

/** Small damage to a valid command line. */
function mutate (r: Rng, argv: string[], pool: Pool | null): string[] {
  const a = [...argv]
  switch (int(r, 0, 7)) {
    case 0: a.splice(int(r, 0, a.length), 0, flag(r)); break
    case 1: { const i = a.findIndex(x => x.includes('lowerdir')); if (i >= 0) a[i] = a[i]!.replace(/lowerdir=[^,]*/, `lowerdir=${dirRef(r, pool, true)}`); break }
    case 2: { const i = a.findIndex(x => x.includes('upperdir')); if (i >= 0) a[i] = a[i]!.replace(/upperdir=[^,]*/, `upperdir=${dirRef(r, pool, false)}`); else a.push('-o', `upperdir=${dirRef(r, pool, false)}`); break }
    case 3: { const i = a.findIndex(x => x.includes('workdir')); if (i >= 0) a[i] = a[i]!.replace(/,?workdir=[^,]*/, chance(r, 0.5) ? '' : `,workdir=${dirRef(r, pool, false)}`); break }
    case 4: a[a.length - 1] = mountpoint(r); break
    case 5: a.push('-o', optionList(r, pool)); break
    case 6: a.splice(int(r, 0, a.length - 1), 1); break
    default: a.push(pick(r, [mountpoint(r), junk(r), '-o']))
  }
  return a
}

const FLAGS = ['-s', '--log-level', '--log-level=debug', '--log-level=bogus', '--log-level=', '-o', '-h', '--help',
  '-V', '--version', '-', '--', '---', '-ox', '-o=x', '-x', '--bogus', '-oo']
/** Flags that keep the command in the foreground, and the daemon's own: rarer (they run as real processes). */
const FOREGROUND_FLAGS = ['-f', '-d', '--debug', '--ovlfs-daemon']
const flag = (r: Rng): string => chance(r, 0.08) ? pick(r, FOREGROUND_FLAGS) : pick(r, FLAGS)

function genMount (r: Rng, pool: Pool | null): string[] {
  if (chance(r, 0.03)) return validMount(r)
  if (chance(r, 0.4)) {
    let a = validMount(r)
    for (let i = int(r, 1, 3); i > 0; i--) a = mutate(r, a, pool)
    return a
  }
  const parts: string[][] = []
  for (let i = int(r, 0, 2); i > 0; i--) {
    const f = flag(r)
    parts.push(f === '--log-level' && chance(r, 0.7) ? [f, pick(r, ['debug', 'info', 'warn', 'error', 'fatal', 'silent', 'trace', 'bogus', ''])] : [f])
  }
  for (let i = int(r, 0, 3); i > 0; i--) parts.push(chance(r, 0.8) ? ['-o', optionList(r, pool)] : [`-o${optionList(r, pool)}`])
  for (let i = int(r, 0, 3); i > 0; i--) parts.push([mountpoint(r)])
  for (let i = parts.length - 1; i > 0; i--) { const j = int(r, 0, i); [parts[i], parts[j]] = [parts[j]!, parts[i]!] }
  return parts.flat()
}

const DOCKER_ROOTS = [
  ...FIXTURE_VARIANTS.map(v => `${R}/fx/${v}`), `${R}/fx`, `${R}/fx/base/`, `${R}/fx/base/overlay2`, `${R}/empty`, `${R}/nope`, `${R}/file`,
  `${R}/l1`, '/', '', '/etc', '/dev/null', 'fx/base', './fx/names', '/nonexistent-ovlfs-fuzz',
]

function ref (r: Rng, known: string[]): string {
  const v = r()
  if (v < 0.5 && known.length > 0) {
    const k = pick(r, known)
    if (!chance(r, 0.3)) return k
    return pick(r, [k.toUpperCase(), ` ${k}`, `${k} `, `${k}:`, `${k}@`, `${k}:latest:latest`, `docker.io/library/${k}`, `${k}/`, `-${k}`, k.slice(0, -1)])
  }
  if (v < 0.8) {
    return pick(r, [
      '', '@', ':', '/', '@sha256:', 'sha256:', 'sha256:xyz', `sha256:${'0'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha256:${'A'.repeat(64)}`,
      `nginx@sha256:${'f'.repeat(64)}`, 'nginx@sha512:abc', 'nginx@', 'nginx:', ':latest', 'NGINX', 'Nginx:Latest', 'nginx:LATEST',
      '../../etc', '../../../etc/passwd', 'a/../../b', '..', '.', './x', 'nginx/../../../../etc', '%2e%2e/%2e%2e', 'library/nginx',
      'docker.io/nginx', 'localhost:5000/team/app:1', 'registry.example.com:5000/team/app', 'a'.repeat(129), `${'a'.repeat(200)}:tag`,
      'x:' + 'y'.repeat(129), 'name@@sha256:' + '1'.repeat(64), 'name:tag@sha256:' + '1'.repeat(64), 'e0836d054d1c', '5d3e', '5', 'web', '/web',
      '-', '--', 'tools:2.1', 'myapp:1.0', 'nginx', 'nginx:latest', 'evil-cache:1', 'evil-link:2', 'corrupt:1', 'running', 'db',
    ])
  }
  return chance(r, 0.7) ? junk(r, 40) : huge(r)
}

/** A data root, and the refs that exist there (none for roots that are not fixture variants). */
function dockerRoot (r: Rng, known: Map<string, string[]>): [string, string[]] {
  const root = pick(r, DOCKER_ROOTS)
  const variant = /^@ROOT@\/fx\/([a-z-]+)$/.exec(root)?.[1]
  return [root, variant === undefined ? [] : known.get(variant) ?? []]
}

function genLayers (r: Rng, known: Map<string, string[]>): string[] {
  const parts: string[][] = []
  const [root, refs] = dockerRoot(r, known)
  if (chance(r, 0.9)) parts.push(chance(r, 0.8) ? ['--docker-root', root] : [`--docker-root=${root}`])
  if (chance(r, 0.92)) parts.push([ref(r, refs)])
  if (chance(r, 0.3)) parts.push(['--json'])
  if (chance(r, 0.15)) parts.push([pick(r, ['--json=1', '--jsonx', '--docker-root', '-h', '--help', '--', '-x', '--bogus', ref(r, refs), '--docker-root='])])
  for (let i = parts.length - 1; i > 0; i--) { const j = int(r, 0, i); [parts[i], parts[j]] = [parts[j]!, parts[i]!] }
  return ['layers', ...parts.flat()]
}

function genMountImage (r: Rng, known: Map<string, string[]>): string[] {
  const parts: string[][] = []
  // Always a data root of ours (or one that cannot be one): a real /var/lib/docker is never touched.
  const [root, refs] = dockerRoot(r, known)
  parts.push(chance(r, 0.85) ? ['--docker-root', root] : [`--docker-root=${root}`])
  if (chance(r, 0.92)) parts.push([ref(r, refs)])
  if (chance(r, 0.9)) parts.push([mountpoint(r)])
  if (chance(r, 0.3)) parts.push(['--rw'])
  if (chance(r, 0.2)) parts.push(['--upper', pick(r, [`${R}/u2`, `${R}/u`, `${R}/nope`, `${R}/file`, '', junk(r)])])
  if (chance(r, 0.2)) parts.push(['--work', pick(r, [`${R}/w2`, `${R}/w`, `${R}/nope`, `${R}/u2`, '', junk(r)])])
  if (chance(r, 0.2)) parts.push(['--force'])
  if (chance(r, 0.12)) parts.push([pick(r, ['--rw=1', '--upper', '--work', '--json', '-o', 'ro', '--', '-x', mountpoint(r), ref(r, refs)])])
  const [rootPart, ...rest] = parts
  for (let i = rest.length - 1; i > 0; i--) { const j = int(r, 0, i); [rest[i], rest[j]] = [rest[j]!, rest[i]!] }
  return ['mount-image', ...(chance(r, 0.8) ? [rootPart!, ...rest] : [...rest, rootPart!]).flat()]
}

function genCase (id: number, known: Map<string, string[]>): FuzzCase {
  const r = mulberry32((Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(id + 1, 0xc2b2ae35)) >>> 0)
  const v = r()
  if (v < 0.01) return { id, kind: 'help', argv: pick(r, [['-h'], ['--help'], ['--help', 'x'], ['-h', '-o', 'lowerdir=/']]) }
  if (v < 0.6) return { id, kind: 'mount', argv: genMount(r, null) }
  if (v < 0.8) return { id, kind: 'layers', argv: genLayers(r, known) }
  return { id, kind: 'mount-image', argv: genMountImage(r, known) }
}

/**
 * Directed cases, run every time (ids from DIRECTED_BASE, always also as real processes): the
 * paths a random walk reaches rarely - foreground and daemon flags on a valid mount, FUSE
 * options libfuse rejects after mounting, valid mount-image runs of each kind, ...
 */
const DIRECTED_BASE = 1_000_000
const L = `lowerdir=${R}/l1`
const LUW = `lowerdir=${R}/l1:${R}/l2,upperdir=${R}/u,workdir=${R}/w`
const FX = (v: string): string[] => ['--docker-root', `${R}/fx/${v}`]
const DIRECTED: string[][] = [
  ['-f', '-o', L, `${R}/mnt`], ['-d', '-o', LUW, `${R}/mnt`], ['--debug', '-o', L, `${R}/mnt2`], ['-f', '-o', L, `${R}/nonempty`],
  ['--ovlfs-daemon', '-o', L, `${R}/mnt`], ['-o', L, `${R}/mnt`, '--ovlfs-daemon', '-f'],
  ['-o', `${L},max_write=abc`, `${R}/mnt`], ['-o', `${L},uid=abc`, `${R}/mnt`], ['-o', `${L},max_read=-1`, `${R}/mnt`],
  ['-o', `${L},subtype=x y`, `${R}/mnt`], ['-o', `${L},fsname=a
b`, `${R}/mnt`], ['-o', `${L},nonempty`, `${R}/nonempty`],
  ['-o', L, `${R}/nonempty`], ['-o', LUW, `${R}/u`], ['-o', LUW, `${R}/mnt`, '-o', 'timeout=1e309'],
  ['-o', `lowerdir=${R}/l1:${R}/l1:${R}/l1`, `${R}/mnt`], ['-o', `lowerdir=${'x'.repeat(100000)}`, 'mnt'], ['ovlfs', `${R}/mnt`, '-o', L],
  ['-o', `lowerdir=${R}/l1,upperdir=${R}/u,workdir=${R}/u/inner`, `${R}/mnt`], ['-o', `lowerdir=${R}/uw/u/inner,upperdir=${R}/uw/u,workdir=${R}/uw/w`, `${R}/mnt`],
  ['-h'], ['--help'], ['layers', '--help'], ['mount-image', '--help'],
  ['mount-image', ...FX('base'), 'nginx', `${R}/mnt`], ['mount-image', ...FX('base'), 'nginx:latest', `${R}/mnt`, '--rw'],
  ['mount-image', ...FX('base'), 'tools:2.1', `${R}/mnt`, '--upper', `${R}/u2`, '--work', `${R}/w2`], ['mount-image', ...FX('base'), 'web', `${R}/mnt`],
  ['mount-image', ...FX('running'), 'web', `${R}/mnt`], ['mount-image', ...FX('running'), 'web', `${R}/mnt`, '--force'],
  ['mount-image', ...FX('zero-layer'), 'scratchy:1', `${R}/mnt`], ['mount-image', ...FX('zero-layer'), 'scratchy:1', `${R}/file`, '--rw'],
  ['mount-image', ...FX('base'), 'nginx', `${R}/nonempty`, '--rw'], ['mount-image', ...FX('aufs'), 'myapp:1.0', `${R}/mnt`],
  ['mount-image', ...FX('vfs'), 'web', `${R}/mnt`], ['mount-image', ...FX('fuse-overlayfs'), 'web', `${R}/mnt`, '--rw'],
  ['mount-image', ...FX('hostile'), 'evil-link:2', `${R}/mnt`], ['mount-image', ...FX('hostile'), 'evilmount', `${R}/mnt`],
  ['mount-image', ...FX('deep'), 'deep:126', `${R}/mnt`], ['mount-image', ...FX('base'), 'nginx', `${R}/mnt`, '--upper', `${R}/u2`],
  ...FIXTURE_VARIANTS.map(v => ['layers', ...FX(v), 'nginx', '--json']), ['layers', ...FX('base'), 'web'], ['layers', '--docker-root', '/', 'x'],
]

/** Cases that would stay in the foreground, or are the daemon itself, run only as real processes. */
const needsRealProcess = (c: FuzzCase): boolean =>
  c.kind === 'mount' && c.argv.some(a => a === '-f' || a === '-d' || a === '--debug' || a === '--ovlfs-daemon')

/** The argv for one pool; null when a path would land on a directory outside the pool (never mount there). */
/**
 * What a command really receives: argv goes through exec as UTF-8, so a lone surrogate becomes
 * U+FFFD (the driver gets the same string); exec refuses an argument over 128 KiB, so longer
 * ones are cut (by characters) to 120000 bytes.
 */
function capArg (raw: string): string {
  const a = Buffer.from(raw, 'utf8').toString('utf8')
  if (Buffer.byteLength(a) <= 120_000) return a
  let out = ''
  let bytes = 0
  for (const ch of a) {
    const n = Buffer.byteLength(ch)
    if (bytes + n > 120_000) break
    out += ch
    bytes += n
  }
  return out
}

function instantiate (c: FuzzCase, pool: Pool): FuzzCase | null {
  const argv = c.argv.map(a => capArg(a.split(R).join(pool.root)))
  if (entryOf(argv) === 'layers' || entryOf(argv) === 'help') return { ...c, argv } // reads only
  const safe = new Set([pool.root, '/', ...(pool.shm ? [pool.shm] : [])])
  const risky: string[] = []
  const isFlagValue = (i: number): boolean => i > 0 && ['-o', '--log-level', '--docker-root'].includes(argv[i - 1]!)
  argv.forEach((a, i) => {
    if (!a.startsWith('-') && !isFlagValue(i)) risky.push(a)
    if (['--upper', '--work', '--docker-root'].includes(argv[i - 1] ?? '')) risky.push(a)
    if (a.startsWith('--docker-root=')) risky.push(a.slice('--docker-root='.length))
    for (const m of a.matchAll(/(?:^|,|-o)(?:upperdir|workdir)=([^,]*)/g)) risky.push(m[1]!.replace(/\\(.)/g, '$1'))
  })
  for (const p of risky) {
    if (p === '' || p.length > 4000) continue
    const abs = path.resolve(pool.root, p)
    if (safe.has(abs) || abs.startsWith(pool.root + '/') || (pool.shm !== null && abs.startsWith(pool.shm + '/'))) continue
    let isDir = false
    try { isDir = fs.statSync(abs).isDirectory() } catch { isDir = false }
    if (isDir) return null
  }
  return { ...c, argv }
}

// ------------------------------------------------------------------------------------------
// The contract

/** The entry point main() dispatches argv to. */
function entryOf (argv: string[]): string {
  const first = argv[0]
  return first === 'layers' || first === 'mount-image' ? first : first === '-h' || first === '--help' ? 'help' : 'mount'
}

function check (c: FuzzCase, res: CaseResult): string[] {
  const p: string[] = []
  const entry = entryOf(c.argv)
  const lines = res.stderr.split('\n').filter(l => l.trim() !== '')
  if (res.crash !== null) p.push(`crashed: ${res.crash.split('\n').slice(0, 6).join(' | ')}`)
  if (res.timedOut) p.push('did not finish in time')
  if (res.signal !== null) p.push(`killed by signal ${res.signal}`)
  if (res.code !== 0 && res.code !== 1 && res.crash === null) p.push(`exit status ${res.code}`)
  const bad = lines.filter(l => /^\s+at /.test(l) || /TypeError|ReferenceError|RangeError|SyntaxError|internal error|node:internal|Unhandled|\.js:\d+/.test(l))
  if (bad.length > 0) p.push(`stack trace or internal error on stderr: ${bad.slice(0, 3).join(' | ')}`)
  if (res.code === 1) {
    const notOurs = lines.filter(l => !l.startsWith('ovlfs: '))
    const errors = lines.filter(l => l.startsWith('ovlfs: ') && !l.startsWith('ovlfs: warning: '))
    if (notOurs.length > 0) p.push(`stderr lines without the "ovlfs: " prefix: ${notOurs.slice(0, 3).map(l => JSON.stringify(l.slice(0, 200))).join(' | ')}`)
    if (errors.length !== 1) p.push(`exit 1 with ${errors.length} error lines on stderr (expected exactly one): ${JSON.stringify(res.stderr.slice(0, 400))}`)
    if (res.mountsAtExit.length > 0) p.push(`failed, yet left a mount: ${res.mountsAtExit.join(', ')}`)
    if (res.tmpLeft.length > 0) p.push(`failed, yet left temporary dirs: ${res.tmpLeft.join(', ')}`)
  }
  if (res.code === 0 && (entry === 'mount' || entry === 'mount-image') && res.mountsAtExit.length === 0) {
    p.push('exit 0 but nothing was mounted')
  }
  if ((entry === 'layers' || entry === 'help') && res.mountsAtExit.length > 0) p.push(`${entry} mounted something: ${res.mountsAtExit.join(', ')}`)
  if (res.mountsAfterCleanup.length > 0) p.push(`could not be unmounted: ${res.mountsAfterCleanup.join(', ')}`)
  return p
}

const shellQuote = (s: string): string => /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`

/** One argument for a shell line; long ones shortened (the replay command regenerates them exactly). */
function showArg (a: string): string {
  const t = a.split(R).join('$POOL')
  if (t.length <= 200) return /^[\w@%+=:,./$-]+$/.test(t) ? t : t.includes('$POOL') ? `"${t.replace(/(["\\`])/g, '\\$1')}"` : shellQuote(t)
  if (/^(.)\1*$/su.test(t)) return `"$(printf '%.0s${t[0] === "'" ? "\\'" : t[0]}' $(seq ${[...t].length}))"`
  return `<${t.length} chars: ${JSON.stringify(t.slice(0, 60))}…>`
}

function reproducer (c: FuzzCase): string {
  return `case ${c.id} (${c.kind}): cd $POOL && TMPDIR=$POOL/tmp node dist/cli/main.js ${c.argv.map(showArg).join(' ')}\n` +
    `    replay: OVLFS_FUZZ_SEED=${SEED} OVLFS_FUZZ_ONLY=${c.id} npx vitest run native-tests/fuzz-cli.test.ts`
}

/** What must agree between the driver and a real process for the same case. */
function fingerprint (res: CaseResult, pool: Pool): string {
  const norm = (s: string): string => s.split(pool.root).join('$POOL').replace(/ovlfs-(scratch|empty)-\w+/g, 'ovlfs-$1-*')
  return JSON.stringify({ code: res.code, stderr: norm(res.stderr), stdout: norm(res.stdout), mounted: res.mountsAtExit.length > 0 })
}

// ------------------------------------------------------------------------------------------

it(`the command line survives ${ONLY.length > 0 ? ONLY.length : CASES} malformed invocations (seed ${SEED})`, async () => {
  assertNativeTestPrerequisites()
  const t0 = Date.now()
  const top = fs.realpathSync(tempDir('ovlfs-test-fuzz-'))
  const pools = { driver: makePool(path.join(top, 'd')), process: makePool(path.join(top, 'p')) }
  const known = harvestRefs(path.join(pools.driver.root, 'fx'))
  const cmd = fuseCommand()
  // The driver loads the CLI's JS entry; a stand-in command (OVLFS_CMD) runs every case for real.
  const driverOk = cmd.length === 2 && cmd[0] === process.execPath && cmd[1]!.endsWith('.js')
  console.log(`fuzz-cli: seed ${SEED} (OVLFS_FUZZ_SEED), ${ONLY.length > 0 ? `only cases ${ONLY.join(',')}` : `${CASES} cases + ${DIRECTED.length} directed ones`}, every ${REAL_EVERY}th also as a real process; pools in ${top}`)
  try {
    const ids = ONLY.length > 0 ? ONLY : [...Array.from({ length: CASES }, (_v, i) => i), ...DIRECTED.map((_a, i) => DIRECTED_BASE + i)]
    const cases: FuzzCase[] = []
    const skipped: number[] = []
    for (const id of ids) {
      const c = id >= DIRECTED_BASE ? { id, kind: entryOf(DIRECTED[id - DIRECTED_BASE] ?? ['-h']), argv: DIRECTED[id - DIRECTED_BASE] ?? ['-h'] } : genCase(id, known)
      if (instantiate(c, pools.driver) === null || instantiate(c, pools.process) === null) { skipped.push(id); continue }
      cases.push(c)
    }
    const realIds = new Set(cases.filter(c => !driverOk || ONLY.length > 0 || needsRealProcess(c) || c.id % REAL_EVERY === 0 || c.id >= DIRECTED_BASE).map(c => c.id))
    const driverCases = cases.filter(c => driverOk && ONLY.length === 0 && !needsRealProcess(c)).map(c => instantiate(c, pools.driver)!)
    const realCases = cases.filter(c => realIds.has(c.id)).map(c => instantiate(c, pools.process)!)

    // The driver and the real processes work in separate pools, at the same time.
    const runReal = async (): Promise<CaseResult[]> => {
      const out: CaseResult[] = []
      for (const c of realCases) {
        out.push(await runAsProcess(c, cmd, { cli: '', root: pools.process.root, cwd: pools.process.root, tmp: pools.process.tmp, reset: pools.process.reset }))
      }
      return out
    }
    const [driverResults, realResults] = await Promise.all([
      runInDriver(driverCases, { cli: cmd[cmd.length - 1]!, root: pools.driver.root, cwd: pools.driver.root, tmp: pools.driver.tmp, reset: pools.driver.reset }),
      runReal(),
    ])

    const failures: string[] = []
    // failures grouped by kind of problem, a few examples each
    const groups = new Map<string, { count: number, examples: string[] }>()
    const byId = new Map(cases.map(c => [c.id, c]))
    const report = (res: CaseResult): void => {
      const c = byId.get(res.id)!
      const problems = check(c, res)
      if (problems.length === 0) return
      const text = `${reproducer(c)}\n    via ${res.via}: exit ${res.code}, stderr ${JSON.stringify(res.stderr.slice(0, 500))}\n    - ${problems.join('\n    - ')}`
      addFailure(problems.map(p => p.split(pools.driver.root).join('$POOL').split(pools.process.root).join('$POOL').replace(/"(?:[^"\\]|\\.)*"/g, '"…"').replace(/\d+/g, 'N').slice(0, 100)).join(' / '), text)
    }
    function addFailure (sig: string, text: string): void {
      failures.push(text)
      const g = groups.get(sig) ?? { count: 0, examples: [] }
      g.count++
      if (g.examples.length < 3) g.examples.push(text)
      groups.set(sig, g)
    }
    for (const res of driverResults) report(res)
    for (const res of realResults) report(res)
    // The driver is a stand-in for real processes: where both ran a case, they must agree.
    const driverById = new Map(driverResults.map(r => [r.id, r]))
    let compared = 0
    for (const real of realResults) {
      const d = driverById.get(real.id)
      if (d === undefined) continue
      compared++
      const a = fingerprint(d, pools.driver)
      const b = fingerprint(real, pools.process)
      if (a !== b) addFailure('the in-process driver and a real process disagree', `${reproducer(byId.get(real.id)!)}\n    the in-process driver and a real process disagree:\n      driver:  ${a.slice(0, 600)}\n      process: ${b.slice(0, 600)}`)
    }
    // Nothing mounted, no daemon left.
    for (let i = 0; i < 100 && ovlfsDaemons(top).length > 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
    const daemons = ovlfsDaemons(top)
    if (daemons.length > 0) addFailure('daemons left', `ovlfs daemons still alive after every mount was removed: pids ${daemons.join(', ')}`)
    const left = mountsUnder(top)
    if (left.length > 0) addFailure('mounts left', `still mounted: ${left.map(m => m.mnt).join(', ')}`)

    const all = [...driverResults, ...realResults]
    const count = (f: (r: CaseResult) => boolean): number => all.filter(f).length
    const kinds = ['mount', 'layers', 'mount-image', 'help'].map(k => `${k} ${cases.filter(c => c.kind === k).length}`).join(', ')
    console.log(`fuzz-cli: ${cases.length} cases (${kinds}); ${driverResults.length} in the driver, ${realResults.length} as real processes ` +
      `(${compared} compared with the driver); exit 0: ${count(r => r.code === 0)}, exit 1: ${count(r => r.code === 1)}, ` +
      `mounted: ${count(r => r.mountsAtExit.length > 0)} (${['mount', 'mount-image'].map(k => `${k} ${all.filter(r => r.mountsAtExit.length > 0 && entryOf(byId.get(r.id)!.argv) === k).length}`).join(', ')}); ${skipped.length} generated cases skipped (a path outside the pool); ` +
      `${failures.length} failures; ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    if (process.env.OVLFS_FUZZ_REPORT) fs.writeFileSync(process.env.OVLFS_FUZZ_REPORT, failures.join('\n\n') + '\n')
    const grouped = [...groups.entries()].sort((x, y) => y[1].count - x[1].count)
      .map(([sig, g]) => `== ${g.count} case(s): ${sig}\n\n${g.examples.join('\n\n')}`).join('\n\n')
    if (process.env.OVLFS_FUZZ_VERBOSE) {
      // what the cases ran into, by entry point and first words of the message
      const hist = new Map<string, number>()
      for (const r of all) {
        const line = r.stderr.split('\n').find(l => l.startsWith('ovlfs: ') && !l.startsWith('ovlfs: warning')) ?? `(exit ${r.code}, no error line)`
        const k = `${entryOf(byId.get(r.id)!.argv)}: ${line.split(pools.driver.root).join('$POOL').split(pools.process.root).join('$POOL').replace(/\s+/g, ' ').slice(0, 70)}`
        hist.set(k, (hist.get(k) ?? 0) + 1)
      }
      console.log([...hist.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${String(n).padStart(5)}  ${k}`).join('\n'))
    }
    expect(failures.length, `seed ${SEED}; failing cases by kind of problem, up to 3 examples each ($POOL is a directory made by makePool in fuzz-cli.test.ts):\n\n${grouped}`).toBe(0)
  } finally {
    forceUnmountUnder(top)
    for (const p of Object.values(pools)) if (p.shm !== null) fs.rmSync(p.shm, { recursive: true, force: true })
    removeUnmounted(top)
  }
}, 900_000)

