'use strict'
// node stat-names.js DIR PREFIX COUNT
// stat()s DIR/PREFIX0000 … DIR/PREFIX<COUNT-1> from this one process and
// prints {"seconds", "found", "missing", "other"} as JSON; the time covers
// the stat loop only (not Node's start-up).
const fs = require('node:fs')

const [dir, prefix, countArg] = process.argv.slice(2)
const count = Number(countArg)
const names = []
for (let i = 0; i < count; i++) names.push(`${dir}/${prefix}${String(i).padStart(4, '0')}`)

let found = 0
let missing = 0
let other = 0
let firstError
const t0 = process.hrtime.bigint()
for (const n of names) {
  try {
    if (fs.statSync(n, { throwIfNoEntry: false }) === undefined) missing++
    else found++
  } catch (err) {
    other++
    if (firstError === undefined) firstError = `${err.code}: ${n}`
  }
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9
process.stdout.write(JSON.stringify({ seconds, found, missing, other, firstError }) + '\n')
