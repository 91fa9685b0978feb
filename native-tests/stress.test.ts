// Load (issue 6): the seeded stress run and a short soak, as CI runs them. Both are the
// scripts in scripts/ (each mounts ovlfs through the CLI in a child process, checks
// everything itself and prints one summary JSON line); here they run with fixed seeds and
// their exit code and every check of the summary are asserted.
//
//   scripts/stress.js --seconds 60 --seed 1   8 worker processes (6 writers, 2 readers) in
//                                             shared dirs for 60 s, then stress-ng stressors
//                                             (--verify) for 20 s in MNT/stress-ng
//   scripts/soak.js --ops N                   N mixed ops (OVLFS_SOAK_OPS, default 30,000: ~600 ops/s on 2 shared cores)
import { spawn } from 'node:child_process'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'

const REPO = path.resolve(__dirname, '..')
const SOAK_OPS = Number(process.env.OVLFS_SOAK_OPS ?? 30_000)

interface Summary {
  ok: boolean
  checks: Record<string, boolean>
  failures: string[]
  [key: string]: unknown
}

/** Run a script of scripts/ to its end; on a timeout SIGTERM lets it unmount and clean up. */
async function runScript (script: string, args: string[], timeoutMs: number): Promise<{ code: number | string, summary: Summary, stderr: string }> {
  const child = spawn(process.execPath, [path.join(REPO, 'scripts', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      stderr += `\n[test] ${script} overran ${timeoutMs} ms: SIGTERM`
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 30_000).unref()
    }, timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); resolve(String(err)) })
    child.on('exit', (c, s) => { clearTimeout(timer); resolve(c ?? String(s)) })
  })
  const line = stdout.trim().split('\n').pop() ?? ''
  let summary: Summary
  try {
    summary = JSON.parse(line) as Summary
  } catch {
    throw new Error(`${script} printed no summary (exit ${code}); stdout: ${stdout.slice(-2000)}; stderr: ${stderr.slice(-4000)}`)
  }
  return { code, summary, stderr }
}

describe('load', () => {
  it('stress: 8 processes in shared dirs for 60 s (seed 1) and stress-ng: only plain-filesystem errors, the final tree the ops imply', async () => {
    const { code, summary, stderr } = await runScript('stress.js', ['--seconds', '60', '--seed', '1', '--stress-ng-seconds', '20'], 300_000)
    expect(summary.failures, stderr.slice(-4000)).toEqual([])
    expect(code).toBe(0)
    expect(summary.ok).toBe(true)
    for (const name of [
      'noDeadlock', 'workersExited', 'daemonAliveAfterWorkers', 'onlyPlainFilesystemErrors', 'finalTreeMatchesOps',
      'noStrayNames', 'stressNgPassed', 'daemonAliveAfterStressNg', 'stressNgCleanedUp', 'daemonAliveAtEnd',
      'cleanUnmount', 'workdirEmpty', 'lowersUnchanged', 'kernelSeesSameTree',
    ]) expect(summary.checks[name], name).toBe(true)
    expect(summary.ops as number).toBeGreaterThan(0)
    const errnos = summary.errnos as Record<string, number>
    // The races did happen (ENOENT after another worker's unlink/rename, ENOTEMPTY for dirs
    // renamed over non-empty ones); merged dirs rename like any other (redirects): never EXDEV.
    expect(errnos.ENOENT ?? 0).toBeGreaterThan(0)
    expect(errnos.ENOTEMPTY ?? 0).toBeGreaterThan(0)
    expect(errnos.EXDEV ?? 0).toBe(0)
    const peak = summary.peak as { rssMiB: number, fds: number, samples: number }
    expect(peak.samples).toBeGreaterThan(30)
    expect(peak.fds).toBeGreaterThan(0)
  }, 330_000)

  it(`soak: ${SOAK_OPS} mixed ops, RSS under 256 MiB, fds flat after the warm-up`, async () => {
    const { code, summary, stderr } = await runScript('soak.js', ['--ops', String(SOAK_OPS), '--seed', '1', '--sample-ms', '500'], 600_000)
    expect(summary.failures, stderr.slice(-4000)).toEqual([])
    expect(code).toBe(0)
    for (const name of ['allOpsRun', 'daemonAlive', 'cleanUnmount', 'onlyPlainFilesystemErrors', 'rssBounded', 'fdsFlatAfterWarmup', 'workdirEmpty']) {
      expect(summary.checks[name], name).toBe(true)
    }
    expect(summary.opsDone).toBe(SOAK_OPS)
  }, 660_000)
})
