// What makes gc safe while pushes and syncs run (docs/FORMAT.md, "Deleting: rm and gc").
//
// A writer checks which objects the store has and then names them from a tree and a revision written
// later. gc deleting an unreferenced object between the two (one the writer found there, and so did not
// write again; or one it wrote itself, under --grace 0) would leave a revision naming a missing object.
// The grace period alone protects only what the writer wrote, and only if it is quicker than the
// grace; so writers and gc's sweep exclude each other through two kinds of lease object:
//
//   locks/writers/<time>-<rand>.json   a push or sync in progress (from before its first existence
//                                      check until its revision is written)
//   locks/gc/<time>-<rand>.json        a gc sweeping (from before it re-lists the refs until its last delete)
//
// A writer puts its lease, then lists locks/gc/: a live gc lease there makes it wait (keeping its own)
// until that is gone. gc puts its lease, then lists locks/writers/: a live writer lease there makes it
// take its own back and wait until no writer is left, then try again. This is Dekker's entry protocol
// over a store whose put and list are linearizable (a local file system; S3 since December 2020): of
// two parties that each put before they list, at least one sees the other, so a writer never runs
// past its first check while gc deletes. gc yields, so a writer waits only for a sweep under way.
//
// A lease is live while its object is younger than LEASE_TTL_MS (its mtime, S3's LastModified); its
// holder rewrites it every LEASE_RENEW_MS. A killed holder's lease goes stale after the TTL and
// holds nobody up longer; gc deletes stale leases.
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { isSweepStore, type ListedObject, type Store, type SweepStore } from './store.js'

export const WRITER_LEASES = 'locks/writers/'
export const GC_LEASES = 'locks/gc/'
export const LEASE_TTL_MS = 60_000
const LEASE_RENEW_MS = 15_000
/** how often a waiting party looks again: first soon (a sweep of a small store takes a moment), then less often */
const POLL_FIRST_MS = 50
const POLL_MAX_MS = 2_000

export interface Lease {
  /** Deletes the lease (idempotent). */
  release(): Promise<void>
}

export interface LeaseOptions {
  /** told how many leases of the other kind it waits for, each time it starts waiting */
  onWait?: (holders: number) => void
  signal?: AbortSignal
}

/** The live leases under `prefix`, and the stale ones (older than the TTL). */
export async function listLeases(store: SweepStore, prefix: string, now = Date.now()): Promise<{ live: ListedObject[]; stale: ListedObject[] }> {
  const live: ListedObject[] = []
  const stale: ListedObject[] = []
  for await (const o of store.listObjects(prefix)) (now - o.modified < LEASE_TTL_MS ? live : stale).push(o)
  return { live, stale }
}

/**
 * Puts a lease under `prefix` and keeps it fresh until released. The body names the holder, for a
 * person who finds it.
 */
async function putLease(store: SweepStore, prefix: string, what: string): Promise<Lease> {
  const stamp = new Date().toISOString().replace(/[-:.]/g, '')
  const key = `${prefix}${stamp}-${randomBytes(6).toString('hex')}.json`
  const body = Buffer.from(JSON.stringify({ what, host: os.hostname(), pid: process.pid, started: new Date().toISOString() }) + '\n')
  await store.put(key, body)
  let renewing: Promise<void> = Promise.resolve()
  // a failed renewal is tried again at the next tick; the lease only goes stale after four misses
  const timer = setInterval(() => {
    renewing = renewing.then(() => store.put(key, body)).catch(() => {})
  }, LEASE_RENEW_MS)
  timer.unref()
  let released: Promise<void> | null = null
  return {
    release: () =>
      (released ??= (async () => {
        clearInterval(timer)
        await renewing
        await store.deleteMany([key])
      })()),
  }
}

async function waitWhile(busy: () => Promise<number>, options: LeaseOptions): Promise<void> {
  let pause = POLL_FIRST_MS
  let told = false
  for (let n = await busy(); n > 0; n = await busy()) {
    if (!told) options.onWait?.(n)
    told = true
    await sleep(pause, undefined, options.signal ? { signal: options.signal } : {})
    pause = Math.min(POLL_MAX_MS, pause * 2)
  }
}

/**
 * A push's or a sync's lease: acquire() before its first look at what the store holds (after the store
 * is open), release() in a finally once its revision is written (or it failed): waits while a gc
 * sweeps. A store that cannot be swept needs none.
 */
export class WriterLease {
  private lease: Lease | null = null

  constructor(private readonly store: Store, private readonly what: string, private readonly options: LeaseOptions = {}) {}

  async acquire(): Promise<void> {
    const store = this.store
    if (this.lease !== null || !isSweepStore(store)) return
    this.lease = await putLease(store, WRITER_LEASES, this.what)
    await waitWhile(async () => (await listLeases(store, GC_LEASES)).live.length, this.options)
  }

  async release(): Promise<void> {
    await this.lease?.release()
  }
}

/** Taken by gc before it re-lists the refs for its sweep: returns once no writer is in progress. */
export async function acquireGcLease(store: SweepStore, options: LeaseOptions = {}): Promise<Lease> {
  for (;;) {
    const lease = await putLease(store, GC_LEASES, 'gc')
    let writers: number
    try {
      writers = (await listLeases(store, WRITER_LEASES)).live.length
    } catch (err) {
      await lease.release().catch(() => {})
      throw err
    }
    if (writers === 0) return lease
    // yield to the writers (they wait while this lease is there), then try again once they are done
    await lease.release()
    await waitWhile(async () => (await listLeases(store, WRITER_LEASES)).live.length, options)
  }
}
