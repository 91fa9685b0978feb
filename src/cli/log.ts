import * as fs from 'node:fs'
import { isatty } from 'node:tty'
import pino, { type Logger, type LevelWithSilent } from 'pino'

/**
 * Where the daemon's log goes, told from the file descriptor itself:
 * - `tty`: one readable line per record (`ovlfs warn: msg k=v`);
 * - `kmsg`: the kernel's log (/dev/kmsg, where a daemon started without
 *   --log-file writes when it may; see daemonize in mount.ts): one write per
 *   record, `<level>ovlfs[pid]: msg k=v`, since each write is one record of
 *   the kernel's log and longer than about 1 KiB is refused (EINVAL);
 * - `json`: pino's JSON lines (a --log-file, a pipe).
 */
export type LogSink = 'tty' | 'kmsg' | 'json'

/** /dev/kmsg is character device 1:11 (Documentation/admin-guide/devices.txt). */
const KMSG_RDEV = (1 << 8) | 11

export function sinkOf (fd: number): LogSink {
  if (isatty(fd)) return 'tty'
  try {
    const st = fs.fstatSync(fd)
    if (st.isCharacterDevice() && st.rdev === KMSG_RDEV) return 'kmsg'
  } catch {}
  return 'json'
}

/** Syslog priorities of pino's levels, for the kernel's log (`dmesg -l err,warn`). */
const KMSG_PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 }
/** Bytes of one kernel log record we write; the kernel refuses a write longer than its line limit (1024 less its header). */
const KMSG_MAX = 900

function readable (rec: Record<string, unknown>): { label: string, text: string } {
  const { level: lv, msg, time: _time, pid: _pid, hostname: _host, ...rest } = rec
  const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
  return { label: pino.levels.labels[Number(lv)] ?? String(lv), text: `${String(msg)}${extra !== '' ? ' ' + extra : ''}` }
}

/** One record for the kernel's log, cut to what one write may carry, its line breaks shown as ` | `. */
export function kmsgLine (label: string, text: string): string {
  const line = `<${KMSG_PRIORITY[label] ?? 4}>ovlfs[${process.pid}]: ${text.replace(/\n/g, ' | ')}`
  // The newline ends the record: without it the kernel holds it open for a continuation, and readers see it late.
  return (Buffer.byteLength(line) <= KMSG_MAX ? line : Buffer.from(line).subarray(0, KMSG_MAX).toString('utf8').replace(/\uFFFD$/, '') + '...') + '\n'
}

/**
 * The daemon's logger on `fd` (stderr unless --log-file in the foreground):
 * quiet by default (warnings only), per-operation debug lines with -d /
 * --log-level debug.
 */
export function makeLogger (level: LevelWithSilent, fd = 2): Logger {
  const sink = sinkOf(fd)
  if (sink === 'json') return pino({ level, base: { pid: process.pid } }, pino.destination({ fd, sync: false }))
  return pino({ level, base: undefined, timestamp: false }, {
    write (line: string): void {
      const { label, text } = readable(JSON.parse(line) as Record<string, unknown>)
      try {
        fs.writeSync(fd, sink === 'kmsg' ? kmsgLine(label, text) : `ovlfs ${label}: ${text}\n`)
      } catch {
        // The kernel's log refuses what it cannot take (rate limits drop silently); a log line never stops a request.
      }
    },
  })
}

/**
 * Written at once, before the process ends, for an exception nothing caught
 * (an internal error): the daemon has no terminal, and the stack Node prints
 * after this may be too long for the kernel's log to take in one write. On a
 * terminal only the line: Node's own report that follows has the stack.
 */
export function reportFatal (err: unknown, origin: string, fd = 2): void {
  const stack = err instanceof Error ? (err.stack ?? String(err)) : String(err)
  const head = `internal error (${origin}): the daemon stops; the mount answers ENOTCONN until unmounted (fusermount -u)`
  try {
    const sink = sinkOf(fd)
    if (sink === 'kmsg') {
      fs.writeSync(fd, kmsgLine('fatal', head))
      for (const l of stack.split('\n').slice(0, 8)) fs.writeSync(fd, kmsgLine('fatal', l.trim()))
    } else {
      fs.writeSync(fd, sink === 'tty' ? `ovlfs fatal: ${head}\n` : JSON.stringify({ level: 60, time: Date.now(), pid: process.pid, msg: head, stack }) + '\n')
    }
  } catch {}
}

export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
