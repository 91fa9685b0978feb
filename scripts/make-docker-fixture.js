#!/usr/bin/env node
'use strict'
// Writes a deterministic Docker data root for tests and demos.
//   node scripts/make-docker-fixture.js DIR [VARIANT|all]
// VARIANT defaults to "base"; "all" writes every variant into DIR/<variant>.
// Needs a build (npm run build) and root (whiteouts are char devices, opaque
// dirs carry trusted.* xattrs).
const path = require('node:path')

let fixture
try {
  fixture = require(path.join(__dirname, '..', 'dist', 'docker', 'fixture.js'))
} catch (err) {
  process.stderr.write(`make-docker-fixture: cannot load dist/docker/fixture.js (run npm run build first): ${err.message}\n`)
  process.exit(1)
}

const [dir, variant = 'base'] = process.argv.slice(2)
if (dir === undefined || dir === '-h' || dir === '--help') {
  process.stderr.write(`usage: node scripts/make-docker-fixture.js DIR [VARIANT|all]\nvariants: ${fixture.FIXTURE_VARIANTS.join(', ')}\n`)
  process.exit(dir === undefined ? 1 : 0)
}
try {
  if (variant === 'all') fixture.writeAllFixtures(path.resolve(dir))
  else if (fixture.FIXTURE_VARIANTS.includes(variant)) fixture.writeFixture(path.resolve(dir), variant)
  else throw new Error(`unknown variant ${variant}; known: ${fixture.FIXTURE_VARIANTS.join(', ')}, all`)
} catch (err) {
  process.stderr.write(`make-docker-fixture: ${err.message}\n`)
  process.exit(1)
}
