// A per-registry requests-per-second limit: requests start at least 1/rps seconds apart, in the order
// they asked (no bursts: a registry that rate-limits counts requests per window, and an even pace
// never trips it where a burst would).
import { setTimeout as sleep } from 'node:timers/promises'

export class RateLimiter {
  private next = 0
  private readonly gapMs: number

  constructor(readonly rps: number) {
    if (!(rps > 0) || !Number.isFinite(rps)) throw new RangeError(`rps must be a positive number, got ${rps}`)
    this.gapMs = 1000 / rps
  }

  /** Waits for this request's turn. */
  async take(signal?: AbortSignal): Promise<void> {
    const now = performance.now()
    const at = Math.max(now, this.next)
    this.next = at + this.gapMs
    if (at > now) await sleep(at - now, undefined, signal === undefined ? {} : { signal })
  }
}
