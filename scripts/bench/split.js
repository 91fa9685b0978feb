#!/usr/bin/env node
'use strict'
// Where a lookup's time goes: the binding's per-request cost vs the engine's
// work (issue 5). For each case, 1,000 stat()s from one process, each a LOOKUP
// of a new name, measured on fresh mounts and fresh processes (cold JIT, as in
// the benchmark):
//   null           an empty file system served through ovlfs's FUSE binding
//                  (scripts/bench/null-fs.js): the floor any JS daemon on this
//                  binding pays per request;
//   ovlfs          the real mount; daemon CPU (all threads) and wall per stat;
//   engine         the same lookups straight on the engine (dist/engine, no
//                  FUSE): CPU and wall per lookup;
//   fuse-overlayfs daemon CPU and wall per stat, for scale.
// So: engine = ovlfs's own work; ovlfs - engine = what FUSE and the binding add.
//
//   sudo node scripts/bench/split.js [--cache DIR] [--runs N] [--out FILE.json]
//        [--impls null,engine,ovlfs,fuse-overlayfs] [--ovlfs dist/cli/main.js] [--scale full|quick]
//
// Uses the stacks of the benchmark's data set (scripts/bench/run.js builds it;
// default cache /var/tmp/ovlfs-bench-cache; scale "full" if it is there, else "quick").
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const L = require('./lib')
const M = require('./mounts')
const { median } = require('./report')

const REPO = path.join(__dirname, '..', '..')
const STAT_NAMES = path.join(__dirname, 'stat-names.js')
const IMPLS = ['null', 'engine', 'ovlfs', 'fuse-overlayfs']

function parseArgs (argv) {
  const a = { cache: '/var/tmp/ovlfs-bench-cache', runs: 3, out: undefined, engineChild: undefined, impls: IMPLS, ovlfs: path.join(REPO, 'dist', 'cli', 'main.js'), scale: undefined }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = () => { if (i + 1 >= argv.length) usage(`${k} needs a value`); return argv[++i] }
    if (k === '--cache') a.cache = v()
    else if (k === '--runs') { a.runs = Number(v()); if (!Number.isInteger(a.runs) || a.runs < 1) usage('--runs must be a positive integer') }
    else if (k === '--out') a.out = v()
    else if (k === '--engine-child') a.engineChild = v()
    else if (k === '--impls') { a.impls = v().split(','); if (a.impls.some(i => !IMPLS.includes(i))) usage(`--impls: one or more of ${IMPLS.join(',')}`) }
    else if (k === '--ovlfs') a.ovlfs = path.resolve(v())
    else if (k === '--scale') { a.scale = v(); if (a.scale !== 'full' && a.scale !== 'quick') usage('--scale: full or quick') }
    else usage(`unknown argument ${k}`)
  }
  return a
}
function usage (msg) {
  process.stderr.write(`split.js: ${msg}\nusage: sudo node scripts/bench/split.js [--cache DIR] [--runs N] [--out FILE.json] [--impls LIST] [--ovlfs CLI] [--scale full|quick]\n`)
  process.exit(2)
}

