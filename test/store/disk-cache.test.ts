// The disk cache is a store of its own (size-capped, least recently used out first) and the local half
// of a CachingStore over a real store: chunks it holds come from it, verified; a damaged copy is dropped
// and fetched again; only verified chunks are kept; close() waits for the writes.
import { readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { encodeObject } from '../../src/format/object.js'
import { toHex } from '../../src/format/id.js'
import { CachingStore } from '../../src/store/caching-store.js'
import { getChunk } from '../../src/store/chunks.js'
import { DiskCache } from '../../src/store/disk-cache.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { objectKey } from '../../src/store/objects.js'
import { bytes, tempDir } from '../helpers/cli.js'
import { storeConformance } from './conformance.js'

storeConformance('disk cache', { fresh: async () => new DiskCache(path.join(tempDir(), 'cache')), localChunks: false, sweep: false })

/** A memory store whose gets are counted. */
class CountingStore extends MemoryStore {
  gets = 0
  override async get(key: string, options?: { signal?: AbortSignal }): Promise<Buffer> {
    this.gets++
    return super.get(key, options)
  }
}

async function remoteWith(n: number): Promise<{ remote: CountingStore; ids: string[]; raw: Buffer[] }> {
  const remote = new CountingStore()
  await remote.open({ create: true })
  const raw = Array.from({ length: n }, (_, i) => bytes(`cached-${i}`, 70_000))
  const ids = raw.map((r) => toHex(hashBytes(r)))
  for (let i = 0; i < n; i++) await remote.put(objectKey('chunk', ids[i]!), encodeObject(raw[i]!))
  return { remote, ids, raw }
}

const cacheFile = (dir: string, id: string): string => path.join(dir, 'chunks', id.slice(0, 2), id)

describe('CachingStore (a disk cache over a store)', () => {
  it('keeps what it fetched, then serves it from the cache, verified, across restarts', async () => {
    const { remote, ids, raw } = await remoteWith(2)
    const dir = tempDir()
    const first = new CachingStore(remote, new DiskCache(dir))
    await first.open()
    for (const id of ids) expect((await getChunk(first, id)).cached).toBeUndefined()
    await first.close() // waits for the cache writes
    expect(remote.gets).toBe(2)

    const second = new CachingStore(remote, new DiskCache(dir))
    await second.open()
    for (const [i, id] of ids.entries()) {
      const chunk = await getChunk(second, id)
      expect(chunk.cached).toBe(true)
      expect(chunk.raw.equals(raw[i]!)).toBe(true)
    }
    expect(remote.gets).toBe(2)
    await second.close()
  })

  it('a damaged cache copy is dropped and the chunk fetched again from the store', async () => {
    const { remote, ids, raw } = await remoteWith(1)
    const dir = tempDir()
    const first = new CachingStore(remote, new DiskCache(dir))
    await first.open()
    await getChunk(first, ids[0]!)
    await first.close()

    writeFileSync(cacheFile(dir, ids[0]!), encodeObject(bytes('garbage', 70_000)))
    const second = new CachingStore(remote, new DiskCache(dir))
    await second.open()
    const chunk = await getChunk(second, ids[0]!)
    expect(chunk.cached).toBeUndefined()
    expect(chunk.raw.equals(raw[0]!)).toBe(true)
    expect(remote.gets).toBe(2)
    await second.close()
    // and the good copy replaced the damaged one
    const third = new CachingStore(remote, new DiskCache(dir))
    await third.open()
    expect((await getChunk(third, ids[0]!)).cached).toBe(true)
    expect(remote.gets).toBe(2)
    await third.close()
  })

  it('a chunk damaged in the store is an error and is never cached', async () => {
    const { remote, ids } = await remoteWith(1)
    await remote.put(objectKey('chunk', ids[0]!), encodeObject(bytes('other', 70_000)))
    const dir = tempDir()
    const cached = new CachingStore(remote, new DiskCache(dir))
    await cached.open()
    await expect(getChunk(cached, ids[0]!)).rejects.toMatchObject({ code: 'ERR_OBJECT_CORRUPT', message: expect.stringContaining(remote.url) as unknown })
    await cached.close()
    expect(readdirSync(path.join(dir, 'chunks'))).toEqual([])
  })

  it('a chunk shorter than a ref needs is corrupt, from the cache as from the store', async () => {
    const { remote, ids } = await remoteWith(1)
    const cached = new CachingStore(remote, new DiskCache(tempDir()))
    await cached.open()
    await expect(getChunk(cached, ids[0]!, { needs: 70_001 })).rejects.toMatchObject({ code: 'ERR_OBJECT_CORRUPT' })
    await getChunk(cached, ids[0]!, { needs: 70_000 })
    await cached.settle()
    await expect(getChunk(cached, ids[0]!, { needs: 70_001 })).rejects.toMatchObject({ code: 'ERR_OBJECT_CORRUPT' })
    // the copy is the chunk its ID names: the tree is at fault, and the copy stays
    expect((await getChunk(cached, ids[0]!, { needs: 70_000 })).cached).toBe(true)
    expect(remote.gets).toBe(2)
    await cached.close()
  })

  it('trees and other objects come from the store; closing leaves the store open', async () => {
    const { remote } = await remoteWith(0)
    await remote.put('trees/aa/t', Buffer.from('tree'))
    const cached = new CachingStore(remote, new DiskCache(tempDir()))
    await cached.open()
    expect((await cached.get('trees/aa/t')).toString()).toBe('tree')
    expect(await cached.size('trees/aa/t')).toBe(4)
    await cached.close()
    expect((await remote.get('trees/aa/t')).toString()).toBe('tree')
  })
})

it('the disk cache evicts the least recently used objects past its cap', async () => {
  const dir = tempDir()
  const cache = await DiskCache.open(dir, 250_000)
  const objs = Array.from({ length: 4 }, (_, i) => encodeObject(bytes(`o${i}`, 100_000)))
  const keys = objs.map((_, i) => objectKey('chunk', `${i}`.repeat(64)))
  await cache.put(keys[0]!, objs[0]!)
  await cache.put(keys[1]!, objs[1]!)
  expect(await cache.get(keys[0]!)).toBeDefined() // 0 is now more recent than 1
  await cache.put(keys[2]!, objs[2]!)
  await expect(cache.get(keys[1]!)).rejects.toMatchObject({ code: 'ERR_OBJECT_MISSING' })
  expect((await cache.get(keys[0]!)).equals(objs[0]!)).toBe(true)
  expect(cache.usedBytes).toBeLessThanOrEqual(250_000)
  const onDisk = readdirSync(path.join(dir, 'chunks'), { recursive: true }).filter((f) => String(f).length > 3)
  expect(onDisk.length).toBe(2)
  await cache.close()
})
