#!/usr/bin/env node
'use strict'
// Soak: a long mixed workload against one ovlfs mount, watching the daemon's
// memory and file descriptors (issue 6, "Load").
//
//   node scripts/soak.js [--ops 10000000] [--workers 4] [--seed 1] [--dirs 16] [--files 64]
//                        [--max-rss-mib 256] [--fd-slack 16] [--sample-ms 2000] [--keep]
//
// --workers processes (scripts/load/soak-worker.js) share --ops operations (stat,
// open/read, open/write, create, unlink, rename, readdir, chmod, truncate, fsync,
// statfs) on a bounded working set of dirs x files names under soak/ (half of
// the names start in the lower layer, so copy-ups and whiteouts keep happening).
// The daemon's VmRSS/VmHWM and open fds are sampled every --sample-ms. Fails when
// RSS ever exceeds --max-rss-mib (the daemon's caches are bounded: 100,000 lookup
// nodes, 50,000 lower opaque flags, 200,000 listing entries; see src/engine/lookup.ts
// and dir-index.ts), when the fd count after the warm-up (first 10% of the ops)
// exceeds the warm-up's peak by more than --fd-slack, when a worker sees an errno
// a plain filesystem would not give, or when the daemon dies.
// Prints one summary JSON line on stdout; exit 0 only when every check holds.

const fs = require('node:fs')
const path = require('node:path')
const { fork } = require('node:child_process')
const C = require('./load/common')

const USAGE = `usage: node scripts/soak.js [--ops N] [--workers K] [--seed S] [--dirs D] [--files F]
       [--max-rss-mib M] [--fd-slack N] [--sample-ms MS] [--keep]
`
const args = C.parseArgs(process.argv.slice(2), {
  ops: 10_000_000, workers: 4, seed: 1, dirs: 16, files: 64, maxRssMib: 256, fdSlack: 16, sampleMs: 2000, keep: false,
}, USAGE)

const summary = { kind: 'ovlfs-soak', ops: args.ops, workers: args.workers, seed: args.seed, workingSet: args.dirs * args.files, ok: false, checks: {}, failures: [] }
function check (name, ok, detail) {
  summary.checks[name] = ok
  if (!ok) summary.failures.push(`${name}: ${detail}`)
}

const children = new Set()
C.installTeardown(() => { for (const c of children) { try { c.kill('SIGKILL') } catch {} } })

