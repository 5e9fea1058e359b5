// A per-registry requests-per-second limit: requests start at least 1/rps seconds apart, in the order
// they asked (no bursts: a registry that rate-limits counts requests per window, and an even pace
// never trips it where a burst would).
//
// Turns are taken one after another, and each is timed from when the one before it actually started,
// not from when it was booked: a timer that fires late (a busy event loop) would otherwise let the
// requests booked after it go at their booked times, closer together than the limit.
import { setTimeout as sleep } from 'node:timers/promises'

export class RateLimiter {
  private last = -Infinity
  private queue: Promise<void> = Promise.resolve()
  private readonly gapMs: number

  constructor(readonly rps: number) {
    if (!(rps > 0) || !Number.isFinite(rps)) throw new RangeError(`rps must be a positive number, got ${rps}`)
    this.gapMs = 1000 / rps
  }

  /** Waits for this request's turn; an aborted wait gives its turn to the next. */
  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      signal?.throwIfAborted()
      const wait = this.last + this.gapMs - performance.now()
      if (wait > 0) await sleep(wait, undefined, signal === undefined ? {} : { signal })
      this.last = performance.now()
    })
    this.queue = turn.catch(() => {})
    return turn
  }
}
