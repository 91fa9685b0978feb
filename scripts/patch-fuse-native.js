#!/usr/bin/env node
'use strict'
// Applies patches/fuse-native+2.2.6.patch to node_modules/fuse-native and
// rebuilds its addon (build/Release/fuse.node, which node-gyp-build prefers over
// the unpatched prebuilds/). Run as the root package's postinstall; idempotent.
//
//   node scripts/patch-fuse-native.js            patch + build if needed
//   node scripts/patch-fuse-native.js --force    rebuild even if up to date
//
// State lives in node_modules/fuse-native/.ovlfs-patch (a copy of the applied
// patch): if the patch file changes, the old one is reversed and the new one
// applied. Needs GNU patch, python3, make and a C compiler (node-gyp), and the
// libfuse2 runtime (libfuse.so.2) to load the addon. Node headers come from
// npm's nodedir setting or, failing that, from this node's install prefix.

const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')

const EXPECTED_VERSION = '2.2.6'
const ROOT = path.resolve(__dirname, '..')
const PATCH_FILE = path.join(ROOT, 'patches', `fuse-native+${EXPECTED_VERSION}.patch`)
const MARKER = '.ovlfs-patch'
const TAG = '[patch-fuse-native]'

class Failure extends Error {}

function log (msg) {
  process.stderr.write(`${TAG} ${msg}\n`)
}

function fail (msg) {
  throw new Failure(msg)
}

function run (cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, { encoding: 'utf8', ...opts })
  if (res.error) {
    if (res.error.code === 'ENOENT') fail(`'${cmd}' not found on PATH (needed to patch/build fuse-native)`)
    fail(`cannot run ${cmd}: ${res.error.message}`)
  }
  return res
}

function findPackageDir () {
  let pkgJson
  try {
    pkgJson = require.resolve('fuse-native/package.json', { paths: [ROOT] })
  } catch {
    fail(`fuse-native is not installed under ${ROOT}/node_modules (run npm ci)`)
  }
  const dir = path.dirname(pkgJson)
  const { version } = JSON.parse(fs.readFileSync(pkgJson, 'utf8'))
  if (version !== EXPECTED_VERSION) {
    fail(`fuse-native ${version} found in ${dir}, but ${path.relative(ROOT, PATCH_FILE)} is for ${EXPECTED_VERSION}; pin "fuse-native": "${EXPECTED_VERSION}" in package.json`)
  }
  return dir
}

function patchCmd (dir, patchPath, extra) {
  return run('patch', ['-p1', '--batch', '--fuzz=0', '--forward', '--no-backup-if-mismatch', '-r', '-', '-d', dir, '-i', patchPath, ...extra])
}

function reverseCmd (dir, patchPath, extra) {
  return run('patch', ['-p1', '--batch', '--fuzz=0', '-R', '--no-backup-if-mismatch', '-r', '-', '-d', dir, '-i', patchPath, ...extra])
}

// Returns true when the sources changed (a build is needed).
function ensurePatched (dir) {
  const wanted = fs.readFileSync(PATCH_FILE, 'utf8')
  const markerPath = path.join(dir, MARKER)
  const applied = fs.existsSync(markerPath) ? fs.readFileSync(markerPath, 'utf8') : null

  if (applied === wanted) {
    if (reverseCmd(dir, PATCH_FILE, ['--dry-run']).status === 0) return false
    log(`${MARKER} says patched, but the sources do not match; re-applying`)
    fs.unlinkSync(markerPath)
    return ensurePatched(dir)
  }

  if (applied !== null) {
    // An older version of our patch is applied: take it back out first.
    log('patch file changed since the last install: reversing the previously applied patch')
    const r = reverseCmd(dir, markerPath, [])
    if (r.status !== 0) {
      fail(`could not reverse the previously applied patch:\n${r.stdout}${r.stderr}\n` +
        `Reinstall a pristine copy: rm -rf ${path.relative(ROOT, dir)} && npm ci`)
    }
    fs.unlinkSync(markerPath)
  }

  const dry = patchCmd(dir, PATCH_FILE, ['--dry-run'])
  if (dry.status !== 0) {
    if (reverseCmd(dir, PATCH_FILE, ['--dry-run']).status === 0) {
      log('patch already applied (no marker); recording it')
      fs.writeFileSync(markerPath, wanted)
      return true
    }
    fail(`${path.relative(ROOT, PATCH_FILE)} does not apply to ${dir}:\n${dry.stdout}${dry.stderr}\n` +
      `Reinstall a pristine copy: rm -rf ${path.relative(ROOT, dir)} && npm ci`)
  }
  const res = patchCmd(dir, PATCH_FILE, [])
  if (res.status !== 0) fail(`patch failed:\n${res.stdout}${res.stderr}`)
  fs.writeFileSync(markerPath, wanted)
  log(`applied ${path.relative(ROOT, PATCH_FILE)}`)
  return true
}

