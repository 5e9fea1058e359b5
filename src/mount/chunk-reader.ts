// Verified chunk reads for a mount: a memory LRU (bounded in bytes) over the store, or over the store
// through a local disk cache (store/caching-store.ts). Concurrent reads of one chunk share one load, a
// disk cache hit is answered at once, at most `jobs` store fetches run at once, and a fetch that has
// not delivered `timeoutMs` after it began (waiting for a slot included) fails, so a read becomes EIO
// in bounded time rather than hanging; its request is cancelled. Bytes only ever come out of getChunk (store/chunks.ts), which re-hashes them.
//
// A chunk whose load timed out fails again at once for the next `timeoutMs`: when a read-ahead read
// fails the kernel reads the same pages again one by one, and each of those would wait out the
// timeout again (`mount --timeout 5` answered a read() with EIO after 10 s and more).
import { LRUCache } from 'lru-cache'
import { CachingStore } from '../store/caching-store.js'
import { getChunk } from '../store/chunks.js'
import type { DiskCache } from '../store/disk-cache.js'
import type { ReadStore } from '../store/store.js'
import { Semaphore } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

export interface ChunkReaderOptions {
  memoryBytes: number
  /**
   * a local cache for fetched chunks, handed over: the reader's close() closes it; or the cache over
   * `store` already made (a mount loads its view through it first), handed over the same way
   */
  diskCache: DiskCache | CachingStore | null
  /** loads (store requests) in flight at most */
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
  /** bytes of chunks the memory cache holds now, and the most it held at once (at most memoryBytes) */
  memoryCachedBytes: number
  memoryCachePeakBytes: number
}

export class ChunkReader {
  private readonly memory: LRUCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  /** chunks whose load timed out lately, and the error */
  private readonly timedOut: LRUCache<string, SnapdirError>
  /** one per load under way: aborted by its timeout or by close() */
  private readonly loads = new Set<AbortController>()
  private readonly slots: Semaphore
  private readonly cache: CachingStore | null
  private closing: Promise<void> | null = null
  private readonly counts = { fetched: 0, fetchedBytes: 0, diskHits: 0, memoryHits: 0, failures: 0 }
  private memoryPeak = 0

  constructor(
    private readonly store: ReadStore,
    private readonly options: ChunkReaderOptions,
  ) {
    const { onEvicted } = options
    this.memory = new LRUCache<string, Buffer>({
      maxSize: options.memoryBytes,
      sizeCalculation: (b) => Math.max(1, b.length),
      ...(onEvicted ? { dispose: (_: Buffer, id: string) => onEvicted(id) } : {}),
    })
    this.timedOut = new LRUCache<string, SnapdirError>({ max: 4096, ttl: options.timeoutMs })
    this.slots = new Semaphore(options.jobs)
    const { diskCache } = options
    this.cache = diskCache instanceof CachingStore ? diskCache : diskCache ? new CachingStore(store, diskCache) : null
  }

  get stats(): ChunkReaderStats {
    return { ...this.counts, memoryCachedBytes: this.memory.calculatedSize, memoryCachePeakBytes: this.memoryPeak }
  }

  /**
   * The chunk's bytes, verified. Throws ERR_OBJECT_MISSING / ERR_OBJECT_CORRUPT / ERR_STORE_* errors,
   * ERR_STORE_UNREACHABLE when the store did not deliver in time, ERR_ABORTED once the reader is closed.
   */
  get(id: string): Promise<Buffer> {
    if (this.closing) return Promise.reject(closedError(id))
    const hit = this.memory.get(id)
    if (hit) {
      this.counts.memoryHits++
      return Promise.resolve(hit)
    }
    let p = this.inflight.get(id)
    if (!p) {
      const timedOut = this.timedOut.get(id)
      if (timedOut) return Promise.reject(timedOut)
      p = this.load(id).finally(() => this.inflight.delete(id))
      this.inflight.set(id, p)
    }
    return p
  }

  /** Starts loading a chunk nobody waits for yet (read-ahead); failures surface on the real read. */
  prefetch(id: string): void {
    if (this.closing || this.memory.has(id) || this.inflight.has(id)) return
    this.get(id).catch(() => {})
  }

  /**
   * Loads a chunk ahead of need (a trace's prefetch) and resolves once it is in memory, the disk cache
   * included, or its load failed (the read that needs it tries again); at once when it is in memory
   * already or the reader is closed. Resolves with the chunk's size, 0 when nothing was loaded.
   */
  async fetchAhead(id: string): Promise<number> {
    if (this.closing || this.memory.has(id)) return 0
    try {
      return (await this.get(id)).length
    } catch {
      return 0
    }
  }

  /** The chunks in the memory cache now, with their bytes (a mount lends them to its C side once up). */
  held(): IterableIterator<[string, Buffer]> {
    return this.memory.entries()
  }

  /**
   * Ends the reader: loads under way are aborted (their store requests cancelled) and fail with
   * ERR_ABORTED, later reads too; then the disk cache's writes are waited for and the cache closed.
   * Idempotent. The store stays open: it is its owner's to close.
   */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const load of this.loads) load.abort(closedError())
      await Promise.allSettled([...this.inflight.values()])
      await this.cache?.close()
    })())
  }

  private async load(id: string): Promise<Buffer> {
    // a disk cache hit is a local read: it takes no store slot and no timeout
    const hit = await this.cache?.cachedChunk(id).catch(() => null)
    if (hit) {
      this.counts.diskHits++
      if (!this.closing) this.remember(id, hit.raw)
      return hit.raw
    }
    const control = new AbortController()
    const { signal } = control
    this.loads.add(control)
    const seconds = this.options.timeoutMs / 1000
    const timer = setTimeout(() => {
      const timedOut = new SnapdirError('ERR_STORE_UNREACHABLE', `${this.store.url} did not answer for chunk ${id} within ${seconds} s`, { data: { chunk: id } })
      this.timedOut.set(id, timedOut)
      control.abort(timedOut)
    }, this.options.timeoutMs)
    try {
      await this.slots.acquire(signal)
      let chunk
      try {
        // raced against the signal: the read is answered in time even where a store is slow to give up
        const fetching = this.cache ? this.cache.fetchChunk(id, { signal }) : getChunk(this.store, id, { signal })
        chunk = await Promise.race([fetching, whenAborted(signal)])
      } finally {
        this.slots.release()
      }
      this.counts.fetched++
      this.counts.fetchedBytes += chunk.stored.length
      if (!this.closing) this.remember(id, chunk.raw)
      return chunk.raw
    } catch (err) {
      this.counts.failures++
      throw signal.aborted ? (signal.reason as Error) : err
    } finally {
      clearTimeout(timer)
      this.loads.delete(control)
    }
  }

  private remember(id: string, raw: Buffer): void {
    this.memory.set(id, raw)
    this.memoryPeak = Math.max(this.memoryPeak, this.memory.calculatedSize)
    if (this.memory.has(id)) this.options.onCached?.(id, raw) // (a chunk larger than the cache is not kept)
  }
}

function closedError(id?: string): SnapdirError {
  return new SnapdirError('ERR_ABORTED', `${id === undefined ? 'chunk reads' : `reading chunk ${id}`}: the chunk reader is closed`)
}

/** Rejects with the signal's reason when it aborts. */
function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
  })
}
