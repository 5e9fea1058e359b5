import { expect, it } from 'vitest'
import { BackgroundFlush } from '../../src/store/background-flush.js'
import type { Store } from '../../src/store/store.js'

function countingStore(fail: (n: number) => boolean): { store: Store; calls: () => number; running: () => boolean } {
  let calls = 0
  let running = false
  const store = {
    flush: async () => {
      calls++
      running = true
      await new Promise((resolve) => setTimeout(resolve, 5))
      running = false
      if (fail(calls)) throw new Error('disk gone')
    },
  } as unknown as Store
  return { store, calls: () => calls, running: () => running }
}

it('flushes again and again until stopped, and stop() waits for the flush under way', async () => {
  const { store, calls, running } = countingStore(() => false)
  const bg = new BackgroundFlush(store, 1)
  await new Promise((resolve) => setTimeout(resolve, 60))
  await bg.stop()
  expect(calls()).toBeGreaterThan(2)
  expect(running()).toBe(false)
  const after = calls()
  await new Promise((resolve) => setTimeout(resolve, 30))
  expect(calls(), 'no flush after stop()').toBe(after)
})

it('a failed flush ends the loop quietly: the final flush reports it', async () => {
  const { store, calls } = countingStore((n) => n === 2)
  const bg = new BackgroundFlush(store, 1)
  await new Promise((resolve) => setTimeout(resolve, 60))
  expect(calls()).toBe(2)
  await expect(bg.stop()).resolves.toBeUndefined()
})

it('stop() does not wait out the pause between two flushes', async () => {
  const { store, calls, running } = countingStore(() => false)
  const bg = new BackgroundFlush(store, 10_000)
  await new Promise((resolve) => setTimeout(resolve, 30)) // the first flush is done, the pause has begun
  expect([calls(), running()]).toEqual([1, false])
  const t0 = performance.now()
  await bg.stop()
  expect(performance.now() - t0).toBeLessThan(1000)
})
