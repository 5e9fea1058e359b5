// The one way a layer blob stored as a recipe (format/recipe.ts) becomes bytes again: the framing
// stream and the layer tree's file contents, every chunk verified (store/chunks.ts getChunk), put
// back together into the tar, compressed as the recipe says, and hashed as it streams: the tar against
// the diff_id, the blob against its digest and size. Pull (to a directory and --tar), the mount's tree
// view, verify and push's own check all read recipes through here.
//
// Bytes are handed out as they are made, before the last hash is known: a caller writes them where
// nothing uses them yet (a temporary file, the pull's temporary directory) and puts them in place only
// once the stream ended without error. A mismatch, a missing or damaged chunk, a recipe that does not
// fit its tree: an ERR_SNAPSHOT_DAMAGED naming the blob and its layer.
import { createHash } from 'node:crypto'
import { toHex } from '../format/id.js'
import type { Recipe, RecipeCompression } from '../format/recipe.js'
import type { ChunkRef, Tree } from '../format/tree.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, readRecipe, readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { createDeflateEncoder, type DeflateParams } from './compress/compressor.js'
import { createGzipMember } from './compress/gzip-member.js'

export interface RegenerateOptions {
  store: ReadStore
  recipe: Recipe
  /** the layer tree the recipe names, if the caller has it (push's check); else read from the store */
  tree?: Tree
  signal?: AbortSignal
}

/** How messages name a recipe's blob: "blob sha256:… (layer sha256:…)". */
export function recipeBlobName(recipe: Recipe): string {
  return `blob ${recipe.digest} (layer ${recipe.diffId})`
}

/** Chunks read ahead of the one being copied. */
const AHEAD = 32

function damagedError(recipe: Recipe): (why: string, cause?: unknown) => SnapdirError {
  const name = recipeBlobName(recipe)
  return (why, cause) =>
    new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${name}: ${why}`, { ...(cause === undefined ? {} : { cause }), data: { blob: recipe.digest, layer: recipe.diffId } })
}

/** Turns the tar into the blob, as the recipe's compression says: write() and end() give the blob's next bytes. */
export interface BlobCompressor {
  write(tar: Buffer): Buffer[]
  end(): Buffer[]
}

/**
 * Go's compress/flate at levels 2..9 gives other bytes for other splits of its input into writes
 * (docs/go-flate.md); writes of whole 32 KiB pieces give what one large write gives, and what
 * dockerd's io.Copy gives. Regeneration, and push's search for the compressor, feed it so.
 */
const DEFLATE_WRITE = 32 * 1024

/** The compressor a recipe names; ERR_SNAPSHOT_DAMAGED naming the blob for one this snapdir does not have. */
export function blobCompressor(compression: RecipeCompression, recipe?: Recipe): BlobCompressor {
  if (compression.kind === 'none') return { write: (tar) => [tar], end: () => [] }
  const params = { family: compression.family, level: compression.level, ...(compression.blockSize > 0 ? { blockSize: compression.blockSize } : {}) } as DeflateParams
  let encoder
  try {
    encoder = createDeflateEncoder(params)
  } catch (err) {
    // a family a newer snapdir wrote, or a level this one refuses
    const why = `its recipe compresses with ${compression.family} deflate level ${compression.level}, which this snapdir cannot regenerate`
    throw recipe ? damagedError(recipe)(why, err) : err
  }
  const member = createGzipMember({ headerBytes: compression.header, encoder })
  const block = Buffer.allocUnsafe(DEFLATE_WRITE)
  let fill = 0
  return {
    write(tar) {
      const out: Buffer[] = []
      for (let at = 0; at < tar.length; ) {
        const n = Math.min(DEFLATE_WRITE - fill, tar.length - at)
        tar.copy(block, fill, at, at + n)
        fill += n
        at += n
        if (fill === DEFLATE_WRITE) {
          const b = member.write(block)
          if (b.length > 0) out.push(b)
          fill = 0
        }
      }
      return out
    },
    end() {
      const out: Buffer[] = []
      if (fill > 0) out.push(member.write(block.subarray(0, fill)))
      out.push(member.end())
      return out.filter((b) => b.length > 0)
    },
  }
}

/**
 * The blob a recipe gives back, as a stream of pieces; it ends only once the blob hashed to its
 * digest. A piece may view a chunk shared with later pieces: the caller copies what it keeps.
 */
export async function* regenerateBlob(options: RegenerateOptions): AsyncGenerator<Buffer> {
  const { recipe } = options
  const damaged = damagedError(recipe)
  const compressor = blobCompressor(recipe.compression, recipe)
  // uncompressed, the blob is the tar, which regenerateTar hashes against the diff_id: once is enough
  const blobHash = recipe.compression.kind === 'none' ? null : createHash('sha256')
  let size = 0
  const out = (piece: Buffer): Buffer => {
    size += piece.length
    if (size > recipe.size) throw damaged(`its recipe gives more than the blob's ${recipe.size} bytes`)
    blobHash?.update(piece)
    return piece
  }
  for await (const tar of regenerateTar(options)) for (const piece of compressor.write(tar)) yield out(piece)
  for (const piece of compressor.end()) yield out(piece)
  const digest = blobHash ? `sha256:${blobHash.digest('hex')}` : recipe.diffId
  if (digest !== recipe.digest || size !== recipe.size) throw damaged(`the blob regenerated from its recipe hashes to ${digest} (${size} bytes), not to its digest`)
}

