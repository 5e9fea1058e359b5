// A read store over another that shares chunk reads: each chunk is fetched (and verified) once however
// many readers ask for it, and chunks can be asked for ahead of need. A mount resolving an image reads
// index.json, a manifest and a config one after another, each waiting on the one before; fetching the
// chunks of the bundle's small files at once first turns those round trips into one. Meant to live as
// long as one such walk: it keeps every chunk it was asked for.
import { getChunk, checkChunkLength, type ChunkReadOptions, type ChunkSource, type VerifiedChunk } from './chunks.js'
import type { OpenOptions, ReadOptions, ReadStore, StoreSpec } from './store.js'

export class SharedChunks implements ReadStore, ChunkSource {
  readonly url: string
  readonly spec: StoreSpec
  private readonly chunks = new Map<string, Promise<VerifiedChunk>>()

  constructor(private readonly store: ReadStore) {
    this.url = store.url
    this.spec = store.spec
  }

  /** Starts fetching chunks nobody waits for yet; a failure surfaces on the read that needs the chunk. */
  warm(ids: Iterable<string>): void {
    for (const id of ids) this.load(id).catch(() => {})
  }

  async getChunk(id: string, options: ChunkReadOptions): Promise<VerifiedChunk> {
    const chunk = await this.load(id)
    if (options.needs !== undefined) checkChunkLength(chunk.raw, id, options.from ?? this.url, options.needs)
    return chunk
  }

  private load(id: string): Promise<VerifiedChunk> {
    let p = this.chunks.get(id)
    if (!p) {
      p = getChunk(this.store, id)
      // a failed fetch is not remembered: the next read tries again
      p.catch(() => this.chunks.delete(id))
      this.chunks.set(id, p)
    }
    return p
  }

  open(options?: OpenOptions): Promise<void> {
    return this.store.open(options)
  }

  /** The store underneath is its owner's to close. */
  async close(): Promise<void> {}

  has(key: string): Promise<boolean> {
    return this.store.has(key)
  }

  size(key: string): Promise<number | null> {
    return this.store.size(key)
  }

  get(key: string, options?: ReadOptions): Promise<Buffer> {
    return this.store.get(key, options)
  }

  list(prefix: string): AsyncIterable<string> {
    return this.store.list(prefix)
  }
}
