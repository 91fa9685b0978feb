// Starts harness/eio-fs.js (a small FUSE file system of the tests' own, used as a lower layer) in a
// child process and stops it again: faults.test.ts's EIO layer, concurrency.test.ts's gate layer.
import { spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { sleep } from './daemon'
import { isMounted } from './mounts'

export interface EioFs {
  /** Send the server a signal (gate mode: SIGUSR2 lets the held reads go on). */
  signal: (sig: NodeJS.Signals) => void
  /** SIGTERM (it unmounts), wait for it to exit (10 s at most), and unmount lazily if it did not. */
  stop: () => Promise<void>
}

/** Mount eio-fs at `mnt` (an empty directory); resolves once it is mounted. `mode` 'gate': see eio-fs.js. */
export async function startEioFs (mnt: string, mode?: 'gate'): Promise<EioFs> {
  const server = spawn(process.execPath, [path.join(__dirname, 'eio-fs.js'), mnt, ...(mode === undefined ? [] : [mode])], { stdio: ['ignore', 'pipe', 'pipe'] })
  let serverErr = ''
  server.stderr.setEncoding('utf8').on('data', (d: string) => { serverErr += d })
  const exited = new Promise<void>(resolve => server.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    server.kill('SIGTERM')
    if (server.exitCode === null) await Promise.race([exited, sleep(10_000)])
    if (isMounted(mnt)) spawnSync('fusermount', ['-uz', mnt], { stdio: 'ignore' })
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.once('data', () => resolve())
      server.once('exit', (code) => reject(new Error(`eio-fs exited with ${String(code)}: ${serverErr}`)))
    })
  } catch (err) {
    await stop()
    throw err
  }
  return { signal: (sig) => { server.kill(sig) }, stop }
}
