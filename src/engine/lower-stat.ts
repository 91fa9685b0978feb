import { lstatSync, promises as fsp, type BigIntStats } from 'node:fs'
import { performance } from 'node:perf_hooks'
import type { Layer } from './layers'
import type { MaybePromise } from './maybe'

/**
 * lstat of names in lower layers, on the JS thread when the layer answers fast.
 *
 * An lstat through the libuv pool (fs.promises) costs the daemon a hop to a
 * pool thread and back, a promise and a microtask turn: on the lookup path
 * that was the largest single cost after the binding's own (a sixth of the JS
 * thread's time per LOOKUP of a lower name; scripts/bench/split.js, README
 * "Where the time goes"), for a syscall that takes a few microseconds when the
 * inode is cached. Lower layers are local directories that never change, so
 * their lstats are made synchronously, as a C daemon (fuse-overlayfs) makes
 * every syscall, and timed: a layer whose lstat ever takes longer than
 * SLOW_MS (a network or FUSE file system under it that stalls) goes back to
 * the pool for SLOW_BACKOFF_MS, so one stalling layer does not hold up the
 * requests for the others for long. SLOW_MS is well above what a cold inode
 * read from a local disk, or being preempted on a busy machine, costs (a few
 * ms; measured with the wall clock, which cannot tell them apart). The upper
 * layer, where writes and copy-ups happen, always uses the pool.
 */
export class LowerStat {
  /** Per layer index: until when (performance.now()) its lstats go through the pool. */
  private readonly slowUntil: number[] = []

  static readonly SLOW_MS = 50
  static readonly SLOW_BACKOFF_MS = 30_000

  /** lstat `real` (a path in `layer`); undefined when it does not exist (ENOENT). */
  lstat (layer: Layer, real: string): MaybePromise<BigIntStats | undefined> {
    if (layer.isUpper || (this.slowUntil[layer.index] ?? 0) > performance.now()) return pooled(real)
    const t0 = performance.now()
    try {
      return lstatSync(real, { bigint: true, throwIfNoEntry: false })
    } finally {
      const t1 = performance.now()
      if (t1 - t0 > LowerStat.SLOW_MS) this.slowUntil[layer.index] = t1 + LowerStat.SLOW_BACKOFF_MS
    }
  }

  /** Whether the layer's lstats go through the pool right now (tests, diagnostics). */
  isSlow (layer: Layer): boolean {
    return (this.slowUntil[layer.index] ?? 0) > performance.now()
  }
}

async function pooled (real: string): Promise<BigIntStats | undefined> {
  try {
    return await fsp.lstat(real, { bigint: true })
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw err
  }
}