/**
 * The layer's tar a recipe gives back, every chunk verified; it ends only once the tar hashed to the
 * layer's diff_id and had its size.
 */
export async function* regenerateTar(options: RegenerateOptions): AsyncGenerator<Buffer> {
  const { recipe } = options
  const damaged = damagedError(recipe)
  let tree = options.tree
  if (tree === undefined) {
    try {
      tree = await readTree(options.store, recipe.tree)
    } catch (err) {
      if (err instanceof SnapdirError && ['ERR_SNAPSHOT_NOT_FOUND', 'ERR_OBJECT_MISSING', 'ERR_OBJECT_CORRUPT', 'ERR_TREE_MALFORMED'].includes(err.code)) {
        throw damaged(err.code === 'ERR_SNAPSHOT_NOT_FOUND' ? `its layer tree ${recipe.tree} is missing from ${options.store.url}` : err.message, err)
      }
      throw err
    }
  }
  const contents = tree.entries
  // the order chunks are read in, so they can be fetched ahead
  const plan: Array<ChunkRef[] | Buffer> = []
  const contentOf = (source: number | ChunkRef[], i: number): ChunkRef[] | Buffer => {
    if (typeof source !== 'number') return source
    const e = contents[source]
    if (e === undefined || e.type !== 'file' || e.recipe !== undefined) throw damaged(`its recipe's segment ${i} names entry ${source}, which is not a file of layer tree ${recipe.tree}`)
    return e.inline ?? e.chunks
  }
  recipe.segments.forEach((s, i) => plan.push(contentOf(s.source, i)))

  const reader = new OrderedChunks(options.store, damaged, options.signal)
  const framing = new RefCursor(recipe.framing, reader)
  for (const refs of [recipe.framing, ...plan]) if (!Buffer.isBuffer(refs)) reader.plan(refs)

  const tarHash = createHash('sha256')
  let tarBytes = 0
  const out = (piece: Buffer): Buffer => {
    tarBytes += piece.length
    if (tarBytes > recipe.tarSize) throw damaged(`its recipe gives more than the tar's ${recipe.tarSize} bytes`)
    tarHash.update(piece)
    return piece
  }
  try {
    for (const [i, s] of recipe.segments.entries()) {
      for await (const piece of framing.take(s.framing)) yield out(piece)
      const content = plan[i]!
      if (Buffer.isBuffer(content)) yield out(content)
      else for await (const piece of new RefCursor(content, reader).take(Infinity)) yield out(piece)
    }
    for await (const piece of framing.take(recipe.tail)) yield out(piece)
  } finally {
    reader.close()
  }
  if (tarBytes !== recipe.tarSize) throw damaged(`its recipe gives ${tarBytes} bytes of tar, not ${recipe.tarSize}`)
  const diffId = `sha256:${tarHash.digest('hex')}`
  if (diffId !== recipe.diffId) throw damaged(`the tar regenerated from its recipe hashes to ${diffId}, not to its diff_id`)
}

/**
 * The blob of stored recipe `id`, whole, written through `write` in order (awaited: backpressure);
 * resolves once it hashed to its digest. `shownAs` names the file in messages (the bundle's path).
 */
