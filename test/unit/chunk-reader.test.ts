// The mount's chunk reader on its own: shared fetches, bounded concurrency, the timeout, close(), the
// memory and disk caches, and that bytes only ever come out verified. The store under it is the real
// in-memory backend, wrapped to count, stall or hold back requests, or a real S3 server (s3rver)
// behind a proxy that can hold chunk GETs unanswered.
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { encodeObject } from '../../src/format/object.js'
import { toHex } from '../../src/format/id.js'
import { ChunkReader } from '../../src/mount/chunk-reader.js'
import { DiskCache } from '../../src/store/disk-cache.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { objectKey } from '../../src/store/objects.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import type { ReadOptions } from '../../src/store/store.js'
import { abortedError } from '../../src/util/errors.js'
import { bytes, tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

/**
 * A memory store whose gets are counted and held back until released. `stall`: gets never answer
 * (but give up when their signal aborts, as the real backends do); `deaf`: they ignore the signal too.
 */
class SlowStore extends MemoryStore {
  gets = 0
  inFlight = 0
  maxInFlight = 0
  aborted = 0
  stall = false
  deaf = false
  private held: Array<() => void> = []

  override async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    this.gets++
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    const { signal } = options
    try {
      await new Promise<void>((resolve, reject) => {
        if (!this.stall) this.held.push(resolve)
        if (signal && !this.deaf) {
          signal.addEventListener('abort', () => {
            this.aborted++
            reject(abortedError(`reading ${key}`, signal))
          })
        }
      })
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

/** Resolves once `check` holds, looking again after each turn of the event loop. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setImmediate(r))
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
    await reader.close()
  })

  it('keeps at most `jobs` store requests in flight', async () => {
    const { store, ids } = await storeWith(12)
    const reader = new ChunkReader(store, { ...options, jobs: 3 })
    await drive(store, Promise.all(ids.map((id) => reader.get(id))))
    expect(store.gets).toBe(12)
    expect(store.maxInFlight).toBe(3)
    await reader.close()
  })

  it('a store that does not answer (nor gives up when asked) fails the read after the timeout, naming the store and chunk', async () => {
    const { store, ids } = await storeWith(1)
    Object.assign(store, { stall: true, deaf: true })
    const reader = new ChunkReader(store, { ...options, timeoutMs: 300 })
    const started = Date.now()
    const err = (await reader.get(ids[0]!).catch((e: unknown) => e)) as { code: string; message: string }
    expect(err.code).toBe('ERR_STORE_UNREACHABLE')
    expect(err.message).toContain(ids[0]!)
    expect(err.message).toContain(store.url)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(Date.now() - started).toBeLessThan(2000)
    await reader.close()
  })

  it('a read waits the timeout once, even behind read-ahead that holds every slot; the timed-out requests are cancelled', async () => {
    const { store, ids } = await storeWith(3)
    store.stall = true
    const timeoutMs = 600
    const reader = new ChunkReader(store, { ...options, jobs: 2, timeoutMs })
    reader.prefetch(ids[0]!)
    reader.prefetch(ids[1]!)
    await until(() => store.inFlight === 2)
    const started = Date.now()
    const err = (await reader.get(ids[2]!).catch((e: unknown) => e)) as { code: string; message: string }
    const elapsed = Date.now() - started
    expect(err.code).toBe('ERR_STORE_UNREACHABLE')
    expect(err.message).toContain(ids[2]!)
    // it waited for a slot and never got one: the whole wait counts against its timeout
    expect(elapsed).toBeLessThan(timeoutMs * 1.5)
    // (it may have had a slot for the last moments of its time, once a read-ahead gave up)
    expect(store.aborted).toBe(store.gets)
    expect(store.inFlight).toBe(0)
    expect(reader.stats.failures).toBe(3)
    await reader.close()
  })

  it('a chunk that just timed out fails again at once (the kernel reads a failed read-ahead again), and is tried again later', async () => {
    const { store, ids, raw } = await storeWith(1)
    store.stall = true
    const timeoutMs = 400
    const reader = new ChunkReader(store, { ...options, timeoutMs })
    await expect(reader.get(ids[0]!)).rejects.toMatchObject({ code: 'ERR_STORE_UNREACHABLE' })
    // the failure is remembered from the moment the load timed out, which is before this
    const started = Date.now()
    await expect(reader.get(ids[0]!)).rejects.toMatchObject({ code: 'ERR_STORE_UNREACHABLE', message: expect.stringContaining(ids[0]!) as unknown })
    expect(Date.now() - started).toBeLessThan(timeoutMs / 2)
    expect(store.gets).toBe(1)

    // once one timeout has passed since, the chunk is fetched anew: the next read is answered
    store.stall = false
    await new Promise((r) => setTimeout(r, started + timeoutMs - Date.now() + 1))
    const got = await drive(store, reader.get(ids[0]!))
    expect(got.equals(raw[0]!)).toBe(true)
    expect(Date.now() - started).toBeGreaterThanOrEqual(timeoutMs - 50)
    expect(store.gets).toBe(2)
    await reader.close()
  })

  it('close() aborts the fetches under way, waits for them, refuses later reads, and is idempotent', async () => {
    const { store, ids } = await storeWith(2)
    store.stall = true
    const reader = new ChunkReader(store, options)
    const reads = ids.map((id) => reader.get(id).catch((e: unknown) => e as { code: string }))
    await until(() => store.inFlight === 2)
    await Promise.all([reader.close(), reader.close()])
    expect(store.aborted).toBe(2)
    expect(store.inFlight).toBe(0)
    for (const err of await Promise.all(reads)) expect(err).toMatchObject({ code: 'ERR_ABORTED' })
    await expect(reader.get(ids[0]!)).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    reader.prefetch(ids[1]!) // nothing, and no unhandled rejection
    expect(store.gets).toBe(2)
    await reader.close()
  })

  it('a chunk whose bytes do not match its ID is an error, never data', async () => {
    const { store, ids } = await storeWith(1)
    await store.put(objectKey('chunk', ids[0]!), encodeObject(bytes('other', 70_000)))
    const reader = new ChunkReader(store, options)
    await expect(drive(store, reader.get(ids[0]!))).rejects.toMatchObject({ code: 'ERR_OBJECT_CORRUPT' })
    expect(reader.stats.failures).toBe(1)
    await reader.close()
  })

  it('serves from the disk cache across readers (close waits for its writes), and fetches again when a cache file is damaged', async () => {
    const { store, ids, raw } = await storeWith(2)
    const dir = tempDir()
    const first = new ChunkReader(store, { ...options, diskCache: await DiskCache.open(dir) })
    await drive(store, Promise.all(ids.map((id) => first.get(id))))
    await first.close() // the cache writes, which reads do not wait for, are done now
    expect(store.gets).toBe(2)

    const damaged = path.join(dir, 'chunks', ids[1]!.slice(0, 2), ids[1]!)
    writeFileSync(damaged, encodeObject(bytes('garbage', 70_000)))
    const second = new ChunkReader(store, { ...options, diskCache: await DiskCache.open(dir) })
    const got = await drive(store, Promise.all(ids.map((id) => second.get(id))))
    expect(got[0]!.equals(raw[0]!)).toBe(true)
    expect(got[1]!.equals(raw[1]!)).toBe(true)
    expect(second.stats).toMatchObject({ diskHits: 1, fetched: 1, failures: 0 })
    expect(store.gets).toBe(3)
    await second.close()

    // the copy fetched again replaced the damaged one
    const third = new ChunkReader(store, { ...options, diskCache: await DiskCache.open(dir) })
    expect((await third.get(ids[1]!)).equals(raw[1]!)).toBe(true)
    expect(third.stats).toMatchObject({ diskHits: 1, fetched: 0 })
    await third.close()
  })
})

describe('ChunkReader over S3 (s3rver behind a proxy that can hold chunk GETs)', () => {
  let server: S3Server
  let proxy: http.Server
  let endpoint: string
  const held: Array<{ res: http.ServerResponse; closed: Promise<void> }> = []
  let holdChunks = false
  const saved = { ...process.env }

  beforeAll(async () => {
    server = await startS3Server(['reader'])
    Object.assign(process.env, server.env)
    const target = new URL(server.endpoint)
    proxy = http.createServer((req, res) => {
      if (holdChunks && req.method === 'GET' && req.url?.includes('/chunks/')) {
        req.resume()
        // accepted and never answered; the client giving up closes the connection
        held.push({ res, closed: new Promise((resolve) => res.on('close', () => resolve())) })
        return
      }
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    process.env = saved
    for (const h of held.splice(0)) h.res.destroy()
    proxy.closeAllConnections()
    await new Promise<void>((resolve) => proxy.close(() => resolve()))
    await server.close()
  })

  it('close() cancels a chunk GET the server holds, at once, and the store is still usable', async () => {
    const store = storeFromUrl('s3://reader/p', { s3Endpoint: endpoint })
    await store.open()
    const raw = bytes('s3-reader', 100_000)
    const id = toHex(hashBytes(raw))
    await store.put(objectKey('chunk', id), encodeObject(raw))
    const reader = new ChunkReader(store, { ...options, timeoutMs: 60_000 })

    holdChunks = true
    const read = reader.get(id).catch((e: unknown) => e as { code: string })
    await until(() => held.length === 1)
    const started = Date.now()
    await reader.close()
    expect(await read).toMatchObject({ code: 'ERR_ABORTED' })
    await held[0]!.closed // the request was cancelled: the client closed its connection
    expect(Date.now() - started).toBeLessThan(5_000)

    holdChunks = false
    const again = new ChunkReader(store, options)
    expect((await again.get(id)).equals(raw)).toBe(true)
    await again.close()
    await store.close()
  })
})
