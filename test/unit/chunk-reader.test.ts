// The mount's chunk reader on its own: shared fetches, bounded concurrency, the timeout, the memory
// and disk caches, and that bytes only ever come out verified. The store under it is the real
// in-memory backend, wrapped to count, stall or hold back requests.
import { readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { encodeObject } from '../../src/format/object.js'
import { toHex } from '../../src/format/id.js'
import { ChunkReader } from '../../src/mount/chunk-reader.js'
import { DiskCache } from '../../src/store/disk-cache.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { objectKey } from '../../src/store/objects.js'
import { bytes, tempDir } from '../helpers/cli.js'

/** A memory store whose gets are counted and can be held back until released. */
class SlowStore extends MemoryStore {
  gets = 0
  inFlight = 0
  maxInFlight = 0
  stall = false
  private held: Array<() => void> = []

  override async get(key: string): Promise<Buffer> {
    this.gets++
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      if (this.stall) await new Promise<void>(() => {})
      await new Promise<void>((resolve) => this.held.push(resolve))
      return await super.get(key)
    } finally {
      this.inFlight--
    }
  }

  release(): void {
    for (const r of this.held.splice(0)) r()
  }
}

async function storeWith(n: number): Promise<{ store: SlowStore; ids: string[]; raw: Buffer[] }> {
  const store = new SlowStore()
  await store.open({ create: true })
  const raw = Array.from({ length: n }, (_, i) => bytes(`chunk-${i}`, 70_000))
  const ids = raw.map((r) => toHex(hashBytes(r)))
  for (let i = 0; i < n; i++) await store.put(objectKey('chunk', ids[i]!), encodeObject(raw[i]!))
  return { store, ids, raw }
}

const options = { memoryBytes: 1 << 20, diskCache: null, jobs: 4, timeoutMs: 5000 }

/** Lets the store answer everything asked so far, repeatedly, until `p` settles. */
async function drive<T>(store: SlowStore, p: Promise<T>): Promise<T> {
  let done = false
  void p.finally(() => (done = true)).catch(() => {})
  while (!done) {
    store.release()
    await new Promise((r) => setTimeout(r, 1))
  }
  return p
}

describe('ChunkReader', () => {
  it('concurrent reads of one chunk share one fetch, and a second read is a memory hit', async () => {
    const { store, ids, raw } = await storeWith(1)
    const reader = new ChunkReader(store, options)
    const all = Promise.all(Array.from({ length: 10 }, () => reader.get(ids[0]!)))
    const got = await drive(store, all)
    expect(store.gets).toBe(1)
    for (const g of got) expect(g.equals(raw[0]!)).toBe(true)
    expect((await reader.get(ids[0]!)).equals(raw[0]!)).toBe(true)
    expect(store.gets).toBe(1)
    expect(reader.stats).toMatchObject({ fetched: 1, memoryHits: 1 })
  })

  it('keeps at most `jobs` store requests in flight', async () => {
    const { store, ids } = await storeWith(12)
    const reader = new ChunkReader(store, { ...options, jobs: 3 })
    await drive(store, Promise.all(ids.map((id) => reader.get(id))))
    expect(store.gets).toBe(12)
    expect(store.maxInFlight).toBe(3)
  })

  it('a store that does not answer fails the read after the timeout, naming the store and chunk', async () => {
    const { store, ids } = await storeWith(1)
    store.stall = true
    const reader = new ChunkReader(store, { ...options, timeoutMs: 300 })
    const started = Date.now()
    const err = (await reader.get(ids[0]!).catch((e: unknown) => e)) as { code: string; message: string }
    expect(err.code).toBe('ERR_STORE_UNREACHABLE')
    expect(err.message).toContain(ids[0]!)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('a chunk whose bytes do not match its ID is an error, never data', async () => {
    const { store, ids } = await storeWith(1)
    await store.put(objectKey('chunk', ids[0]!), encodeObject(bytes('other', 70_000)))
    const reader = new ChunkReader(store, options)
    await expect(drive(store, reader.get(ids[0]!))).rejects.toMatchObject({ code: 'ERR_OBJECT_CORRUPT' })
    expect(reader.stats.failures).toBe(1)
  })

  it('serves from the disk cache across readers, and fetches again when a cache file is damaged', async () => {
    const { store, ids, raw } = await storeWith(2)
    const dir = tempDir()
    const first = new ChunkReader(store, { ...options, diskCache: await DiskCache.open(dir) })
    await drive(store, Promise.all(ids.map((id) => first.get(id))))
    await new Promise((r) => setTimeout(r, 50)) // cache writes are not awaited by reads
    expect(store.gets).toBe(2)

    const damaged = path.join(dir, 'chunks', ids[1]!.slice(0, 2), ids[1]!)
    writeFileSync(damaged, encodeObject(bytes('garbage', 70_000)))
    const second = new ChunkReader(store, { ...options, diskCache: await DiskCache.open(dir) })
    const got = await drive(store, Promise.all(ids.map((id) => second.get(id))))
    expect(got[0]!.equals(raw[0]!)).toBe(true)
    expect(got[1]!.equals(raw[1]!)).toBe(true)
    expect(second.stats).toMatchObject({ diskHits: 1, fetched: 1 })
    expect(store.gets).toBe(3)
  })

  it('the disk cache evicts the least recently used objects past its cap', async () => {
    const dir = tempDir()
    const cache = await DiskCache.open(dir, 250_000)
    const objs = Array.from({ length: 4 }, (_, i) => encodeObject(bytes(`o${i}`, 100_000)))
    const names = objs.map((_, i) => `${i}`.repeat(64))
    await cache.put(names[0]!, objs[0]!)
    await cache.put(names[1]!, objs[1]!)
    expect(await cache.get(names[0]!)).not.toBeNull() // 0 is now more recent than 1
    await cache.put(names[2]!, objs[2]!)
    expect(await cache.get(names[1]!)).toBeNull()
    expect(await cache.get(names[0]!)).not.toBeNull()
    expect(cache.usedBytes).toBeLessThanOrEqual(250_000)
    const onDisk = readdirSync(path.join(dir, 'chunks'), { recursive: true }).filter((f) => String(f).length > 3)
    expect(onDisk.length).toBe(2)
  })
})
