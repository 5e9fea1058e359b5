import { expect, it } from 'vitest'
import { BackgroundFlush } from '../../src/store/background-flush.js'
import type { Store } from '../../src/store/store.js'

interface Deferred {
  promise: Promise<void>
  resolve(): void
}

function deferred(): Deferred {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

/**
 * A store whose flushes the test ends: `called(n)` resolves when the n-th flush starts, `finish(n)`
 * ends it (rejecting it if `fail(n)`). Nothing waits on the clock.
 */
function gatedStore(fail: (n: number) => boolean = () => false) {
  const starts: Deferred[] = []
  const ends: Deferred[] = []
  const slot = (list: Deferred[], n: number) => (list[n] ??= deferred())
  let calls = 0
  let running = false
  const store = {
    flush: async () => {
      const n = ++calls
      running = true
      slot(starts, n).resolve()
      try {
        await slot(ends, n).promise
        if (fail(n)) throw new Error('disk gone')
      } finally {
        running = false
      }
    },
  } as unknown as Store
  return {
    store,
    calls: () => calls,
    running: () => running,
    called: (n: number) => slot(starts, n).promise,
    finish: (n: number) => slot(ends, n).resolve(),
  }
}

/** Lets every callback already due run (the loop's continuations), without waiting on the clock. */
const settle = () => new Promise((resolve) => setImmediate(resolve))

/** The loop's own promise: it settles when the loop ends, whether stop() was called or not. */
const loopOf = (bg: BackgroundFlush) => (bg as unknown as { loop: Promise<void> }).loop

it('flushes again and again until stopped, and stop() waits for the flush under way', async () => {
  const s = gatedStore()
  const bg = new BackgroundFlush(s.store, 1)
  for (const n of [1, 2]) {
    await s.called(n)
    s.finish(n)
  }
  await s.called(3)
  let stopped = false
  const stopping = bg.stop().then(() => (stopped = true))
  await settle()
  expect([stopped, s.running()], 'stop() waits for the third flush').toEqual([false, true])
  s.finish(3)
  await stopping
  expect(s.running()).toBe(false)
  await settle()
  expect(s.calls(), 'no flush after stop()').toBe(3)
})

it('a failed flush ends the loop quietly: the final flush reports it', async () => {
  const s = gatedStore((n) => n === 2)
  const bg = new BackgroundFlush(s.store, 1)
  await s.called(1)
  s.finish(1)
  await s.called(2)
  s.finish(2)
  // the loop ends by itself, without stop() (this would time out otherwise), and does not throw
  await expect(loopOf(bg)).resolves.toBeUndefined()
  expect(s.calls()).toBe(2)
  await expect(bg.stop()).resolves.toBeUndefined()
  expect(s.calls()).toBe(2)
})

it('stop() does not wait out the pause between two flushes', async () => {
  const s = gatedStore()
  const bg = new BackgroundFlush(s.store, 10_000)
  await s.called(1)
  s.finish(1)
  await settle() // the first flush is done, the 10 s pause has begun
  expect([s.calls(), s.running()]).toEqual([1, false])
  const t0 = performance.now()
  await bg.stop()
  expect(performance.now() - t0).toBeLessThan(1000)
  expect(s.calls()).toBe(1)
})
