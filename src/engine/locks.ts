/**
 * Per-name serialisation of namespace changes. The kernel's VFS already holds
 * the parent directory's lock around create, unlink and rename, so through
 * FUSE these never race on one directory; the engine does the same itself so
 * it stays correct when driven directly (tests, other front ends).
 */
export class KeyedLocks {
  private readonly tails = new Map<string, Promise<void>>()

  /** Run `fn` holding the locks of all `keys` (taken in sorted order, so two callers cannot deadlock). */
  async with<T> (keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort()
    const releases: Array<() => void> = []
    for (const key of sorted) releases.push(await this.acquire(key))
    try {
      return await fn()
    } finally {
      for (const release of releases.reverse()) release()
    }
  }

  private async acquire (key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => { release = resolve })
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    return () => {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }
}
