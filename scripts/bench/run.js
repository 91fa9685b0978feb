#!/usr/bin/env node
'use strict'
// The side-by-side benchmark of issue 5: kernel overlayfs, fuse-overlayfs and
// ovlfs on the same cached data set, interleaved, in one run.
//
//   node scripts/bench/run.js [--quick] [--runs N] [--out FILE.json]
//        [--cache DIR] [--timeout SEC] [--only W1,W2] [--impls I1,I2]
//        [--ovlfs PATH/TO/main.js] [--base debootstrap|usr|synthetic]
//        [--retry-timeouts] [--strict] [--no-snapshot] [--upper-on ext4|dir]
//
// Needs root, fuse-overlayfs, kernel overlayfs and a built ovlfs (npm run build).
// A report, not a test: it exits 0 when every run was attempted, whatever
// the timings or failures, and 2 only if the machinery itself failed
// (--strict: 1 when a run failed or an output differed from the kernel's).
// See README.md.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { log, q, runShell, sh, removeTree, killLiveGroups, cpuSeconds, peakRssKiB, isMounted } = require('./lib')
const { ensureDataset, cleanupBuilding, tarHalves } = require('./dataset')
const { IMPLS, mount, unmount, unmountAllSync, bindReadOnly, freshExt4, active } = require('./mounts')
const { WORKLOADS } = require('./workloads')
const report = require('./report')

const REPO = path.resolve(__dirname, '../..')
/** Size of the file system each run's upper and work dirs are on (--upper-on ext4): room for the copy-up's 256 MiB. */
const UPPER_FS_GIB = 2

function usage (msg) {
  if (msg) process.stderr.write(`run.js: ${msg}\n`)
  process.stderr.write('usage: node scripts/bench/run.js [--quick] [--runs N] [--out FILE.json] [--cache DIR] [--timeout SEC] [--only W1,W2] [--impls I1,I2] [--ovlfs PATH] [--base debootstrap|usr|synthetic] [--retry-timeouts] [--strict] [--no-snapshot] [--upper-on ext4|dir]\n')
  process.exit(msg ? 2 : 0)
}

function parseArgs (argv) {
  const o = { quick: false, runs: null, out: null, cache: '/var/tmp/ovlfs-bench-cache', timeout: null, only: null, impls: IMPLS, ovlfs: path.join(REPO, 'dist/cli/main.js'), base: undefined, retryTimeouts: false, strict: false, snapshot: true, upperOn: 'ext4' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i] }
    if (a === '--quick') o.quick = true
    else if (a === '--runs') o.runs = Number(val())
    else if (a === '--out') o.out = path.resolve(val())
    else if (a === '--cache') o.cache = path.resolve(val())
    else if (a === '--timeout') o.timeout = Number(val())
    else if (a === '--only') o.only = val().split(',')
    else if (a === '--impls') o.impls = val().split(',')
    else if (a === '--ovlfs') o.ovlfs = path.resolve(val())
    else if (a === '--base') o.base = val()
    else if (a === '--retry-timeouts') o.retryTimeouts = true
    else if (a === '--strict') o.strict = true
    else if (a === '--no-snapshot') o.snapshot = false
    else if (a === '--upper-on') o.upperOn = val()
    else if (a === '-h' || a === '--help') usage()
    else usage(`unknown argument ${a}`)
  }
  if (o.runs === null) o.runs = o.quick ? 1 : 5
  if (!Number.isInteger(o.runs) || o.runs < 1) usage('--runs must be a positive integer')
  if (o.timeout === null) o.timeout = o.quick ? 120 : 600
  if (!(o.timeout > 0)) usage('--timeout must be positive')
  for (const i of o.impls) if (!IMPLS.includes(i)) usage(`unknown implementation ${i} (${IMPLS.join(', ')})`)
  o.impls = IMPLS.filter(i => o.impls.includes(i))
  if (o.only) for (const w of o.only) if (!WORKLOADS.some(x => x.name === w)) usage(`unknown workload ${w} (${WORKLOADS.map(x => x.name).join(', ')})`)
  if (!['ext4', 'dir'].includes(o.upperOn)) usage('--upper-on: ext4 or dir')
  if (o.base !== undefined && !['debootstrap', 'usr', 'synthetic'].includes(o.base)) usage('--base: debootstrap, usr or synthetic')
  return o
}