// ---- engine-only child: lookups on a fresh engine in a fresh process --------
async function engineChild (cfg) {
  const { Engine } = require(path.join(path.dirname(cfg.cli), '..', 'engine', 'engine.js'))
  const engine = await Engine.open({ lowerdirs: cfg.lowers, upperdir: cfg.upper, workdir: cfg.work })
  await engine.getattr('d')
  const names = cfg.names
  const c0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  let found = 0
  for (const n of names) {
    try { await engine.getattrWithOrigin(n); found++ } catch (err) { if (err.code !== 'ENOENT') throw err }
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e3
  const c = process.cpuUsage(c0)
  process.stdout.write(JSON.stringify({ found, wallUs: wall, cpuUs: c.user + c.system }) + '\n')
}

function runEngine (cli, lowers, names) {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-split-'))
  try {
    fs.mkdirSync(path.join(t, 'u')); fs.mkdirSync(path.join(t, 'w'))
    const cfg = JSON.stringify({ cli, lowers, upper: path.join(t, 'u'), work: path.join(t, 'w'), names })
    const r = spawnSync(process.execPath, [__filename, '--engine-child', cfg], { encoding: 'utf8', maxBuffer: 1 << 20 })
    if (r.status !== 0) throw new Error(`engine child: ${r.stderr.trim().slice(-500)}`)
    return JSON.parse(r.stdout)
  } finally { L.removeTree(t) }
}

function statNames (dir, prefix, count) {
  const r = spawnSync(process.execPath, [STAT_NAMES, dir, prefix, String(count)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`stat-names: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout)
}

/** Daemon CPU and wall for the stats, through a mount whose daemon is `pid`. */
function measure (pid, mnt, prefix, count) {
  spawnSync('stat', [path.join(mnt, 'd')])
  const c0 = L.cpuSeconds(pid)
  const s = statNames(path.join(mnt, 'd'), prefix, count)
  const c1 = L.cpuSeconds(pid)
  return { found: s.found, wallUs: s.seconds * 1e6, cpuUs: (c1 - c0) * 1e6 }
}

async function runMounted (impl, cli, lowers, prefix, count) {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-split-'))
  const mnt = path.join(t, 'm')
  for (const d of ['u', 'w', 'm']) fs.mkdirSync(path.join(t, d))
  try {
    const { pid } = await M.mount(impl, { lowers, upper: path.join(t, 'u'), work: path.join(t, 'w'), mnt, ovlfsCli: cli })
    try { return measure(pid, mnt, prefix, count) } finally { await M.unmount(mnt) }
  } finally { L.removeTree(t) }
}

async function runNull (bottomPrefix, prefix, count) {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-split-'))
  const child = spawn(process.execPath, [path.join(__dirname, 'null-fs.js'), t, bottomPrefix], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await new Promise((resolve, reject) => {
      child.stdout.once('data', resolve)
      child.once('exit', (code) => reject(new Error(`null-fs exited with ${code}`)))
    })
    return measure(child.pid, t, prefix, count)
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => { if (child.exitCode !== null) resolve(); else child.once('exit', resolve) })
    if (L.isMounted(t)) spawnSync('fusermount', ['-uz', t])
    fs.rmdirSync(t)
  }
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  if (args.engineChild !== undefined) return await engineChild(JSON.parse(args.engineChild))
  if (process.getuid() !== 0) usage('needs root (mounts)')
  if (!fs.existsSync(args.ovlfs)) usage(`${args.ovlfs} does not exist: build first (npm run build)`)
  const scale = (args.scale !== undefined ? [args.scale] : ['full', 'quick']).find(s => fs.existsSync(path.join(args.cache, s, 'manifest.json')))
  if (scale === undefined) usage(`no ${args.scale ?? ''} data set under ${args.cache}: run scripts/bench/run.js${args.scale === 'quick' ? ' --quick' : ''} first`)
  const root = path.join(args.cache, scale)
  const man = JSON.parse(fs.readFileSync(path.join(root, 'manifest.json'), 'utf8'))
  const count = man.stats.count
  const st = man.stats
  const cases = [
    { name: 'stat-bottom-2', stack: 'stack2', prefix: st.bottomPrefix },
    { name: 'stat-bottom-40', stack: 'stack40', prefix: st.bottomPrefix },
    { name: 'stat-missing-40', stack: 'stack40', prefix: st.missingPrefix },
  ]
  const impls = args.impls
  const results = []
  for (const c of cases) {
    const lowers = man.stacks[c.stack].map(l => path.join(root, l))
    const names = Array.from({ length: count }, (_v, i) => `${st.dir}/${c.prefix}${String(i).padStart(4, '0')}`)
    const runs = Object.fromEntries(impls.map(i => [i, []]))
    for (let r = 0; r < args.runs; r++) {
      for (const impl of impls) {
        let m
        if (impl === 'engine') m = runEngine(args.ovlfs, lowers, names)
        else if (impl === 'null') m = await runNull(st.bottomPrefix, c.prefix, count)
        else m = await runMounted(impl, args.ovlfs, lowers, c.prefix, count)
        const expect = c.prefix === st.bottomPrefix ? count : 0
        if (m.found !== expect) throw new Error(`${impl} ${c.name}: found ${m.found} names, expected ${expect}`)
        runs[impl].push(m)
        L.log(`${c.name} run ${r + 1} ${impl}: ${(m.wallUs / count).toFixed(0)} µs wall, ${(m.cpuUs / count).toFixed(0)} µs CPU per stat`)
      }
    }
    const per = (impl, k) => median(runs[impl].map(m => m[k])) / count
    results.push({ case: c.name, runs, perStat: Object.fromEntries(impls.map(i => [i, { wallUs: +per(i, 'wallUs').toFixed(1), cpuUs: +per(i, 'cpuUs').toFixed(1) }])) })
  }
  const rows = ['| case | null FS: wall / daemon CPU | ovlfs engine alone: wall / CPU | ovlfs mount: wall / daemon CPU | fuse-overlayfs: wall / daemon CPU |', '|---|---|---|---|---|']
  const cell = (p) => p === undefined ? '–' : `${Math.round(p.wallUs)} / ${Math.round(p.cpuUs)} µs`
  for (const r of results) rows.push(`| ${r.case} | ${cell(r.perStat.null)} | ${cell(r.perStat.engine)} | ${cell(r.perStat.ovlfs)} | ${cell(r.perStat['fuse-overlayfs'])} |`)
  const table = rows.join('\n')
  const out = { kind: 'ovlfs-split', ovlfs: args.ovlfs, scale, date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, loadavg: os.loadavg(), runs: args.runs, count, results, table }
  if (args.out) fs.writeFileSync(args.out, JSON.stringify(out, null, 1) + '\n')
  process.stdout.write(`Per stat (median of ${args.runs} fresh mounts/processes, ${count} stats each, load average ${os.loadavg().map(x => x.toFixed(1)).join(' ')}):\n\n${table}\n`)
}

main().catch((err) => { L.log(`split.js: ${err && err.stack ? err.stack : err}`); M.unmountAllSync(); process.exit(1) })
