// What a differential pair (kernel overlayfs vs ovlfs over copies of the same layers) compares
// after a sequence of operations: the per-op results, the merged views and the upper dirs.
import type { Sides } from './mounts'
import { describe as describeOp, type Op } from './ops'
import { diff, snapshotMerged, snapshotUpper } from './snapshot'

export interface PairResults { kernel: string[], fuse: string[] }

/** One line per op whose result differs. */
export function resultLines (results: PairResults, ops: Op[]): string[] {
  const lines: string[] = []
  results.kernel.forEach((k, i) => {
    if (results.fuse[i] !== k) lines.push(`result of op ${i + 1} (${describeOp(ops[i]!)}): kernel=${k} ovlfs=${results.fuse[i]}`)
  })
  return lines
}

/** Result lines, then the merged views' differences, then (unless `upper` is false) the upper dirs'. */
export function pairLines (s: Sides, results: PairResults, ops: Op[], upper = true): string[] {
  const lines = resultLines(results, ops)
  lines.push(...diff(snapshotMerged(s.kernel.mnt), snapshotMerged(s.fuse.mnt)).map(l => 'merged ' + l))
  if (upper) lines.push(...diff(snapshotUpper(s.kernel.upper), snapshotUpper(s.fuse.upper)).map(l => 'upper  ' + l))
  return lines
}
