'use strict'
// Builds the benchmark's data set once and caches it under CACHE/<scale>/.
// A data set is complete when CACHE/<scale>/manifest.json exists with the
// current DATASET_VERSION; it is built in CACHE/<scale>.building-<pid> and
// renamed into place at the end, so an interrupted build is never reused.
//
// Layout (lower layers listed top first, as in lowerdir=):
//   root/l3 root/l2 root/l1   the container-like root filesystem
//       l1: Debian minbase (debootstrap), or a bounded copy of /usr, or (quick) a synthetic tree
//       l2: + ~5,000 small files (opt/app), ~200 files of l1 modified
//       l3: a subtree of l1 deleted by a whiteout (char 0/0), big/large.bin (1 GiB), big/append.bin (256 MiB)
//       srv/bigdir: a 20,000-entry directory spread over l1..l3 (shadowed names, whiteouts)
//   dirbig/l3..l1             dir/: the same construction with 200,000 entries
//   stack40/l01..l40          40 layers shadowing d/s* and t/*/s* layer over layer; d/b* only in l40
//   stack2/l1 l2              the same d/ with two layers
//   untar.tar                 5,000 small files for the untar workload

const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const { log, q, runShell, sh, removeTree, alive, mountsUnder, mulberry32 } = require('./lib')

const DATASET_VERSION = 1

const SCALES = {
  full: {
    base: 'debootstrap',
    addFiles: 5000,
    modify: 200,
    largeSize: 1024 * 1024 * 1024,
    appendSize: 256 * 1024 * 1024,
    dirSmall: 20000,
    dirBig: 200000,
    stackDepth: 40,
    stackShadow: 200,
    statCount: 1000,
    treeDirs: 20,
    treeShadow: 50,
    treeUnique: 5,
    untarFiles: 5000,
  },
  quick: {
    base: 'synthetic',
    addFiles: 200,
    modify: 20,
    largeSize: 16 * 1024 * 1024,
    appendSize: 4 * 1024 * 1024,
    dirSmall: 1000,
    dirBig: 10000,
    stackDepth: 40,
    stackShadow: 20,
    statCount: 100,
    treeDirs: 4,
    treeShadow: 5,
    treeUnique: 2,
    untarFiles: 200,
  },
}

/** Directories below which building processes (debootstrap) may have mounted; cleaned on exit. */
const building = new Set()

// ---------------------------------------------------------------- helpers

const TEXT = crypto.randomBytes(3 << 19).toString('base64').replace(/(.{76})/g, '$1\n') // ~2 MiB of text

/** Small-file content: log-uniform size between 100 B and 16 KiB. */
function smallContent (rand) {
  const size = Math.floor(Math.exp(Math.log(100) + rand() * (Math.log(16384) - Math.log(100))))
  const off = Math.floor(rand() * (TEXT.length - size))
  return TEXT.slice(off, off + size)
}

const pad = (n, w) => String(n).padStart(w, '0')

/** mkdir -p of rel below root, each new directory taking mode/owner/times from the first ref root that has it. */
function mkdirLike (root, rel, refs = []) {
  const parts = rel.split('/').filter(p => p !== '')
  let cur = ''
  for (const p of parts) {
    cur = cur === '' ? p : cur + '/' + p
    const target = path.join(root, cur)
    if (fs.existsSync(target)) continue
    fs.mkdirSync(target)
    const ref = refs.map(r => path.join(r, cur)).find(r => { try { return fs.lstatSync(r).isDirectory() } catch { return false } })
    if (ref !== undefined) {
      const st = fs.lstatSync(ref)
      fs.chmodSync(target, st.mode & 0o7777)
      fs.chownSync(target, st.uid, st.gid)
      fs.utimesSync(target, st.atime, st.mtime)
    } else {
      fs.chmodSync(target, 0o755)
    }
  }
}

function touch (p) {
  fs.closeSync(fs.openSync(p, 'w'))
}

/** Create overlay whiteouts (char device 0/0) at these absolute paths. */
function mknodWhiteouts (paths) {
  if (paths.length === 0) return
  const list = path.join(path.dirname(paths[0]), `.whiteouts-${process.pid}`)
  fs.writeFileSync(list, paths.join('\n') + '\n')
  sh('bash', ['-c', `while IFS= read -r f; do mknod "$f" c 0 0 || exit 1; done < ${q(list)}`])
  fs.rmSync(list)
}

