/** A counting semaphore: bounds how much async work is in flight (and so how much memory it holds). */
export class Semaphore {
  private waiters: Array<() => void> = []
  private free: number

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Semaphore limit must be a positive integer, got ${limit}`)
    this.free = limit
  }

  /** Waits for a slot; with `signal`, gives up when it aborts (rejecting with its reason). */
  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (this.free > 0) {
      this.free--
      return
    }
    if (!signal) return new Promise<void>((resolve) => this.waiters.push(resolve))
    return new Promise<void>((resolve, reject) => {
      const granted = (): void => {
        signal.removeEventListener('abort', aborted)
        resolve()
      }
      const aborted = (): void => {
        const at = this.waiters.indexOf(granted)
        if (at >= 0) this.waiters.splice(at, 1)
        reject(signal.reason as Error)
      }
      this.waiters.push(granted)
      signal.addEventListener('abort', aborted, { once: true })
    })
  }

  release(): void {
    const next = this.waiters.shift()
    if (next) next()
    else this.free++
  }
}

/**
 * Runs fn over items with at most `limit` at once. The first failure stops new work from starting and
 * is rethrown once the running calls have settled, so nothing is left writing behind the caller's back.
 */
export async function forEachLimit<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]()
  let failure: { error: unknown } | null = null
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure) return
      const next = it.next()
      if (next.done) return
      try {
        await fn(next.value)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: limit }, worker))
  if (failure) throw (failure as { error: unknown }).error
}

/**
 * Tracks background tasks (e.g. chunk uploads) started one by one: `add` waits while `limit` are in
 * flight, `drain` waits for all and rethrows the first failure.
 */
export class TaskWindow {
  private readonly sem: Semaphore
  private readonly running = new Set<Promise<void>>()
  private failure: { error: unknown } | null = null

  constructor(limit: number) {
    this.sem = new Semaphore(limit)
  }

  async add(task: () => Promise<void>): Promise<void> {
    this.throwIfFailed()
    await this.sem.acquire()
    const p: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= { error }
      })
      .finally(() => {
        this.running.delete(p)
        this.sem.release()
      })
    this.running.add(p)
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running])
    this.throwIfFailed()
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error
  }
}
