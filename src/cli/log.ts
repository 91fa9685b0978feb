import pino, { type Logger, type LevelWithSilent } from 'pino'

/**
 * The daemon's logger: quiet by default (warnings only), per-operation debug
 * lines with -d / --log-level debug; JSON lines when stderr is not a
 * terminal, one readable line per record when it is.
 */
export function makeLogger (level: LevelWithSilent, dest: NodeJS.WritableStream = process.stderr): Logger {
  const tty = (dest as { isTTY?: boolean }).isTTY === true
  if (!tty) return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }))
  return pino({ level, base: undefined, timestamp: false }, {
    write (line: string): void {
      const rec = JSON.parse(line) as Record<string, unknown>
      const { level: lv, msg, ...rest } = rec
      const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
      dest.write(`ovlfs ${pino.levels.labels[Number(lv)] ?? String(lv)}: ${String(msg)}${extra !== '' ? ' ' + extra : ''}\n`)
    },
  })
}

export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