/** Preorder walk: yields [rel, Dirent-like stat] for every entry below root (not root itself). */
function * walk (root, rel = '') {
  let ents
  try { ents = fs.readdirSync(path.join(root, rel), { withFileTypes: true }) } catch { return }
  ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const e of ents) {
    const r = rel === '' ? e.name : rel + '/' + e.name
    yield [r, e]
    if (e.isDirectory()) yield * walk(root, r)
  }
}

function countEntries (dir) {
  let n = 0
  for (const _ of walk(dir)) n++ // eslint-disable-line no-unused-vars
  return n
}

/** Write `size` bytes of real (random) data, not a sparse file. */
function writeRandomFile (p, size) {
  const chunk = 8 << 20
  const src = fs.openSync('/dev/urandom', 'r')
  const dst = fs.openSync(p, 'w', 0o644)
  const buf = Buffer.alloc(chunk)
  let left = size
  while (left > 0) {
    const n = Math.min(chunk, left)
    let got = 0
    while (got < n) got += fs.readSync(src, buf, got, n - got, null)
    let put = 0
    while (put < n) put += fs.writeSync(dst, buf, put, n - put)
    left -= n
  }
  fs.fsyncSync(dst)
  fs.closeSync(dst)
  fs.closeSync(src)
}

/**
 * A directory of n entries spread over three layers (top first in `layers`):
 * the bottom has half, the middle adds 30 % and shadows 5 % of the bottom's
 * names, the top adds 22.5 % and whites out 2.5 % of the bottom's names.
 * Merged: exactly n entries.
 */
function spreadDir (layers, rel, n, refs) {
  const [l3, l2, l1] = layers
  const n1 = n / 2
  const n2 = n * 0.3
  const n2shadow = n * 0.05
  const n3 = n * 0.225
  const n3wh = n * 0.025
  if (![n1, n2, n2shadow, n3, n3wh].every(Number.isInteger)) throw new Error(`spreadDir: ${n} does not split evenly`)
  const name = (i) => 'e' + pad(i, 7)
  for (const l of [l1, l2, l3]) mkdirLike(l, rel, refs)
  for (let i = 0; i < n1; i++) touch(path.join(l1, rel, name(i)))
  for (let i = 0; i < n2; i++) touch(path.join(l2, rel, name(n1 + i)))
  for (let i = 0; i < n2shadow; i++) fs.writeFileSync(path.join(l2, rel, name(i * 10)), 'shadow\n')
  for (let i = 0; i < n3; i++) touch(path.join(l3, rel, name(n1 + n2 + i)))
  mknodWhiteouts(Array.from({ length: n3wh }, (_, i) => path.join(l3, rel, name(i * 10 + 5))))
}

function aptSource () {
  const files = ['/etc/apt/sources.list']
  try {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d').sort()) files.push(path.join('/etc/apt/sources.list.d', f))
  } catch {}
  const good = (uri, suite) => !/security|updates|backports|proposed/.test(suite) && !/security/.test(uri)
  for (const file of files) {
    let text
    try { text = fs.readFileSync(file, 'utf8') } catch { continue }
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = {}
        for (const line of stanza.split('\n')) {
          if (line.startsWith('#')) continue
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line)
          if (m) fields[m[1].toLowerCase()] = m[2].trim()
        }
        if (!(fields.types || '').split(/\s+/).includes('deb')) continue
        for (const uri of (fields.uris || '').split(/\s+/).filter(Boolean)) {
          for (const suite of (fields.suites || '').split(/\s+/).filter(Boolean)) {
            if (good(uri, suite)) return { mirror: uri, suite }
          }
        }
      }
    } else if (file.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line)
        if (m && good(m[1], m[2])) return { mirror: m[1], suite: m[2] }
      }
    }
  }
  return null
}

// ---------------------------------------------------------------- base layer