function preflight (o) {
  const problems = []
  if (process.getuid() !== 0) problems.push('must run as root (mounts, drop_caches)')
  if (sh('bash', ['-c', 'command -v fuse-overlayfs'], { allowFail: true }).status !== 0 && o.impls.includes('fuse-overlayfs')) problems.push('fuse-overlayfs is not installed')
  if (o.impls.includes('ovlfs') && !fs.existsSync(o.ovlfs)) problems.push(`${o.ovlfs} missing: run npm run build first`)
  if (o.upperOn === 'ext4' && sh('bash', ['-c', 'command -v mkfs.ext4 && command -v losetup'], { allowFail: true }).status !== 0) problems.push('--upper-on ext4 needs mkfs.ext4 and losetup (e2fsprogs, mount)')
  if (o.impls.includes('kernel') && !/\boverlay\b/.test(fs.readFileSync('/proc/filesystems', 'utf8'))) sh('modprobe', ['overlay'], { allowFail: true })
  try { fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK) } catch { problems.push('/proc/sys/vm/drop_caches is not writable') }
  if (problems.length) {
    for (const p of problems) log(`run.js: ${p}`)
    process.exit(2)
  }
}

function machine (o) {
  const first = (cmd, args, re) => {
    const r = sh(cmd, args, { allowFail: true })
    const text = (r.stdout || '') + (r.stderr || '')
    const line = text.split('\n').find(l => re.test(l))
    return line ? line.trim() : null
  }
  const git = sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { allowFail: true }).stdout?.trim() || null
  const dirty = sh('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no'], { allowFail: true }).stdout?.trim()
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    kernel: os.release(),
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    cacheFs: first('findmnt', ['-no', 'FSTYPE,SOURCE', '-T', o.cache], /\S/),
    upperFs: o.upperOn === 'ext4' ? `a new ${UPPER_FS_GIB} GiB ext4 (mkfs defaults, journal) on a loop device per run, in a file on the cache's file system` : 'a directory on the cache\'s file system',
    node: process.version,
    fuseOverlayfs: first('fuse-overlayfs', ['--version'], /fuse-overlayfs/),
    ovlfs: git ? git + (dirty ? '-dirty' : '') : null,
    mountCommands: {
      kernel: 'mount -t overlay overlay -o lowerdir=…,upperdir=…,workdir=… MNT',
      'fuse-overlayfs': 'fuse-overlayfs -o lowerdir=…,upperdir=…,workdir=… MNT',
      ovlfs: `node ${path.relative(REPO, o.ovlfs)} -o lowerdir=…,upperdir=…,workdir=… MNT`,
    },
  }
}

/**
 * sync the file system of the data set and the upper dirs (not every file
 * system: a hung FUSE mount of someone else's would block a global sync),
 * then drop the page cache, dentries and inodes.
 */
async function dropCaches (fsPath) {
  const r = await runShell(`sync -f ${q(fsPath)}`, { timeoutMs: 300_000 })
  if (r.code !== 0) log(`bench: sync: exit ${r.code} ${r.stderr}`)
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
}

/**
 * Run ovlfs from a copy of its build (dist/ and the addon, node_modules
 * linked), so that a rebuild in the working tree during a long benchmark
 * does not mix builds. Returns the copy's main.js.
 */
