// A store read through a local cache, composed of two stores as desync's Cache{s, l}: chunks come from
// the local one when it has them and from the remote one otherwise, and a chunk fetched is kept
// locally. Every copy is verified when it is read, the cached one too (a damaged cache file is dropped
// and the chunk fetched again), and only a verified chunk is ever kept. Tree roots and tree parts are
// kept the same way (immutable and named by their hash like chunks: a second mount of an image reads
// its metadata from local disk); other objects (refs, the config) come from the remote store, uncached.
import { decodeObject } from '../format/object.js'
import { checkChunkLength, getChunk, verifyChunk, type ChunkReadOptions, type ChunkSource, type VerifiedChunk } from './chunks.js'
import { StoreLifecycle } from './lifecycle.js'
import { objectDirectory, objectKey } from './objects.js'
import type { OpenOptions, PruneStore, ReadOptions, ReadStore, StoreSpec } from './store.js'
import { abortedError } from '../util/errors.js'

/**
 * The cache (`local`) is this store's: close() waits for the cache writes under way and closes it.
 * The remote store is its owner's to close.
 */
export class CachingStore extends StoreLifecycle implements ReadStore, ChunkSource {
  readonly url: string
  readonly spec: StoreSpec
  private readonly writes = new Set<Promise<void>>()

  constructor(
    readonly remote: ReadStore,
    readonly local: PruneStore,
  ) {
    super()
    this.url = remote.url
    this.spec = remote.spec
  }

  protected async openStore(create: boolean): Promise<void> {
    const options: OpenOptions = create ? { create } : {}
    await Promise.all([this.remote.open(options), this.local.open({ create: true })])
  }

  protected override async closeStore(): Promise<void> {
    await this.settle()
    await this.local.close()
  }

  has(key: string): Promise<boolean> {
    return this.remote.has(key)
  }

  size(key: string): Promise<number | null> {
    return this.remote.size(key)
  }

  /**
   * The object as stored: a tree root or part from the cache when it holds a copy that matches its
   * name, else from the remote store (and then kept); anything else from the remote store. Chunks are
   * read through getChunk (chunks.ts), which comes to getChunk below.
   */
  async get(key: string, options?: ReadOptions): Promise<Buffer> {
    const id = cachedTreeObject(key)
    if (id === null) return this.remote.get(key, options)
    if (await this.local.has(key)) {
      const stored = await this.local.get(key, options).catch(() => null)
      if (options?.signal?.aborted) throw abortedError(`reading ${key} from the disk cache ${this.local.url}`, options.signal)
      if (stored && matchesName(stored, id)) return stored
      await this.local.delete(key).catch(() => {}) // damaged: fetched again
    }
    const stored = await this.remote.get(key, options)
    // kept only once it is known to be the object its key names (the reader checks it again, cheaply)
    if (matchesName(stored, id)) this.keep(key, stored)
    return stored
  }

  list(prefix: string): AsyncIterable<string> {
    return this.remote.list(prefix)
  }

  async getChunk(id: string, options: ChunkReadOptions): Promise<VerifiedChunk> {
    return (await this.cachedChunk(id, options)) ?? (await this.fetchChunk(id, options))
  }

  /**
   * The chunk from the cache, verified, or null when the cache does not have it (or had a damaged
   * copy, now dropped). Costs no store request: a mount answers these before it queues for a fetch.
   */
  async cachedChunk(id: string, options: ChunkReadOptions = {}): Promise<VerifiedChunk | null> {
    const key = objectKey('chunk', id)
    const { signal } = options
    if (!(await this.local.has(key))) return null
    // a cache that cannot be read (gone, a disk error) only costs a fetch
    const stored = await this.local.get(key, signal ? { signal } : {}).catch(() => null)
    if (signal?.aborted) throw abortedError(`reading chunk ${id} from the disk cache ${this.local.url}`, signal)
    if (!stored) return null
    let raw: Buffer
    try {
      raw = verifyChunk(stored, id, `the disk cache ${this.local.url}`)
    } catch {
      await this.local.delete(key).catch(() => {}) // damaged: fetched again
      return null
    }
    // the chunk is the one its ID names, so one shorter than a ref is the tree's fault, not the cache's
    if (options.needs !== undefined) checkChunkLength(raw, id, options.from ?? this.remote.url, options.needs)
    return { raw, stored, cached: true }
  }

  /** The chunk from the remote store, verified, and kept in the cache. */
  async fetchChunk(id: string, options: ChunkReadOptions = {}): Promise<VerifiedChunk> {
    const chunk = await getChunk(this.remote, id, options)
    this.keep(objectKey('chunk', id), chunk.stored)
    return chunk
  }

  /** Resolves once the cache writes started so far are done. */
  async settle(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes])
  }

  /**
   * Writes a verified chunk to the cache once the read that fetched it has its answer: reads do not
   * wait for cache writes, and a full or read-only cache disk only costs speed.
   */
  private keep(key: string, stored: Buffer): void {
    if (this.closing) return // a fetch that ended after close(): the cache is closed
    const write = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.local.put(key, stored))
      .catch(() => {})
      .finally(() => this.writes.delete(write))
    this.writes.add(write)
  }
}

/** Tree roots and parts are kept in the cache: their ID (from the key), or null for other objects. */
const TREE_DIRS = [objectDirectory('tree'), objectDirectory('tree-part')]
function cachedTreeObject(key: string): string | null {
  const [top, , id] = key.split('/')
  return top !== undefined && TREE_DIRS.includes(top) && id !== undefined && /^[0-9a-f]{64}$/.test(id) ? id : null
}

function matchesName(stored: Buffer, id: string): boolean {
  try {
    decodeObject(stored, id, `tree object ${id}`)
    return true
  } catch {
    return false
  }
}
