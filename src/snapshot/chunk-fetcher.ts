import type { Tree } from '../format/tree.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { describeUsers } from '../store/chunk-users.js'

/**
 * Fetches and verifies the chunks of one snapshot for pull. Concurrent requests for a chunk share one
 * read, and recently read chunks are kept (bounded) because packed small files (pack-groups.ts) come
 * in runs that slice the same chunks. A chunk of zeros comes back as null, so the caller leaves a hole.
 * Damage is reported once per chunk, naming the files that use it.
 */
export class ChunkFetcher {
  private readonly recent = new Map<string, Promise<Buffer | null>>()

  constructor(
    readonly store: ReadStore,
    private readonly tree: Tree,
    private readonly capacity = 64,
  ) {}

  get(id: string): Promise<Buffer | null> {
    const hit = this.recent.get(id)
    if (hit) {
      // refresh: Map order is the eviction order
      this.recent.delete(id)
      this.recent.set(id, hit)
      return hit
    }
    const p = this.read(id)
    p.catch(() => this.recent.delete(id)) // a failure is not remembered
    this.recent.set(id, p)
    if (this.recent.size > this.capacity) this.recent.delete(this.recent.keys().next().value!)
    return p
  }

  private async read(id: string): Promise<Buffer | null> {
    try {
      const { raw: data } = await getChunk(this.store, id)
      return isAllZero(data) ? null : data
    } catch (err) {
      if (isObjectDamage(err)) {
        const why = err.code === 'ERR_OBJECT_MISSING' ? `chunk ${id} is missing from ${this.store.url}` : err.message
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${why}${describeUsers(this.tree, id)}`, { cause: err, data: { chunk: id } })
      }
      throw err
    }
  }
}

const ZEROS = Buffer.alloc(64 * 1024)

function isAllZero(b: Buffer): boolean {
  // compare against zeros in large slices: fast, and exits at once on ordinary data
  if (b.length === 0 || b[0] !== 0) return false
  for (let i = 0; i < b.length; i += ZEROS.length) {
    const part = b.subarray(i, i + ZEROS.length)
    if (!part.equals(ZEROS.subarray(0, part.length))) return false
  }
  return true
}
