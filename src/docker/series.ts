/** Maps one item at a time, so the first failure reported is always the first in order. */
export async function mapSeries<T, R> (items: readonly T[], fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = []
  for (const [index, item] of items.entries()) results.push(await fn(item, index))
  return results
}
