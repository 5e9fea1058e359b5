// The one way to read a chunk: fetch the stored object, decode it and re-hash it against its ID, and
// check it is long enough for what the caller will read of it. Pull, mount, sync, verify and tree-file
// reads all come through here, so a chunk is never used unverified and every damage message reads alike.
import { decodeObject, decodeObjectAsync } from '../format/object.js'
import { SnapdirError } from '../util/errors.js'
import { objectKey } from './objects.js'
import type { ReadStore } from './store.js'

export interface ChunkReadOptions {
  /** the furthest byte a ref reads of this chunk (offset + length); a shorter chunk is corrupt */
  needs?: number
  signal?: AbortSignal
  /** how messages name where the object came from; default the store's URL */
  from?: string
}

export interface VerifiedChunk {
  /** the chunk's content, hashed and checked against its ID */
  raw: Buffer
  /** the object as the store holds it (header, maybe compressed): what sync copies and caches keep */
  stored: Buffer
  /** the bytes came out of a local cache over the store (CachingStore), not the store itself */
  cached?: true
}

/**
 * A store that reads chunks itself, verified as getChunk does: a cache over another store
 * (caching-store.ts), which checks its own copy and fetches a damaged one again.
 */
export interface ChunkSource {
  getChunk(id: string, options: ChunkReadOptions): Promise<VerifiedChunk>
}

function isChunkSource(store: ReadStore): store is ReadStore & ChunkSource {
  return typeof (store as Partial<ChunkSource>).getChunk === 'function'
}

/** Reads, decodes and verifies a chunk. ERR_OBJECT_MISSING / ERR_OBJECT_CORRUPT name the chunk and store. */
export async function getChunk(store: ReadStore, id: string, options: ChunkReadOptions = {}): Promise<VerifiedChunk> {
  if (isChunkSource(store)) return store.getChunk(id, options)
  const stored = await store.get(objectKey('chunk', id), options.signal ? { signal: options.signal } : undefined)
  // decoded and hashed on the libuv pool: a reader fetching ahead (a pull, a recipe) keeps the JS thread free
  const from = options.from ?? store.url
  const raw = await decodeObjectAsync(stored, id, `chunk ${id} from ${from}`)
  if (options.needs !== undefined) checkChunkLength(raw, id, from, options.needs)
  return { raw, stored }
}

/**
 * Checks stored bytes already in hand as getChunk does; returns the raw content. `from` names where
 * they came from ("/srv/store", "the disk cache").
 */
export function verifyChunk(stored: Buffer, id: string, from: string, needs?: number): Buffer {
  const raw = decodeObject(stored, id, `chunk ${id} from ${from}`)
  if (needs !== undefined) checkChunkLength(raw, id, from, needs)
  return raw
}

/** A verified chunk shorter than a ref reads of it: the tree and the chunk disagree (ERR_OBJECT_CORRUPT). */
export function checkChunkLength(raw: Buffer, id: string, from: string, needs: number): void {
  if (raw.length < needs) {
    throw new SnapdirError('ERR_OBJECT_CORRUPT', `chunk ${id} from ${from} has ${raw.length} bytes, the tree reads up to ${needs}`, {
      data: { id, length: raw.length, needs },
    })
  }
}