async function main () {
  const o = C.makeRoot('ovlfs-soak-', 1)
  summary.root = o.root
  for (let d = 0; d < args.dirs; d++) {
    const dir = path.join(o.lowers[0], 'soak', `d${d}`)
    fs.mkdirSync(dir, { recursive: true })
    for (let f = 0; f < args.files; f += 2) fs.writeFileSync(path.join(dir, `f${f}`), Buffer.alloc(2000 + f, 0x41))
  }
  const pid = await C.mountOvlfs(o)
  const sampler = new C.Sampler(pid, args.sampleMs)
  const t0 = Date.now()
  let done = 0
  let warm = null
  const progress = setInterval(() => {
    const s = sampler.samples[sampler.samples.length - 1]
    C.log(`soak: ${done}/${args.ops} ops, ${Math.round(done / ((Date.now() - t0) / 1000))} ops/s, rss ${s ? (s.rssKiB / 1024).toFixed(1) : '?'} MiB, fds ${s ? s.fds : '?'}`)
  }, 30_000)
  const finals = []
  try {
    const per = Math.floor(args.ops / args.workers)
    const counts = new Array(args.workers).fill(0)
    await Promise.all(Array.from({ length: args.workers }, (_v, k) => new Promise((resolve) => {
      const ops = k === args.workers - 1 ? args.ops - per * (args.workers - 1) : per
      const cfg = { k, seed: C.subSeed(args.seed, k), ops, mnt: o.mnt, dirs: args.dirs, files: args.files }
      const child = fork(path.join(__dirname, 'load', 'soak-worker.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      children.add(child)
      child.on('message', (m) => {
        counts[k] = m.done
        done = counts.reduce((a, b) => a + b, 0)
        if (warm === null && done >= args.ops / 10) warm = { ops: done, at: sampler.samples.length, seconds: (Date.now() - t0) / 1000 }
        if (m.final) finals.push(m.final)
      })
      child.on('exit', (code, sig) => {
        children.delete(child)
        if (code !== 0) summary.failures.push(`worker ${k} exited with ${code ?? sig}`)
        resolve()
      })
    })))
    const seconds = (Date.now() - t0) / 1000
    summary.seconds = +seconds.toFixed(1)
    summary.opsDone = finals.reduce((s, f) => s + f.ops, 0)
    summary.opsPerSecond = Math.round(summary.opsDone / seconds)
    check('allOpsRun', summary.opsDone === args.ops && finals.length === args.workers, `${summary.opsDone} of ${args.ops} ops reported by ${finals.length} workers`)
    check('daemonAlive', C.alive(pid), `the daemon died; ${C.lastWords(pid)}`)
  } finally {
    clearInterval(progress)
    sampler.stop()
    const notes = await C.unmount(o.mnt)
    check('cleanUnmount', notes.length === 0, notes.join('; '))
  }
  const bad = finals.flatMap(f => f.failures.map(x => `worker ${f.k}: ${x}`))
  check('onlyPlainFilesystemErrors', bad.length === 0, bad.slice(0, 20).join(' | '))
  summary.counts = {}
  summary.errnos = {}
  for (const f of finals) {
    for (const [op, n] of Object.entries(f.counts)) summary.counts[op] = (summary.counts[op] || 0) + n
    for (const [e, n] of Object.entries(f.errnos)) summary.errnos[e] = (summary.errnos[e] || 0) + n
  }
  const samples = sampler.samples
  const peak = sampler.peak
  summary.peak = { rssMiB: +(peak.rssKiB / 1024).toFixed(1), hwmMiB: +(peak.hwmKiB / 1024).toFixed(1), fds: peak.fds, samples: peak.samples }
  check('rssBounded', peak.hwmKiB <= args.maxRssMib * 1024, `VmHWM ${summary.peak.hwmMiB} MiB > ${args.maxRssMib} MiB`)
  const warmAt = warm !== null ? warm.at : Math.floor(samples.length / 10)
  const warmFds = Math.max(...samples.slice(0, Math.max(1, warmAt)).map(s => s.fds ?? 0))
  const laterFds = Math.max(0, ...samples.slice(warmAt).map(s => s.fds ?? 0))
  const rssAt = (i) => samples[Math.min(Math.max(0, i), samples.length - 1)].rssKiB
  summary.warmup = { ops: warm ? warm.ops : null, seconds: warm ? +warm.seconds.toFixed(1) : null, fds: warmFds, rssMiB: +(rssAt(warmAt) / 1024).toFixed(1) }
  summary.end = { fdsPeakAfterWarmup: laterFds, rssMiB: +(rssAt(samples.length - 1) / 1024).toFixed(1) }
  check('fdsFlatAfterWarmup', laterFds <= warmFds + args.fdSlack, `fds rose from ${warmFds} (warm-up) to ${laterFds}`)
  const leftovers = fs.readdirSync(path.join(o.work, 'work'))
  check('workdirEmpty', leftovers.length === 0, `left in workdir/work: ${leftovers.slice(0, 10).join(' ')}`)
  return o
}

main().then((o) => {
  summary.ok = summary.failures.length === 0 && Object.values(summary.checks).every(Boolean)
  if (summary.ok && !args.keep) C.removeTree(o.root)
  process.stdout.write(JSON.stringify(summary) + '\n')
  process.exit(summary.ok ? 0 : 1)
}, (err) => {
  summary.failures.push(`error: ${err && err.stack ? err.stack : err}`)
  process.stdout.write(JSON.stringify(summary) + '\n')
  process.exit(1)
})