function snapshotOvlfs (cli, dir) {
  const root = path.resolve(path.dirname(cli), '../..')
  const dist = path.join(root, 'dist')
  if (path.relative(dist, cli).startsWith('..')) return cli // not a dist/ layout: use as is
  fs.mkdirSync(dir, { recursive: true })
  fs.cpSync(dist, path.join(dir, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.map') })
  const addon = path.join(root, 'build/Release/ovlfs_sys.node')
  if (fs.existsSync(addon)) {
    fs.mkdirSync(path.join(dir, 'build/Release'), { recursive: true })
    fs.copyFileSync(addon, path.join(dir, 'build/Release/ovlfs_sys.node'))
  }
  for (const f of ['package.json']) if (fs.existsSync(path.join(root, f))) fs.copyFileSync(path.join(root, f), path.join(dir, f))
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'))
  return path.join(dir, path.relative(root, cli))
}

// ---------------------------------------------------------------- cleanup on every way out

const tmpDirs = new Set()
let cleanedUp = false
function cleanupSync () {
  if (cleanedUp) return
  cleanedUp = true
  killLiveGroups()
  unmountAllSync()
  cleanupBuilding()
  for (const d of [...tmpDirs].sort((a, b) => b.length - a.length)) removeTree(d)
}
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(sig, () => {
    log(`bench: ${sig}: cleaning up our mounts and temp dirs`)
    cleanupSync()
    process.exit(code)
  })
}
process.on('uncaughtException', (err) => {
  log(`bench: error: ${err.stack || err}`)
  cleanupSync()
  process.exit(2)
})
process.on('unhandledRejection', (err) => {
  log(`bench: error: ${(err && err.stack) || err}`)
  cleanupSync()
  process.exit(2)
})

// ---------------------------------------------------------------- one run

async function runOne ({ w, impl, run, ds, manifest, runDir, halves, o }) {
  const tmp = fs.mkdtempSync(path.join(runDir, `${w.name}-${impl}-r${run}-`))
  tmpDirs.add(tmp)
  const img = path.join(runDir, 'upper.img')
  if (o.upperOn === 'ext4') freshExt4(img, tmp, UPPER_FS_GIB * 2 ** 30)
  const upper = path.join(tmp, 'upper')
  const work = path.join(tmp, 'work')
  const mnt = path.join(tmp, 'mnt')
  for (const d of [upper, work, mnt]) fs.mkdirSync(d)
  const lowers = manifest.stacks[w.stack].map(l => path.join(ds, l))
  const rec = { workload: w.name, impl, run, ok: false, seconds: null, output: null, error: null, notes: [], peakRssKiB: null, cpuSeconds: null, cpuTotalSeconds: null, pid: null }
  const deadline = Date.now() + o.timeout * 1000
  const left = () => Math.max(1000, deadline - Date.now())
  let hung = false
  let cpu0 = null
  const ctx = { mnt, ds, m: manifest, lowers, tmp, halves, statScript: path.join(__dirname, 'stat-names.js') }
  const step = async (what, cmd) => {
    const r = await runShell('set -o pipefail; ' + cmd, { timeoutMs: left() })
    if (r.timedOut) {
      hung = true
      rec.timedOut = true
      throw new Error(`${what} timed out (limit ${o.timeout} s per run)`)
    }
    if (r.code !== 0) throw new Error(`${what}: exit ${r.code}${r.signal ? ' ' + r.signal : ''}: ${r.stderr.trim().slice(-600)}`)
    return r
  }
  try {
    // readOnly workloads: no upper layer (each implementation's read-only overlay; ovlfs's passthrough, patch item 32).
    const { pid } = await mount(impl, { lowers, upper: w.readOnly ? null : upper, work, mnt, ovlfsCli: o.ovlfs, timeoutMs: Math.min(120_000, left()) })
    rec.pid = pid
    if (w.prep) await step('warm-up', w.prep(ctx))
    if (w.cold) await dropCaches(tmp)
    cpu0 = pid ? cpuSeconds(pid) : null
    const r = await step('workload', w.cmd(ctx))
    const cpu1 = pid ? cpuSeconds(pid) : null
    if (cpu0 != null && cpu1 != null) rec.cpuSeconds = cpu1 - cpu0
    let seconds = r.seconds
    let output = r.stdout.trim()
    let error = null
    if (w.parse) ({ seconds, output, error } = w.parse(r, ctx))
    rec.seconds = seconds
    rec.output = output
    if (error) throw new Error(error)
    if (w.expect && output !== w.expect(manifest)) throw new Error(`wrong result: output ${JSON.stringify(output)}, expected ${w.expect(manifest)}`)
    if (w.after) {
      const a = await step('check', w.after(ctx))
      const want = w.afterExpect(manifest)
      if (a.stdout.trim() !== want) throw new Error(`wrong result: check gave ${JSON.stringify(a.stdout.trim())}, expected ${want}`)
    }
    if (stderrNoise(r)) rec.notes.push(`stderr: ${r.stderr.trim().slice(-300)}`)
    rec.ok = true
  } catch (err) {
    rec.error = err.message
    if (/^mount timed out/.test(err.message)) rec.timedOut = true
  } finally {
    if (rec.pid) {
      // Read just before the unmount.
      rec.peakRssKiB = peakRssKiB(rec.pid)
      rec.cpuTotalSeconds = cpuSeconds(rec.pid)
      // A run that failed mid-workload: its CPU so far.
      if (rec.cpuSeconds == null && cpu0 != null && rec.cpuTotalSeconds != null) rec.cpuSeconds = rec.cpuTotalSeconds - cpu0
    }
    if (active.has(mnt)) rec.notes.push(...await unmount(mnt, { force: hung }))
    if (!isMounted(mnt) && active.has(tmp)) {
      rec.notes.push(...await unmount(tmp))
      if (!isMounted(tmp)) fs.rmSync(img, { force: true })
    }
    if (!isMounted(mnt) && !isMounted(tmp)) {
      if (removeTree(tmp)) tmpDirs.delete(tmp)
    } else {
      rec.notes.push(`left mounted: ${isMounted(mnt) ? mnt : tmp}`)
    }
  }
  return rec
}

const stderrNoise = (r) => r.stderr.trim() !== ''

// ---------------------------------------------------------------- main

async function main () {
  const o = parseArgs(process.argv.slice(2))
  preflight(o)
  const t0 = Date.now()
  const scale = o.quick ? 'quick' : 'full'
  const { dir: dsDir, manifest } = await ensureDataset(o.cache, scale, { base: o.base })
  const tmpRoot = path.join(o.cache, 'tmp')
  fs.mkdirSync(tmpRoot, { recursive: true })
  const runDir = fs.mkdtempSync(path.join(tmpRoot, 'ovlfs-bench-'))
  tmpDirs.add(runDir)
  const ds = bindReadOnly(dsDir, path.join(runDir, 'ro'))
  const split = tarHalves(ds, manifest)
  const halves = split.halves.map((list, i) => {
    const f = path.join(runDir, `tar-half-${i}.txt`)
    fs.writeFileSync(f, list.join('\n') + '\n')
    return f
  })
  const workloads = WORKLOADS.filter(w => !o.only || o.only.includes(w.name))
  const meta = machine(o)
  const builtCli = o.ovlfs
  const ovlfsMtime = () => { try { return fs.statSync(builtCli).mtimeMs } catch { return null } }
  const ovlfsMtime0 = ovlfsMtime()
  if (ovlfsMtime0 != null) meta.ovlfsBuildTime = new Date(ovlfsMtime0).toISOString()
  if (o.impls.includes('ovlfs') && o.snapshot) o.ovlfs = snapshotOvlfs(o.ovlfs, path.join(runDir, 'ovlfs'))
  log(`bench: ${workloads.length} workloads × ${o.impls.length} implementations × ${o.runs} runs, interleaved; timeout ${o.timeout} s per run`)

  const records = []
  const timedOut = new Map() // "workload/impl" -> run number of its first timeout
  for (let run = 0; run < o.runs; run++) {
    for (const [wi, w] of workloads.entries()) {
      const n = o.impls.length
      const order = o.impls.map((_, i) => o.impls[(i + run + wi) % n])
      for (const impl of order) {
        const key = `${w.name}/${impl}`
        let rec
        if (timedOut.has(key) && !o.retryTimeouts) {
          rec = { workload: w.name, impl, run, ok: false, skipped: true, seconds: null, output: null, error: `skipped: timed out in run ${timedOut.get(key)}`, notes: [], peakRssKiB: null, cpuSeconds: null, cpuTotalSeconds: null, pid: null }
        } else {
          rec = await runOne({ w, impl, run, ds, manifest, runDir, halves, o })
          if (rec.timedOut && !timedOut.has(key)) timedOut.set(key, run + 1)
        }
        records.push(rec)
        const extra = rec.pid ? `  rss ${rec.peakRssKiB != null ? (rec.peakRssKiB / 1024).toFixed(0) : '?'} MiB  cpu ${rec.cpuSeconds != null ? rec.cpuSeconds.toFixed(2) : '?'} s` : ''
        log(`[${run + 1}/${o.runs}] ${w.name.padEnd(24)} ${impl.padEnd(15)} ${rec.ok ? rec.seconds.toFixed(3).padStart(9) + ' s' : 'FAILED: ' + rec.error}${extra}${rec.notes.length ? '  (' + rec.notes.join('; ') + ')' : ''}`)
      }
    }
  }

  // Undo the read-only bind and the run directory.
  const roNotes = await unmount(ds)
  if (roNotes.length) log(`bench: ${ds}: ${roNotes.join('; ')}`)
  if (removeTree(runDir)) tmpDirs.delete(runDir)

  const summary = report.summarize(records, workloads, manifest)
  const lin = report.linearity(summary, manifest)
  const mism = report.mismatches(records)
  const seconds = Math.round((Date.now() - t0) / 1000)
  const failures = records.filter(r => !r.ok)

  const lines = []
  lines.push(`ovlfs benchmark, ${meta.date.slice(0, 10)}, ${meta.hostname}: ${meta.cpus} × ${meta.cpu}, ${meta.memGiB} GiB, Linux ${meta.kernel}, ${(meta.cacheFs ?? '?').replace(/\s+/g, ' ')}; ` +
    `${meta.fuseOverlayfs}; ovlfs ${meta.ovlfs} (built ${meta.ovlfsBuildTime ?? '?'}); node ${meta.node}`)
  lines.push(`Data set (${scale}): ${manifest.base.detail}; upper and work dirs on ${meta.upperFs}; medians of ${o.runs} run${o.runs > 1 ? 's' : ''} (min–max), seconds; total ${seconds} s.`)
  lines.push('')
  lines.push(report.table(summary, workloads, manifest, lin))
  if (failures.length) {
    lines.push('')
    lines.push('Failed runs:')
    for (const f of failures) lines.push(`- ${f.workload} / ${f.impl} / run ${f.run + 1}: ${f.error}${f.notes.length ? ' (' + f.notes.join('; ') + ')' : ''}`)
  }
  if (mism.length) {
    lines.push('')
    lines.push('Output differs from the kernel\'s in the same run (find/ls line counts, tar byte counts):')
    for (const x of mism) lines.push(`- ${x.workload} / ${x.impl} / run ${x.run + 1}: ${x.output} vs kernel ${x.kernel}`)
  }
  if (o.impls.includes('ovlfs') && ovlfsMtime() !== ovlfsMtime0) {
    meta.ovlfsRebuiltDuringRun = true
    lines.push('')
    lines.push(o.snapshot
      ? `Note: ${builtCli} was rebuilt during the run; all ovlfs runs used a copy of the build of ${meta.ovlfsBuildTime}.`
      : `Warning: ${builtCli} was rebuilt during the run; the ovlfs runs did not all use the same build.`)
  }
  const noisy = records.filter(r => r.ok && r.notes.length)
  if (noisy.length) {
    lines.push('')
    lines.push('Notes:')
    for (const r of noisy) lines.push(`- ${r.workload} / ${r.impl} / run ${r.run + 1}: ${r.notes.join('; ')}`)
  }
  process.stdout.write(lines.join('\n') + '\n')

  const out = o.out ?? path.join(o.cache, 'results', `${scale}-${meta.date.replace(/[:.]/g, '-')}.json`)
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const json = {
    meta: { ...meta, totalSeconds: seconds, options: { quick: o.quick, runs: o.runs, timeoutSeconds: o.timeout, impls: o.impls, only: o.only, retryTimeouts: o.retryTimeouts } },
    dataset: { dir: dsDir, manifest, tarHalves: split },
    workloads: workloads.map(w => ({ name: w.name, core: w.core, stack: w.stack, readOnly: !!w.readOnly, cold: !!w.cold, what: w.what })),
    summary,
    linearity: lin,
    mismatches: mism,
    runs: records,
    table: lines.join('\n'),
  }
  fs.writeFileSync(out, JSON.stringify(json, null, 2) + '\n')
  log(`bench: results written to ${out} (${seconds} s)`)
  if (active.size > 0) log(`bench: warning: still mounted: ${[...active.keys()].join(', ')}`)
  cleanupSync()
  if (o.strict && (failures.length > 0 || mism.length > 0)) {
    log(`bench: --strict: ${failures.length} failed run(s), ${mism.length} output mismatch(es)`)
    process.exitCode = 1
  }
}

main().catch((err) => {
  log(`bench: error: ${err.stack || err}`)
  cleanupSync()
  process.exit(2)
})
