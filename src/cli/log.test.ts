import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { kmsgLine, makeLogger, reportFatal, sinkOf } from './log'

let dir: string
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-log-')) })
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

describe('the daemon log', () => {
  it('tells a file, /dev/null and the kernel log apart by the descriptor', () => {
    const f = fs.openSync(path.join(dir, 'log'), 'a')
    const n = fs.openSync('/dev/null', 'w')
    try {
      expect(sinkOf(f)).toBe('json')
      expect(sinkOf(n), 'a character device, but not 1:11').toBe('json')
    } finally {
      fs.closeSync(f)
      fs.closeSync(n)
    }
  })

  it('writes JSON lines with the pid to a log file', async () => {
    const file = path.join(dir, 'log')
    const fd = fs.openSync(file, 'a')
    const log = makeLogger('info', fd)
    log.info({ mountpoint: '/m' }, 'mounted')
    log.debug('not at info')
    await new Promise<void>((resolve) => log.flush(() => resolve()))
    // pino writes asynchronously (sonic-boom): the line is there before the descriptor may go.
    for (let i = 0; i < 100 && !fs.readFileSync(file, 'utf8').endsWith('\n'); i++) await new Promise(resolve => setTimeout(resolve, 10))
    fs.closeSync(fd)
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
    expect(lines).toEqual([expect.objectContaining({ level: 30, pid: process.pid, mountpoint: '/m', msg: 'mounted' })])
  })

  it('reports a crash as one JSON line with the stack, written at once', () => {
    const file = path.join(dir, 'log')
    const fd = fs.openSync(file, 'a')
    reportFatal(new Error('boom'), 'uncaughtException', fd)
    fs.closeSync(fd)
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as { level: number, pid: number, msg: string, stack: string }
    expect(rec.level).toBe(60)
    expect(rec.pid).toBe(process.pid)
    expect(rec.msg).toBe('internal error (uncaughtException): the daemon stops; the mount answers ENOTCONN until unmounted (fusermount -u)')
    expect(rec.stack).toMatch(/^Error: boom\n\s+at /)
  })

  it('makes one kernel-log record per write: priority, name and pid, one line, at most 900 bytes', () => {
    expect(kmsgLine('warn', 'readdir failed path=/a errno=5')).toBe(`<4>ovlfs[${process.pid}]: readdir failed path=/a errno=5\n`)
    expect(kmsgLine('fatal', 'x').startsWith('<2>')).toBe(true)
    expect(kmsgLine('info', 'x').startsWith('<6>')).toBe(true)
    expect(kmsgLine('error', 'two\nlines')).toBe(`<3>ovlfs[${process.pid}]: two | lines\n`)
    const long = kmsgLine('warn', 'é'.repeat(1000))
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(900 + 4)
    expect(long.endsWith('...\n')).toBe(true)
    expect(long).not.toContain('\uFFFD')
  })
})