export async function writeRecipeBlob(store: ReadStore, id: string, write: (piece: Buffer) => Promise<void> | void, options: { shownAs?: string; signal?: AbortSignal; tree?: Tree } = {}): Promise<Recipe> {
  let recipe: Recipe
  try {
    ;({ recipe } = await readRecipe(store, id, options.signal ? { signal: options.signal } : {}))
  } catch (err) {
    if (isObjectDamage(err)) {
      throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${options.shownAs ?? 'a layer blob'}: ${err.message}`, { cause: err, data: { recipe: id } })
    }
    throw err
  }
  for await (const piece of regenerateBlob({ store, recipe, ...(options.signal ? { signal: options.signal } : {}), ...(options.tree ? { tree: options.tree } : {}) })) {
    await write(piece)
  }
  return recipe
}

/** Reads a ref list as one byte stream, in order, `take(n)` bytes at a time. */
class RefCursor {
  private i = 0
  private rep = 0
  private inner = 0

  constructor(private readonly refs: ChunkRef[], private readonly reader: OrderedChunks) {}

  async *take(n: number): AsyncGenerator<Buffer> {
    while (n > 0 && this.i < this.refs.length) {
      const r = this.refs[this.i]!
      const data = await this.reader.get(r)
      const k = Math.min(r.length - this.inner, n)
      yield data.subarray(r.offset + this.inner, r.offset + this.inner + k)
      this.inner += k
      n -= k
      if (this.inner === r.length) {
        this.inner = 0
        if (++this.rep === r.count) {
          this.rep = 0
          this.i++
        }
      }
    }
    if (n > 0 && n !== Infinity) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `a recipe's framing ends ${n} bytes early`)
  }
}

/**
 * Verified chunks in the order they are planned, a few fetched ahead; a chunk read twice in a row
 * (small files packed together slice the same chunks) is fetched once.
 */
class OrderedChunks {
  private readonly order: Array<{ id: string; needs: number }> = []
  private next = 0
  private readonly inFlight = new Map<string, Promise<Buffer>>()
  private last: { id: string; data: Buffer } | null = null
  private closed = false

  constructor(
    private readonly store: ReadStore,
    private readonly damaged: (why: string, cause?: unknown) => SnapdirError,
    private readonly signal: AbortSignal | undefined,
  ) {}

  plan(refs: ChunkRef[]): void {
    for (const r of refs) {
      const id = toHex(r.id)
      const prev = this.order.at(-1)
      if (prev?.id === id) prev.needs = Math.max(prev.needs, r.offset + r.length)
      else this.order.push({ id, needs: r.offset + r.length })
    }
  }

  async get(ref: ChunkRef): Promise<Buffer> {
    const id = toHex(ref.id)
    if (this.last?.id === id) return this.check(this.last.data, id, ref)
    // catch up with the plan to this chunk, fetching ahead of it
    while (this.next < this.order.length && this.order[this.next]!.id !== id) this.next++
    for (let k = this.next; k < Math.min(this.order.length, this.next + AHEAD); k++) void this.fetch(this.order[k]!)
    const planned = this.order[this.next]
    const data = await (this.inFlight.get(id) ?? this.fetch(planned ?? { id, needs: ref.offset + ref.length }))
    this.inFlight.delete(id)
    if (planned) this.next++
    this.last = { id, data }
    return this.check(data, id, ref)
  }

  close(): void {
    this.closed = true
    this.inFlight.clear()
  }

  private check(data: Buffer, id: string, ref: ChunkRef): Buffer {
    if (data.length < ref.offset + ref.length) throw this.damaged(`chunk ${id} has ${data.length} bytes, its recipe reads up to ${ref.offset + ref.length}`)
    return data
  }

  private fetch(c: { id: string; needs: number }): Promise<Buffer> {
    const running = this.inFlight.get(c.id)
    if (running) return running
    const p = getChunk(this.store, c.id, { needs: c.needs, ...(this.signal ? { signal: this.signal } : {}) }).then(
      (v) => v.raw,
      (err: unknown) => {
        if (isObjectDamage(err)) throw this.damaged(err.code === 'ERR_OBJECT_MISSING' ? `chunk ${c.id} is missing from ${this.store.url}` : err.message, err)
        throw err
      },
    )
    p.catch(() => {}) // a read ahead may fail before it is awaited; get() reports it
    if (!this.closed) this.inFlight.set(c.id, p)
    return p
  }
}