function findNodeGyp () {
  const candidates = []
  // Set by npm for lifecycle scripts: its bundled node-gyp.
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp)
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] }))
  } catch {}
  // npm's bundled node-gyp, next to the npm that sits beside this node.
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  if (process.env.npm_execpath) {
    candidates.push(path.resolve(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  }
  const which = run('sh', ['-c', 'command -v npm'])
  if (which.status === 0 && which.stdout.trim()) {
    try {
      const npmBin = fs.realpathSync(which.stdout.trim())
      candidates.push(path.resolve(path.dirname(npmBin), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
    } catch {}
  }
  const found = candidates.find((c) => c && fs.existsSync(c))
  if (!found) fail(`node-gyp not found (looked in: ${candidates.join(', ')})`)
  return found
}

function nodedirArgs () {
  if (process.env.npm_config_nodedir) return [] // node-gyp reads it from the environment
  const prefix = process.config.variables && process.config.variables.node_prefix
  for (const dir of [prefix, path.resolve(path.dirname(process.execPath), '..')]) {
    if (dir && fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return [`--nodedir=${dir}`]
  }
  return [] // node-gyp falls back to its header cache / download
}

function build (dir) {
  const nodeGyp = findNodeGyp()
  const args = [nodeGyp, 'rebuild', ...nodedirArgs()]
  log(`building: ${path.basename(process.execPath)} ${args.map((a) => path.isAbsolute(a) ? path.basename(a) : a).join(' ')} (in ${dir})`)
  const res = run(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  if (res.status !== 0) {
    fail(`node-gyp rebuild failed (exit ${res.status}):\n${res.stdout}${res.stderr}\n` +
      'Needs python3, make and a C compiler (apt-get install build-essential python3).')
  }
}

// Loads the module the way fuse-native does, in a separate process.
function verify (dir) {
  const code = `
    const path = require('path')
    const dir = ${JSON.stringify(dir)}
    const gypBuild = require(require.resolve('node-gyp-build', { paths: [dir] }))
    const picked = gypBuild.path(dir)
    const want = path.join(dir, 'build', 'Release', 'fuse.node')
    if (picked !== want) throw new Error('node-gyp-build picks ' + picked + ' instead of ' + want)
    const b = gypBuild(dir)
    if (typeof b.fuse_native_get_context !== 'function') throw new Error('built addon lacks fuse_native_get_context')
    if (b.op_destroy !== 34 || typeof b.fuse_native_signal_destroy !== 'function') throw new Error('built addon lacks the destroy op')
    if (b.fuse_native_get_context() !== null) throw new Error('fuse_native_get_context() outside a request should be null')
    const Fuse = require(dir)
    if (typeof Fuse.context !== 'function' || Fuse.UTIME_OMIT !== (1 << 30) - 2) throw new Error('index.js is not the patched one')
  `
  const res = run(process.execPath, ['-e', code])
  if (res.status !== 0) {
    const hint = /libfuse\.so/.test(res.stderr) ? '\nInstall the libfuse2 runtime (apt-get install libfuse2).' : ''
    fail(`the rebuilt fuse-native addon does not load correctly:\n${res.stderr}${hint}`)
  }
}

function main () {
  const force = process.argv.includes('--force')
  // npm runs the root postinstall even for `npm install --package-lock-only`
  // (and --dry-run), when nothing is installed: nothing to patch then.
  if (process.env.npm_config_package_lock_only === 'true' || process.env.npm_config_dry_run === 'true') {
    log('lockfile-only / dry-run install: skipped')
    return
  }
  if (!fs.existsSync(PATCH_FILE)) fail(`missing ${PATCH_FILE}`)
  const dir = findPackageDir()
  const changed = ensurePatched(dir)
  const addon = path.join(dir, 'build', 'Release', 'fuse.node')
  const stale = !fs.existsSync(addon) ||
    fs.statSync(addon).mtimeMs < fs.statSync(path.join(dir, 'fuse-native.c')).mtimeMs
  if (changed || stale || force) {
    build(dir)
  } else {
    log('already patched and built')
  }
  verify(dir)
  log(`ok: ${path.relative(ROOT, addon)}`)
}

try {
  main()
} catch (err) {
  if (err instanceof Failure) {
    log(`ERROR: ${err.message}`)
  } else {
    log(`ERROR: ${err && err.stack ? err.stack : err}`)
  }
  process.exit(1)
}
