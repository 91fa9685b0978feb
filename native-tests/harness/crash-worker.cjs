'use strict'
// The op loop of native-tests/crash.test.ts, in its own process (forked with IPC, plain
// CommonJS so that node runs it as is). It waits for {type:'run', mnt, ops, pid, delay},
// runs the ops one after the other with synchronous calls through the mount while a
// thread of its own sends SIGKILL to the daemon `pid` `delay` ms after the first op
// started (a thread, so the kill is on time however long a call blocks), and stops at
// the first error (the daemon was killed: ENOTCONN/ECONNABORTED), answering
// {type:'done', completed, error, durations, killed, killDelay}. It is never killed
// itself, so its report of which op was in flight is exact. An op that fails for
// another reason cancels the kill. Op shapes: see CrashOp in crash-model.ts.
const fs = require('node:fs')
const path = require('node:path')
const { Worker } = require('node:worker_threads')

const DEAD = ['ENOTCONN', 'ECONNABORTED']
const KILLER = `
const { workerData, parentPort } = require('node:worker_threads')
const flag = new Int32Array(workerData.shared)
parentPort.postMessage('ready')
Atomics.wait(flag, 1, 0) // until the op loop starts
const t0 = performance.now()
const r = Atomics.wait(flag, 0, 0, workerData.delay) // cancelled: flag[0] = 1
if (r === 'timed-out') {
  try { process.kill(workerData.pid, 'SIGKILL'); Atomics.store(flag, 2, 1) } catch {}
}
Atomics.store(flag, 3, Math.round((performance.now() - t0) * 1000))
`

/** Start the killer thread; resolves once it waits for the go. */
function startKiller (pid, delay) {
  const shared = new SharedArrayBuffer(16)
  const flag = new Int32Array(shared)
  const w = new Worker(KILLER, { eval: true, workerData: { shared, pid, delay } })
  const exited = new Promise((resolve) => w.on('exit', resolve))
  return new Promise((resolve, reject) => {
    w.once('error', reject)
    w.once('message', () => resolve({
      go: () => { Atomics.store(flag, 1, 1); Atomics.notify(flag, 1) },
      cancel: () => { Atomics.store(flag, 0, 1); Atomics.notify(flag, 0) },
      exited,
      killed: () => Atomics.load(flag, 2) === 1,
      delay: () => Atomics.load(flag, 3) / 1000,
    }))
  })
}

const C = fs.constants

function runOp (mnt, op) {
  const p = (rel) => path.join(mnt, rel)
  let fd = -1
  try {
    switch (op.op) {
      case 'append':
        fd = fs.openSync(p(op.path), C.O_WRONLY | C.O_APPEND)
        fs.writeSync(fd, op.data)
        if (op.fsync) fs.fsyncSync(fd)
        break
      case 'write':
        fd = fs.openSync(p(op.path), C.O_WRONLY)
        fs.writeSync(fd, op.data, 0)
        fs.fsyncSync(fd)
        break
      case 'create':
        fd = fs.openSync(p(op.path), C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o644)
        fs.writeSync(fd, op.data)
        fs.fsyncSync(fd)
        break
      case 'unlink': fs.unlinkSync(p(op.path)); break
      case 'rename': fs.renameSync(p(op.from), p(op.to)); break
      case 'mkdir': fs.mkdirSync(p(op.path), 0o755); break
      case 'rmdir': fs.rmdirSync(p(op.path)); break
      default: throw new Error(`unknown op ${JSON.stringify(op)}`)
    }
    if (fd >= 0) {
      const f = fd
      fd = -1
      fs.closeSync(f)
    }
  } finally {
    if (fd >= 0) { try { fs.closeSync(fd) } catch { /* the mount is gone */ } }
  }
}

process.on('message', (msg) => {
  if (msg.type === 'exit') { process.exit(0) }
  if (msg.type !== 'run') return
  startKiller(msg.pid, msg.delay).then(async (killer) => {
    const durations = []
    let completed = 0
    let error = null
    killer.go()
    for (const op of msg.ops) {
      const t0 = performance.now()
      try {
        runOp(msg.mnt, op)
      } catch (e) {
        error = { code: e.code ?? null, message: String(e.message ?? e) }
        durations.push(performance.now() - t0)
        break
      }
      durations.push(performance.now() - t0)
      completed++
    }
    // Not the kill's doing: call it off. (All ops done: the kill still comes, at an idle moment.)
    if (error !== null && !DEAD.includes(error.code)) killer.cancel()
    await killer.exited
    process.send({ type: 'done', completed, error, durations, killed: killer.killed(), killDelay: killer.delay() })
  }, (e) => process.send({ type: 'done', completed: 0, error: { code: 'WORKER', message: String(e) }, durations: [], killed: false, killDelay: 0 }))
})
process.on('disconnect', () => process.exit(0))
