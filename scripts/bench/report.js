'use strict'
// Medians, ratios, the table (Markdown), the linearity numbers. Reports only:
// nothing here decides pass or fail.

const { IMPLS } = require('./mounts')

function median (xs) {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function summarize (records, workloads, manifest) {
  const out = {}
  for (const w of workloads) {
    out[w.name] = {}
    for (const impl of IMPLS) {
      const rs = records.filter(r => r.workload === w.name && r.impl === impl)
      if (rs.length === 0) continue
      const ok = rs.filter(r => r.ok)
      const t = ok.map(r => r.seconds)
      const s = {
        runs: rs.length,
        ok: ok.length,
        failed: rs.length - ok.length,
        median: median(t),
        min: t.length ? Math.min(...t) : null,
        max: t.length ? Math.max(...t) : null,
      }
      if (w.bytes) {
        const bytes = w.bytes(manifest)
        s.mbpsMedian = s.median ? bytes / 1e6 / s.median : null
      }
      if (impl !== 'kernel') {
        const rss = rs.map(r => r.peakRssKiB).filter(x => x != null)
        const cpu = ok.map(r => r.cpuSeconds).filter(x => x != null)
        const cpuTotal = rs.map(r => r.cpuTotalSeconds).filter(x => x != null)
        s.peakRssMiBMedian = rss.length ? median(rss) / 1024 : null
        s.peakRssMiBMax = rss.length ? Math.max(...rss) / 1024 : null
        s.cpuSecondsMedian = cpu.length ? median(cpu) : null
        s.cpuTotalSecondsMedian = cpuTotal.length ? median(cpuTotal) : null
      }
      out[w.name][impl] = s
    }
    const o = out[w.name].ovlfs
    const f = out[w.name]['fuse-overlayfs']
    const k = out[w.name].kernel
    out[w.name].ratios = {
      ovlfsToFuseOverlayfs: o && f && o.median && f.median ? o.median / f.median : null,
      ovlfsToKernel: o && k && o.median && k.median ? o.median / k.median : null,
      fuseOverlayfsToKernel: f && k && f.median && k.median ? f.median / k.median : null,
    }
  }
  const rs = workloads.filter(w => w.core).map(w => out[w.name].ratios.ovlfsToFuseOverlayfs).filter(x => x)
  const geomean = rs.length ? Math.exp(rs.reduce((a, x) => a + Math.log(x), 0) / rs.length) : null
  const rk = workloads.filter(w => w.core).map(w => out[w.name].ratios.fuseOverlayfsToKernel).filter(x => x)
  const geomeanFk = rk.length ? Math.exp(rk.reduce((a, x) => a + Math.log(x), 0) / rk.length) : null
  return {
    perWorkload: out,
    geomeanOvlfsToFuseOverlayfs: geomean,
    geomeanOver: rs.length,
    geomeanFuseOverlayfsToKernel: geomeanFk,
  }
}

function linearity (summary, manifest) {
  const get = (w, impl) => summary.perWorkload[w]?.[impl]?.median ?? null
  const out = {}
  for (const impl of IMPLS) {
    const e = {}
    const failed = (w) => { const s = summary.perWorkload[w]?.[impl]; return s != null && s.ok === 0 }
    const pair = (small, nSmall, big, nBig) => {
      const a = get(small, impl)
      const b = get(big, impl)
      if (a != null && b == null && failed(big)) return { smallPerEntryUs: a / nSmall * 1e6, bigPerEntryUs: null, ratio: null, bigFailed: true }
      if (a == null || b == null) return null
      return { smallPerEntryUs: a / nSmall * 1e6, bigPerEntryUs: b / nBig * 1e6, ratio: (b / nBig) / (a / nSmall) }
    }
    e.walkFind = pair('find-20k-cold', manifest.root.bigDirEntries, 'find-200k-cold', manifest.dirbig.entries)
    e.walkLs = pair('ls-20k-cold', manifest.root.bigDirEntries, 'ls-200k-cold', manifest.dirbig.entries)
    const s40 = get('stat-bottom-40', impl)
    const s2 = get('stat-bottom-2', impl)
    e.statDepth = s40 != null && s2 != null
      ? { stat40Ms: s40 * 1e3, stat2Ms: s2 * 1e3, ratio: s40 / s2 }
      : null
    out[impl] = e
  }
  return out
}

const fmt = (x) => x == null ? '–' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x >= 0.01 ? x.toFixed(3) : x.toFixed(4)
const fmtR = (x) => x == null ? '–' : x.toFixed(2) + 'x'
const fmtM = (x) => x == null ? '–' : x.toFixed(0)

function cell (s) {
  if (!s) return '–'
  if (s.ok === 0) return `FAILED (${s.failed}/${s.runs})`
  const range = s.ok > 1 ? ` (${fmt(s.min)}–${fmt(s.max)})` : ''
  return `${fmt(s.median)}${range}${s.failed ? ` ${s.failed}/${s.runs} failed` : ''}`
}

function table (summary, workloads, manifest, lin) {
  const L = []
  L.push('| workload | kernel s | fuse-overlayfs s | ovlfs s | ovlfs/fuse-overlayfs | ovlfs/kernel | peak RSS MiB fuse-overlayfs / ovlfs | CPU s fuse-overlayfs / ovlfs |')
  L.push('|---|---|---|---|---|---|---|---|')
  for (const w of workloads) {
    const p = summary.perWorkload[w.name]
    if (!p) continue
    const f = p['fuse-overlayfs']
    const o = p.ovlfs
    L.push(`| ${w.name}${w.core ? '' : ' †'} | ${cell(p.kernel)} | ${cell(f)} | ${cell(o)} | ${fmtR(p.ratios.ovlfsToFuseOverlayfs)} | ${fmtR(p.ratios.ovlfsToKernel)} | ` +
      `${fmtM(f?.peakRssMiBMax)} / ${fmtM(o?.peakRssMiBMax)} | ${fmt(f?.cpuSecondsMedian)} / ${fmt(o?.cpuSecondsMedian)} |`)
  }
  L.push('')
  L.push(`Geometric mean of ovlfs/fuse-overlayfs over the ${summary.geomeanOver} issue workloads: **${fmtR(summary.geomeanOvlfsToFuseOverlayfs)}**` +
    ` (fuse-overlayfs/kernel: ${fmtR(summary.geomeanFuseOverlayfsToKernel)}). † = extra, not in the geometric mean.`)
  const tp = workloads.filter(w => w.bytes && summary.perWorkload[w.name])
  if (tp.length) {
    L.push('')
    L.push('Throughput (MB/s, medians): ' + tp.map(w => {
      const p = summary.perWorkload[w.name]
      return `${w.name}: ` + IMPLS.map(i => `${i} ${p[i]?.mbpsMedian != null ? p[i].mbpsMedian.toFixed(0) : '–'}`).join(', ')
    }).join('; '))
  }
  L.push('')
  L.push('Linearity (report only):')
  for (const impl of IMPLS) {
    const e = lin[impl]
    const parts = []
    const us = (x, d) => x == null ? 'FAILED' : x.toFixed(d) + ' µs'
    if (e.walkFind) parts.push(`find per entry ${us(e.walkFind.smallPerEntryUs, 1)} (${manifest.root.bigDirEntries}) vs ${us(e.walkFind.bigPerEntryUs, 1)} (${manifest.dirbig.entries}) = ${fmtR(e.walkFind.ratio)}`)
    if (e.walkLs) parts.push(`ls -f per entry ${us(e.walkLs.smallPerEntryUs, 2)} vs ${us(e.walkLs.bigPerEntryUs, 2)} = ${fmtR(e.walkLs.ratio)}`)
    if (e.statDepth) parts.push(`stat 40 layers ${e.statDepth.stat40Ms.toFixed(1)} ms vs 2 layers ${e.statDepth.stat2Ms.toFixed(1)} ms = ${fmtR(e.statDepth.ratio)}`)
    L.push(`- ${impl}: ${parts.length ? parts.join('; ') : '–'}`)
  }
  return L.join('\n')
}

/** Runs whose output count differs from the kernel's in the same run (or from the expected count). */
function mismatches (records) {
  const out = []
  for (const r of records) {
    if (!r.ok || r.impl === 'kernel' || r.output == null) continue
    const k = records.find(x => x.workload === r.workload && x.run === r.run && x.impl === 'kernel' && x.ok)
    if (k && k.output != null && k.output !== r.output) out.push({ workload: r.workload, run: r.run, impl: r.impl, output: r.output, kernel: k.output })
  }
  return out
}

module.exports = { summarize, linearity, table, mismatches, median }