async function baseDebootstrap (l1) {
  const src = aptSource()
  if (src === null) throw new Error('no Debian mirror in /etc/apt/sources.list*')
  const which = sh('bash', ['-c', 'command -v debootstrap'], { allowFail: true })
  if (which.status !== 0) throw new Error('debootstrap is not installed (apt-get install debootstrap)')
  log(`bench: debootstrap --variant=minbase ${src.suite} (${src.mirror}); this takes a minute or two, once`)
  const r = await runShell(`debootstrap --variant=minbase ${q(src.suite)} ${q(l1)} ${q(src.mirror)}`, { timeoutMs: 40 * 60_000 })
  for (const m of mountsUnder(l1)) sh('umount', ['-l', m], { allowFail: true })
  if (r.code !== 0) throw new Error(`debootstrap failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.slice(-1500)}`)
  // Container-like: no downloaded packages left behind (apt-get clean).
  sh('bash', ['-c', `rm -f ${q(l1)}/var/cache/apt/archives/*.deb ${q(l1)}/var/cache/apt/*.bin`], { allowFail: true })
  return { kind: 'debootstrap', detail: `Debian ${src.suite} minbase from ${src.mirror}` }
}

/** Fallback: a bounded copy of /usr (the host's can be many GiB). */
function baseUsrCopy (l1) {
  const maxEntries = 40000
  const maxBytes = 800 << 20
  const list = []
  let bytes = 0
  const usrDev = fs.statSync('/usr').dev
  const order = ['share', 'bin', 'sbin', 'lib', 'libexec', 'include', 'local']
  outer:
  for (const top of order) {
    if (!fs.existsSync(path.join('/usr', top))) continue
    list.push('usr/' + top)
    for (const [rel] of walk('/usr/' + top)) {
      const full = '/usr/' + top + '/' + rel
      let st
      try { st = fs.lstatSync(full) } catch { continue }
      if (st.dev !== usrDev) continue
      if (st.isFile() && st.size > 16 << 20) continue
      if (!st.isFile() && !st.isDirectory() && !st.isSymbolicLink()) continue
      list.push(full.slice(1))
      bytes += st.isFile() ? st.size : 0
      if (list.length >= maxEntries || bytes >= maxBytes) break outer
    }
  }
  const listFile = path.join(path.dirname(l1), 'usr-list')
  fs.writeFileSync(listFile, list.join('\0') + '\0')
  sh('bash', ['-c', `set -o pipefail; tar -C / --no-recursion --null -T ${q(listFile)} -cf - | tar -C ${q(l1)} -xf -`])
  fs.rmSync(listFile)
  for (const d of ['etc', 'var', 'var/lib', 'tmp', 'srv', 'opt', 'root', 'home']) mkdirLike(l1, d)
  fs.chmodSync(path.join(l1, 'tmp'), 0o1777)
  return { kind: 'usr-copy', detail: `copy of /usr (first ${list.length} entries, ${(bytes / 2 ** 20).toFixed(0)} MiB)` }
}

function baseSynthetic (l1, rand) {
  const put = (rel, content, mode = 0o644) => {
    mkdirLike(l1, path.dirname(rel))
    fs.writeFileSync(path.join(l1, rel), content, { mode })
  }
  for (const lang of ['de', 'fr', 'es', 'it', 'ja', 'pt', 'ru', 'sv', 'zh_CN', 'nl']) {
    for (let i = 0; i < 5; i++) put(`usr/share/locale/${lang}/LC_MESSAGES/pkg${i}.mo`, smallContent(rand))
  }
  for (const area of ['Africa', 'America', 'Asia', 'Europe', 'Pacific']) {
    for (let i = 0; i < 20; i++) put(`usr/share/zoneinfo/${area}/City${pad(i, 2)}`, smallContent(rand))
  }
  for (let i = 0; i < 50; i++) put(`usr/bin/tool${pad(i, 2)}`, smallContent(rand), 0o755)
  for (let i = 0; i < 100; i++) put(`usr/lib/x86_64-linux-gnu/lib${pad(i, 3)}.so.1`, smallContent(rand))
  for (let i = 0; i < 30; i++) put(`etc/conf${pad(i, 2)}.conf`, smallContent(rand))
  for (let i = 0; i < 50; i++) put(`var/lib/dpkg/info/pkg${pad(i, 2)}.list`, smallContent(rand))
  for (const d of ['tmp', 'srv', 'opt', 'root', 'home', 'dev', 'proc']) mkdirLike(l1, d)
  fs.chmodSync(path.join(l1, 'tmp'), 0o1777)
  return { kind: 'synthetic', detail: 'synthetic ~400-file tree (--quick)' }
}

