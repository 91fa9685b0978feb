/**
 * Values that are often known at once (a cached lower listing, a remembered
 * opaque flag) and only sometimes need I/O. An `async` function costs a
 * promise and a microtask turn per call even when it has nothing to wait
 * for; on the lookup path that is tens of calls per FUSE request on a deep
 * stack. Functions returning MaybePromise answer cached cases synchronously
 * and chain with `andThen` only when something is really pending. (Not named
 * `then`: a module exporting `then` is a thenable to dynamic import.)
 */
export type MaybePromise<T> = T | Promise<T>

/** `f(v)`, after `v` settles when it is a promise. */
export function andThen<T, U> (v: MaybePromise<T>, f: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return v instanceof Promise ? v.then(f) : f(v)
}

/**
 * `f()`, with `onError` for its throw or its rejection: the try/catch of
 * MaybePromise code (a synchronous throw and a rejected promise are the same
 * failure, depending only on whether the call ran on the JS thread).
 */
export function attempt<T> (f: () => MaybePromise<T>, onError: (err: unknown) => MaybePromise<T>): MaybePromise<T> {
  let v: MaybePromise<T>
  try {
    v = f()
  } catch (err) {
    return onError(err)
  }
  return v instanceof Promise ? v.catch(onError) : v
}
