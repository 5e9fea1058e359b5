// Verified chunk reads for a mount: memory LRU (bounded in bytes) over the local disk cache over the
// store. Concurrent reads of one chunk share one fetch, at most `jobs` store requests run at once, and
// a request that takes longer than `timeoutMs` fails (the read becomes EIO) rather than hanging. Bytes
// only ever come out of verifyChunk (store/chunks.ts), which re-hashes them against the chunk's ID.
import { LRUCache } from 'lru-cache'
import { verifyChunk } from '../store/chunks.js'
import { objectKey } from '../store/objects.js'
import type { DiskCache } from '../store/disk-cache.js'
import type { Store } from '../store/store.js'
import { Semaphore } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

export interface ChunkReaderOptions {
  memoryBytes: number
  diskCache: DiskCache | null
  /** store requests in flight at most */
  jobs: number
  timeoutMs: number
  /** a chunk entered the memory cache / left it (the mount lends them to its C side in between) */
  onCached?: (id: string, raw: Buffer) => void
  onEvicted?: (id: string) => void
}

export interface ChunkReaderStats {
  /** chunks fetched from the store, and their stored bytes */
  fetched: number
  fetchedBytes: number
  diskHits: number
  memoryHits: number
  failures: number
}

export class ChunkReader {
  private readonly memory: LRUCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  private readonly cacheWrites = new Set<Promise<void>>()
  private readonly slots: Semaphore
  readonly stats: ChunkReaderStats = { fetched: 0, fetchedBytes: 0, diskHits: 0, memoryHits: 0, failures: 0 }

  constructor(
    private readonly store: Store,
    private readonly options: ChunkReaderOptions,
  ) {
    const { onEvicted } = options
    this.memory = new LRUCache<string, Buffer>({
      maxSize: options.memoryBytes,
      sizeCalculation: (b) => Math.max(1, b.length),
      ...(onEvicted ? { dispose: (_: Buffer, id: string) => onEvicted(id) } : {}),
    })
    this.slots = new Semaphore(options.jobs)
  }

  /** The chunk's bytes, verified. Throws ERR_OBJECT_MISSING / ERR_OBJECT_CORRUPT / ERR_STORE_* errors. */
  get(id: string): Promise<Buffer> {
    const hit = this.memory.get(id)
    if (hit) {
      this.stats.memoryHits++
      return Promise.resolve(hit)
    }
    let p = this.inflight.get(id)
    if (!p) {
      p = this.load(id).finally(() => this.inflight.delete(id))
      this.inflight.set(id, p)
    }
    return p
  }

  /** Resolves once the disk cache writes started so far are done (before the process exits). */
  async settle(): Promise<void> {
    while (this.cacheWrites.size > 0) await Promise.all([...this.cacheWrites])
  }

  /** Starts loading a chunk nobody waits for yet (read-ahead); failures surface on the real read. */
  prefetch(id: string): void {
    if (this.memory.has(id) || this.inflight.has(id)) return
    this.get(id).catch(() => {})
  }

  private async load(id: string): Promise<Buffer> {
    const cache = this.options.diskCache
    const cached = await cache?.get(id).catch(() => null)
    if (cached) {
      try {
        const raw = verifyChunk(cached, id, 'the disk cache')
        this.stats.diskHits++
        this.remember(id, raw)
        return raw
      } catch {
        await cache!.drop(id) // damaged cache file: fetch it again
      }
    }
    let stored: Buffer
    try {
      stored = await this.fetch(id)
    } catch (err) {
      this.stats.failures++
      throw err
    }
    let raw: Buffer
    try {
      raw = verifyChunk(stored, id, this.store.url)
    } catch (err) {
      this.stats.failures++
      throw err
    }
    this.stats.fetched++
    this.stats.fetchedBytes += stored.length
    this.remember(id, raw)
    if (cache) {
      // not awaited by the read; a full or read-only cache disk only costs speed
      const write = cache.put(id, stored).catch(() => {})
      this.cacheWrites.add(write)
      void write.finally(() => this.cacheWrites.delete(write))
    }
    return raw
  }

  private remember(id: string, raw: Buffer): void {
    this.memory.set(id, raw)
    if (this.memory.has(id)) this.options.onCached?.(id, raw) // (a chunk larger than the cache is not kept)
  }

  private async fetch(id: string): Promise<Buffer> {
    await this.slots.acquire()
    let timer: NodeJS.Timeout | undefined
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new SnapdirError('ERR_STORE_UNREACHABLE', `${this.store.url} did not answer for chunk ${id} within ${this.options.timeoutMs / 1000} s`)),
          this.options.timeoutMs,
        )
      })
      return await Promise.race([this.store.get(objectKey('chunk', id)), timeout])
    } finally {
      clearTimeout(timer)
      this.slots.release()
    }
  }
}