/** The first candidate that is a directory with at least `min` entries below it, else the largest dir under usr/share. */
function pickDir (l1, candidates, exclude, min) {
  const ok = (rel) => !exclude.some(x => rel === x || rel.startsWith(x + '/') || x.startsWith(rel + '/'))
  for (const c of candidates) {
    try {
      if (fs.lstatSync(path.join(l1, c)).isDirectory() && ok(c) && countEntries(path.join(l1, c)) >= min) return c
    } catch {}
  }
  let best = null
  let bestN = -1
  for (const e of fs.readdirSync(path.join(l1, 'usr/share'), { withFileTypes: true })) {
    const rel = 'usr/share/' + e.name
    if (!e.isDirectory() || !ok(rel)) continue
    const n = countEntries(path.join(l1, rel))
    if (n > bestN) { best = rel; bestN = n }
  }
  if (best === null) throw new Error('no directory to delete found in the base layer')
  return best
}

// ---------------------------------------------------------------- the build

function manifestOk (dsDir, scaleName) {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dsDir, 'manifest.json'), 'utf8'))
    return m.version === DATASET_VERSION && m.scale === scaleName && m.complete === true ? m : null
  } catch { return null }
}

async function ensureDataset (cacheDir, scaleName, { base } = {}) {
  const scale = SCALES[scaleName]
  const dsDir = path.join(cacheDir, scaleName)
  fs.mkdirSync(cacheDir, { recursive: true })
  const have = manifestOk(dsDir, scaleName)
  if (have) {
    log(`bench: using cached data set ${dsDir} (built ${have.created})`)
    return { dir: dsDir, manifest: have }
  }
  // Leftovers of builds whose process is gone, and an incomplete data set.
  for (const e of fs.readdirSync(cacheDir)) {
    const m = new RegExp(`^${scaleName}\\.building-(\\d+)$`).exec(e)
    if (m && !alive(Number(m[1]))) removeTree(path.join(cacheDir, e))
  }
  if (fs.existsSync(dsDir) && !removeTree(dsDir)) throw new Error(`cannot remove the incomplete data set ${dsDir}`)

  const t0 = Date.now()
  const bdir = `${dsDir}.building-${process.pid}`
  removeTree(bdir)
  building.add(bdir)
  fs.mkdirSync(bdir, { recursive: true })
  const rand = mulberry32(20240605)
  const R = (rel) => path.join(bdir, rel)
  const rootLayers = ['root/l3', 'root/l2', 'root/l1']
  for (const l of rootLayers) fs.mkdirSync(R(l), { recursive: true })
  const [L3, L2, L1] = rootLayers.map(R)

  // Layer 1: the base.
  let baseInfo
  const baseKind = base ?? scale.base
  if (baseKind === 'debootstrap') {
    try {
      baseInfo = await baseDebootstrap(L1)
    } catch (err) {
      log(`bench: ${err.message.split('\n')[0]}; falling back to a copy of /usr`)
      if (!removeTree(L1)) throw new Error('cannot clean up after debootstrap')
      fs.mkdirSync(L1)
      baseInfo = baseUsrCopy(L1)
    }
  } else if (baseKind === 'usr') {
    baseInfo = baseUsrCopy(L1)
  } else {
    baseInfo = baseSynthetic(L1, rand)
  }
  for (const d of ['srv', 'opt']) mkdirLike(L1, d)
  const baseEntries = countEntries(L1)
  log(`bench: base layer: ${baseInfo.detail}, ${baseEntries} entries`)

  const whiteoutDir = pickDir(L1, ['usr/share/locale', 'usr/share/man', 'usr/share/doc', 'usr/share/i18n'], [], 20)
  const rmDir = pickDir(L1, ['usr/share/zoneinfo', 'usr/share/perl5', 'usr/share/man', 'usr/share/doc', 'usr/lib/x86_64-linux-gnu/perl-base'], [whiteoutDir], 20)
  const rmDirEntries = countEntries(R('root/l1/' + rmDir))

  // Layer 2: ~5,000 new small files, ~200 modified files of layer 1.
  log('bench: layer 2 (new and modified files)')
  for (let i = 0; i < scale.addFiles; i++) {
    const dir = `opt/app/lib/pkg${pad(Math.floor(i / 100), 3)}`
    if (i % 100 === 0) mkdirLike(L2, dir, [L1])
    fs.writeFileSync(path.join(L2, dir, `mod_${pad(i % 100, 3)}.py`), smallContent(rand))
  }
  const candidates = []
  for (const [rel, e] of walk(L1)) {
    if (!e.isFile() || rel === whiteoutDir || rel.startsWith(whiteoutDir + '/')) continue
    candidates.push(rel)
  }
  const modified = []
  const step = candidates.length / scale.modify
  for (let i = 0; i < scale.modify && i * step < candidates.length; i++) {
    const rel = candidates[Math.floor(i * step)]
    const st = fs.lstatSync(path.join(L1, rel))
    if (st.size > 1 << 20) continue
    mkdirLike(L2, path.dirname(rel), [L1])
    const dst = path.join(L2, rel)
    fs.writeFileSync(dst, Buffer.concat([fs.readFileSync(path.join(L1, rel)), Buffer.from('\n# modified in layer 2\n')]))
    fs.chmodSync(dst, st.mode & 0o7777)
    fs.chownSync(dst, st.uid, st.gid)
    modified.push(rel)
  }

  // Layer 3: a whiteout over a subtree, the two big files.
  log('bench: layer 3 (whiteout, big files of real random data)')
  mkdirLike(L3, path.dirname(whiteoutDir), [L2, L1])
  mknodWhiteouts([path.join(L3, whiteoutDir)])
  mkdirLike(L3, 'big')
  writeRandomFile(path.join(L3, 'big/large.bin'), scale.largeSize)
  writeRandomFile(path.join(L3, 'big/append.bin'), scale.appendSize)

  // The 20,000-entry directory over the three layers.
  log(`bench: ${scale.dirSmall}-entry directory`)
  spreadDir([L3, L2, L1], 'srv/bigdir', scale.dirSmall, [L1])

  // The 200,000-entry directory: its own three-layer stack.
  log(`bench: ${scale.dirBig}-entry directory`)
  const bigLayers = ['dirbig/l3', 'dirbig/l2', 'dirbig/l1']
  for (const l of bigLayers) fs.mkdirSync(R(l), { recursive: true })
  spreadDir(bigLayers.map(R), 'dir', scale.dirBig)

  // The 40-layer stack (l01 on top) and the 2-layer one.
  log(`bench: ${scale.stackDepth}-layer stack`)
  const stackLayers = Array.from({ length: scale.stackDepth }, (_, i) => `stack40/l${pad(i + 1, 2)}`)
  const whiteouts = []
  stackLayers.forEach((l, i) => {
    const k = i + 1
    const root = R(l)
    fs.mkdirSync(path.join(root, 'd'), { recursive: true })
    for (let s = 0; s < scale.stackShadow; s++) fs.writeFileSync(path.join(root, 'd', 's' + pad(s, 4)), `layer ${k}\n`)
    for (let t = 0; t < scale.treeDirs; t++) {
      const td = path.join(root, 't', 'd' + pad(t, 2))
      fs.mkdirSync(td, { recursive: true })
      for (let s = 0; s < scale.treeShadow; s++) fs.writeFileSync(path.join(td, 's' + pad(s, 3)), `layer ${k}\n`)
      for (let u = 0; u < scale.treeUnique; u++) fs.writeFileSync(path.join(td, `u${pad(k, 2)}-${u}`), `layer ${k}\n`)
      if (k % 2 === 1 && k < scale.stackDepth) whiteouts.push(path.join(td, `u${pad(k + 1, 2)}-0`))
    }
    if (k === scale.stackDepth) {
      for (let b = 0; b < scale.statCount; b++) fs.writeFileSync(path.join(root, 'd', 'b' + pad(b, 4)), 'bottom\n')
    }
  })
  mknodWhiteouts(whiteouts)
  const stack2Layers = ['stack2/l1', 'stack2/l2']
  stack2Layers.forEach((l, i) => {
    const root = R(l)
    fs.mkdirSync(path.join(root, 'd'), { recursive: true })
    for (let s = 0; s < scale.stackShadow; s++) fs.writeFileSync(path.join(root, 'd', 's' + pad(s, 4)), `layer ${i + 1}\n`)
    if (i === 1) for (let b = 0; b < scale.statCount; b++) fs.writeFileSync(path.join(root, 'd', 'b' + pad(b, 4)), 'bottom\n')
  })

  // The untar tarball.
  log('bench: untar tarball')
  const usrc = R('untar-src')
  for (let i = 0; i < scale.untarFiles; i++) {
    const dir = path.join(usrc, `pkg${pad(Math.floor(i / 100), 3)}`)
    if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, `file_${pad(i % 100, 3)}.txt`), smallContent(rand))
  }
  sh('tar', ['-C', usrc, '-cf', R('untar.tar'), '.'])
  removeTree(usrc)

  const manifest = {
    version: DATASET_VERSION,
    scale: scaleName,
    complete: true,
    created: new Date().toISOString(),
    buildSeconds: Math.round((Date.now() - t0) / 1000),
    base: baseInfo,
    params: scale,
    stacks: {
      root: rootLayers,
      dirbig: bigLayers,
      stack40: stackLayers,
      stack2: stack2Layers,
    },
    root: {
      baseEntries,
      whiteoutDir,
      rmDir,
      rmDirEntries,
      modified: modified.length,
      added: scale.addFiles,
      bigDir: 'srv/bigdir',
      bigDirEntries: scale.dirSmall,
      largeFile: 'big/large.bin',
      largeSize: scale.largeSize,
      appendFile: 'big/append.bin',
      appendSize: scale.appendSize,
      tarExclude: './big',
    },
    dirbig: { dir: 'dir', entries: scale.dirBig },
    stats: { dir: 'd', bottomPrefix: 'b', missingPrefix: 'n', count: scale.statCount },
    untar: { tarball: 'untar.tar', files: scale.untarFiles },
  }
  fs.writeFileSync(path.join(bdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
  sh('sync', [])
  fs.renameSync(bdir, dsDir)
  building.delete(bdir)
  log(`bench: data set built in ${manifest.buildSeconds}s: ${dsDir}`)
  return { dir: dsDir, manifest }
}

/**
 * Two halves of the root tree for the concurrent tars, as lists of top- and
 * second-level paths (tar -T), balanced by entries + bytes/64 KiB over the
 * union of the layers. Without big/ (as the whole-tree tar) and without the
 * 20,000-entry directory of empty files, which would otherwise be one
 * "half" on its own.
 */
function tarHalves (dsDir, manifest) {
  const layers = manifest.stacks.root.map(l => path.join(dsDir, l))
  const excluded = [manifest.root.whiteoutDir, 'big', manifest.root.bigDir]
  const under = (rel, x) => rel === x || rel.startsWith(x + '/')
  const weights = new Map()
  const whiteouts = new Set()
  for (const l of layers) {
    for (const [rel, e] of walk(l)) {
      if (excluded.some(x => under(rel, x))) continue
      const parts = rel.split('/')
      const key = parts.length >= 2 ? parts[0] + '/' + parts[1] : parts[0]
      let w = 1
      if (e.isFile() || e.isCharacterDevice()) {
        const st = fs.lstatSync(path.join(l, rel))
        if (e.isCharacterDevice() && st.rdev === 0 && parts.length <= 2) whiteouts.add(rel)
        w += st.size / 65536
      }
      weights.set(key, (weights.get(key) ?? 0) + w)
    }
  }
  const keys = [...weights.keys()]
  const items = [...weights.entries()].filter(([k]) => {
    if (whiteouts.has(k)) return false
    // A top-level directory with children is represented by them.
    return k.includes('/') || !keys.some(o => o.startsWith(k + '/'))
  }).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const halves = [[], []]
  const hw = [0, 0]
  for (const [k, w] of items) {
    const i = hw[0] <= hw[1] ? 0 : 1
    halves[i].push(k)
    hw[i] += w
  }
  return { halves, weights: hw.map(Math.round) }
}

/** For the exit handlers: unmount what a dying debootstrap left and delete unfinished builds. */
function cleanupBuilding () {
  for (const b of building) removeTree(b)
  building.clear()
}

module.exports = { ensureDataset, cleanupBuilding, tarHalves, SCALES, DATASET_VERSION }
