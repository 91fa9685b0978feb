'use strict'
// The layer set the stress run starts from, and the names its workers use.
// Both the parent (to build the layers and to check the end state) and every
// worker (to start its model) compute it from the worker count alone.
//
// Under the merged directory `shared/` (a directory in both lowers):
//   r<j>      shared files replaced whole (write a private temp, rename over), renamed among
//             themselves and unlinked by every writer; readers must always see one whole version
//   p<j>      shared files of exactly P_LEN bytes rewritten in place (pwrite at 0) by every writer
//   sd<j>     shared directories: every writer makes, removes and renames them and creates,
//             renames and unlinks files f<i> inside them
//   w<k>-f<j> files only writer k touches (so k can predict every result exactly)
//   w<k>-d<j> directories only writer k touches, with files g<i> (and lower x, y) inside
//   w<k>-tmp  writer k's temp name (never left behind)
// Some of each kind exist in the lower layers, so copy-ups, whiteouts, opaque
// directories and renames of merged directories (redirects) all happen.

const { makeContent } = require('./common')

const N_R = 8
const N_P = 6
const N_SD = 5
const N_SD_FILES = 6
const N_OWN_FILES = 9
const N_OWN_DIRS = 4
const N_OWN_DIR_FILES = 3
const P_LEN = 3000

/** Entries of the lower layers: { layer: 0 (top) | 1, path, type: 'dir' | 'file', content }. */
function lowerEntries (nWriters) {
  const out = []
  const dir = (layer, p) => out.push({ layer, path: p, type: 'dir' })
  const file = (layer, p, len) => out.push({ layer, path: p, type: 'file', content: makeContent(`lower${layer}:${p}`, len) })
  for (const layer of [1, 0]) dir(layer, 'shared')
  for (let j = 0; j < N_R; j += 2) file(1, `shared/r${j}`, 1500 + 97 * j)
  file(0, 'shared/r1', 700)
  file(0, 'shared/r0', 900) // shadows the bottom r0
  for (let j = 0; j < N_P; j += 2) file(j === 2 ? 0 : 1, `shared/p${j}`, P_LEN)
  dir(1, 'shared/sd0'); file(1, 'shared/sd0/f0', 800); file(1, 'shared/sd0/f1', 801)
  dir(1, 'shared/sd1'); file(1, 'shared/sd1/f0', 802)
  dir(0, 'shared/sd1'); file(0, 'shared/sd1/f1', 803) // sd1 merges two lowers
  dir(0, 'shared/sd2') // an empty lower dir
  for (let k = 0; k < nWriters; k++) {
    file(1, `shared/w${k}-f0`, 1000 + k)
    file(0, `shared/w${k}-f0`, 1200 + k) // shadows the bottom one
    file(0, `shared/w${k}-f1`, 1300 + k)
    file(1, `shared/w${k}-f3`, 5000 + k)
    file(1, `shared/w${k}-f6`, 100 + k)
    dir(1, `shared/w${k}-d0`); file(1, `shared/w${k}-d0/x`, 400 + k)
    dir(0, `shared/w${k}-d0`); file(0, `shared/w${k}-d0/y`, 450 + k) // a merged dir
    dir(1, `shared/w${k}-d2`); file(1, `shared/w${k}-d2/x`, 500 + k)
  }
  return out
}

/**
 * Writer k's model of its own names at the start: merged path -> { t: 'f', c } | { t: 'd', merged }.
 * `merged` marks a directory with lower parts (it renames like any other: redirect_dir=on).
 */
function initialModel (k, nWriters) {
  const model = new Map()
  const prefix = `shared/w${k}-`
  // Top layer first wins; later (lower) entries of the same path are shadowed.
  const entries = lowerEntries(nWriters).filter(e => e.path.startsWith(prefix)).sort((a, b) => a.layer - b.layer)
  for (const e of entries) {
    if (model.has(e.path)) continue
    model.set(e.path, e.type === 'dir' ? { t: 'd', merged: true } : { t: 'f', c: e.content })
  }
  return model
}

function ownFilePaths (k) {
  const out = []
  for (let j = 0; j < N_OWN_FILES; j++) out.push(`shared/w${k}-f${j}`)
  for (let j = 0; j < N_OWN_DIRS; j++) {
    for (let i = 0; i < N_OWN_DIR_FILES; i++) out.push(`shared/w${k}-d${j}/g${i}`)
  }
  out.push(`shared/w${k}-d0/x`, `shared/w${k}-d0/y`, `shared/w${k}-d2/x`)
  return out
}

function ownDirPaths (k) {
  return Array.from({ length: N_OWN_DIRS }, (_v, j) => `shared/w${k}-d${j}`)
}

/** Which kind a name directly under shared/ is, or null for a name nobody should ever see. */
function classify (name, nWriters) {
  let m
  if ((m = /^r(\d+)$/.exec(name)) && Number(m[1]) < N_R) return 'r'
  if ((m = /^p(\d+)$/.exec(name)) && Number(m[1]) < N_P) return 'p'
  if ((m = /^sd(\d+)$/.exec(name)) && Number(m[1]) < N_SD) return 'sd'
  if ((m = /^w(\d+)-[fd]\d+$/.exec(name)) && Number(m[1]) < nWriters) return 'own'
  return null
}

module.exports = {
  N_R, N_P, N_SD, N_SD_FILES, N_OWN_FILES, N_OWN_DIRS, N_OWN_DIR_FILES, P_LEN,
  lowerEntries, initialModel, ownFilePaths, ownDirPaths, classify,
}
