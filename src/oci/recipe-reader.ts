// The one way a layer blob stored as a recipe (format/recipe.ts) becomes bytes again: the framing
// stream and the layer tree's file contents, every chunk verified (store/chunks.ts getChunk), put
// back together into the tar, compressed as the recipe says, and hashed as it streams: the blob against
// its digest and size (a tar given as such, regenerateTar, against the diff_id). Pull (to a directory
// and --tar), the mount's tree view, verify and push's own check all read recipes through here.
//
// Bytes are handed out as they are made, before the last hash is known: a caller writes them where
// nothing uses them yet (a temporary file, the pull's temporary directory) and puts them in place only
// once the stream ended without error. A mismatch, a missing or damaged chunk, a recipe that does not
// fit its tree: an ERR_SNAPSHOT_DAMAGED naming the blob and its layer.
import { createHash } from 'node:crypto'
import os from 'node:os'
import { crc32 } from 'node:zlib'
import { toHex } from '../format/id.js'
import type { Recipe, RecipeCompression, RestartPoint } from '../format/recipe.js'
import type { ChunkRef, Tree } from '../format/tree.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, readRecipe, readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { createDeflateEncoder, type DeflateEncoder, type DeflateParams } from './compress/compressor.js'
import { createGoFlateEncoder, encodeGoFlateSegment, GO_FLATE_START, hasRestartPoints, type GoFlateRestart } from './compress/go-flate.js'
import { createGzipMember, gzipTrailer, type GzipMemberWriter } from './compress/gzip-member.js'
import { createZstdEncoder, type ZstdEncoder } from './compress/zstd.js'

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
/** Chunks kept for a later planned read (at most 256 KiB each: 32 MiB at worst). */
const KEEP = 128

function damagedError(recipe: Recipe): (why: string, cause?: unknown) => SnapdirError {
  const name = recipeBlobName(recipe)
  return (why, cause) =>
    new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${name}: ${why}`, { ...(cause === undefined ? {} : { cause }), data: { blob: recipe.digest, layer: recipe.diffId } })
}

/**
 * Turns the tar into the blob, as the recipe's compression says. The encoder runs on the libuv pool
 * (and pgzip's blocks and Go's segments on several threads) while the caller goes on assembling the tar:
 * write() only takes the bytes; `inFlight` counts the pieces of work given to the encoder and not yet
 * taken, take() waits for the oldest, in order; end() gives the rest. One caller, each take() and
 * end() awaited before the next call.
 */
export interface BlobCompressor {
  write(tar: Buffer): void
  readonly inFlight: number
  take(): Promise<Buffer>
  end(): Promise<Buffer[]>
  /** with `recordRestarts`, Go's restart points noted so far (after end(): all of them) */
  restarts?(): GoFlateRestart[]
}

/**
 * Tar bytes per encoder call. Whatever the split, the encoders give the same bytes: pgzip cuts its own
 * blocks, and Go's flate steps on full windows only unless told to follow the writes (docs/go-flate.md:
 * one large write is what dockerd's io.Copy of 32 KiB writes gives too).
 */
const ENCODE_WRITE = 1 << 20

/** The compressor a recipe names; ERR_SNAPSHOT_DAMAGED naming the blob for one this snapdir does not have. */
export function blobCompressor(compression: RecipeCompression, recipe?: Recipe, options: { recordRestarts?: boolean; writeSize?: number } = {}): BlobCompressor {
  if (compression.kind === 'none') return passThrough()
  if (compression.kind === 'zstd') {
    let zstd: ZstdEncoder
    try {
      zstd = createZstdEncoder(compression)
    } catch (err) {
      const why = `its recipe compresses with ${compression.family} zstd level ${compression.level}, which this snapdir cannot regenerate`
      throw recipe ? damagedError(recipe)(why, err) : err
    }
    return new EncoderPipe(zstd, ENCODE_WRITE)
  }
  const params = { family: compression.family, level: compression.level, ...(compression.blockSize > 0 ? { blockSize: compression.blockSize } : {}) } as DeflateParams
  const fail = (err: unknown): never => {
    // a family a newer snapdir wrote, or a level this one refuses
    const why = `its recipe compresses with ${compression.family} deflate level ${compression.level}, which this snapdir cannot regenerate`
    throw recipe ? damagedError(recipe)(why, err) : err
  }
  if (compression.restarts !== undefined) {
    if (compression.family !== 'go' || !hasRestartPoints(compression.level) || recipe === undefined) return fail(new Error('restart points need Go flate at level 4..9'))
    return new GoSegments(compression.header, compression.level, compression.restarts, recipe.tarSize)
  }
  let encoder: DeflateEncoder & { restarts?: () => GoFlateRestart[] }
  try {
    encoder = options.recordRestarts && params.family === 'go' && hasRestartPoints(params.level)
      ? createGoFlateEncoder(params.level, { recordRestarts: true })
      : createDeflateEncoder(params)
  } catch (err) {
    return fail(err)
  }
  return new EncoderPipe(createGzipMember({ headerBytes: compression.header, encoder }), options.writeSize ?? ENCODE_WRITE, encoder.restarts)
}

/** The tar as the blob: pieces copied (a piece may view a chunk the reader reuses) and handed back in order. */
function passThrough(): BlobCompressor {
  const queue: Buffer[] = []
  return {
    write: (tar) => void queue.push(Buffer.from(tar)),
    get inFlight() {
      return queue.length
    },
    take: async () => queue.shift() ?? Buffer.alloc(0),
    end: async () => queue.splice(0),
  }
}

/** What EncoderPipe drives: a gzip member (Go flate, pgzip) or a zstd stream, one call at a time on the libuv pool. */
type PoolEncoder = Pick<GzipMemberWriter, 'writeAsync' | 'endAsync'>

/**
 * One encoder, its calls chained on the libuv pool in order, fed whole blocks of `size` bytes (zstd,
 * like pgzip, cuts its own blocks at fixed offsets whatever the writes). A block the encoder is done
 * with (its call resolved: the encoders copy their input) is filled again: a new 1 MiB buffer per block
 * was memory mapped, faulted in and unmapped again at the next collection, some 150 times per layer.
 */
class EncoderPipe implements BlobCompressor {
  private block: Buffer
  private fill = 0
  private chain: Promise<unknown> = Promise.resolve()
  private readonly pending: Array<Promise<Buffer>> = []
  private readonly spare: Buffer[] = []

  constructor(private readonly member: PoolEncoder, private readonly size: number, restartsOf?: () => GoFlateRestart[]) {
    this.block = Buffer.allocUnsafe(size)
    if (restartsOf) this.restarts = restartsOf
  }

  restarts?: () => GoFlateRestart[]

  get inFlight(): number {
    return this.pending.length
  }

  write(tar: Buffer): void {
    for (let at = 0; at < tar.length; ) {
      const n = Math.min(this.size - this.fill, tar.length - at)
      tar.copy(this.block, this.fill, at, at + n)
      this.fill += n
      at += n
      if (this.fill === this.size) {
        this.queue(this.block)
        this.block = this.spare.pop() ?? Buffer.allocUnsafe(this.size)
        this.fill = 0
      }
    }
  }

  take(): Promise<Buffer> {
    return this.pending.shift() ?? Promise.resolve(Buffer.alloc(0))
  }

  async end(): Promise<Buffer[]> {
    if (this.fill > 0) this.queue(this.block.subarray(0, this.fill))
    const last = this.chain.then(() => this.member.endAsync())
    this.pending.push(last)
    const out = await Promise.all(this.pending.splice(0))
    return out.filter((b) => b.length > 0)
  }

  private queue(input: Buffer): void {
    const p = this.chain.then(() => this.member.writeAsync(input))
    // a whole block comes back for reuse; the last, partial one is a view of a block and does not
    p.then(() => input.length === this.size && this.spare.push(input), () => {})
    this.chain = p
    this.pending.push(p)
  }
}

/** Bytes of tar a segment gets past its last block: the encoder's lookahead (docs/go-flate.md: 64 KiB is enough). */
const SEGMENT_LOOKAHEAD = 128 << 10

/**
 * Go's compress/flate from the recipe's restart points: each segment encoded on the libuv pool as soon
 * as its input (from the window before it to a lookahead past it) is in, as many at once as the caller
 * lets be in flight, and the bits spliced in order (a segment starts where the previous one's last
 * byte left off: the two are OR-ed). The gzip header first, the CRC-32 and ISIZE of the tar last.
 */
class GoSegments implements BlobCompressor {
  private readonly points: GoFlateRestart[]
  private next = 0
  /** the tar from `start` on, as far as written: what the segments not started yet need */
  private buf = Buffer.alloc(0)
  private start = 0
  private end_ = 0
  private crc = 0
  /** segments started, in order: their bytes, and whether the next segment shares their last byte */
  private readonly pending: Array<Promise<{ bytes: Buffer; shared: boolean }>> = []
  private carry: number | null = null
  private headerDone = false

  constructor(private readonly header: Buffer, private readonly level: number, restarts: RestartPoint[], private readonly tarSize: number) {
    this.points = [GO_FLATE_START, ...restarts]
  }

  get inFlight(): number {
    return this.pending.length
  }

  write(tar: Buffer): void {
    this.crc = crc32(tar, this.crc)
    if (this.end_ - this.start + tar.length > this.buf.length) {
      // a new buffer (segments in flight keep views of the old one), only from the next segment's base on
      const keep = this.next < this.points.length ? this.points[this.next]!.base : this.end_
      const grown = Buffer.allocUnsafe(Math.max(2 * (this.end_ - keep + tar.length), 8 << 20))
      this.buf.copy(grown, 0, keep - this.start, this.end_ - this.start)
      this.buf = grown
      this.start = keep
    }
    tar.copy(this.buf, this.end_ - this.start)
    this.end_ += tar.length
    // start every segment whose input is all here
    while (this.next + 1 < this.points.length && this.end_ >= Math.min(this.points[this.next + 1]!.input + SEGMENT_LOOKAHEAD, this.tarSize)) this.launch()
  }

  take(): Promise<Buffer> {
    const p = this.pending.shift()
    return p ? p.then((b) => this.splice(b)) : Promise.resolve(Buffer.alloc(0))
  }

  async end(): Promise<Buffer[]> {
    while (this.next < this.points.length) this.launch()
    const out: Buffer[] = []
    while (this.pending.length > 0) out.push(await this.take())
    if (this.carry !== null) out.push(Buffer.from([this.carry]))
    this.carry = null
    out.push(gzipTrailer(this.crc, this.end_ % 2 ** 32))
    return out.filter((b) => b.length > 0)
  }

  private launch(): void {
    const i = this.next++
    const from = this.points[i]!
    const to = this.points[i + 1]
    const stop = to ? Math.min(to.input + SEGMENT_LOOKAHEAD, this.end_) : this.end_
    const input = this.buf.subarray(from.base - this.start, stop - this.start)
    const endBit = to ? to.outBit : null
    const p = encodeGoFlateSegment({ level: this.level, from, endBit, input, inputEnds: stop === this.tarSize && this.end_ === this.tarSize })
      .then((bytes) => ({ bytes, shared: endBit !== null && endBit % 8 !== 0 }))
    p.catch(() => {}) // reported when taken
    this.pending.push(p)
  }

  /** A segment's bytes as the blob's next ones: the previous segment's last bits OR-ed into its first byte, its own last byte held back when shared. */
  private splice({ bytes, shared }: { bytes: Buffer; shared: boolean }): Buffer {
    if (this.carry !== null && bytes.length > 0) bytes[0] = bytes[0]! | this.carry
    this.carry = null
    let body = bytes
    if (shared && bytes.length > 0) {
      this.carry = bytes[bytes.length - 1]!
      body = bytes.subarray(0, bytes.length - 1)
    }
    if (!this.headerDone) {
      this.headerDone = true
      return Buffer.concat([this.header, body])
    }
    return body
  }
}

/**
 * The blob a recipe gives back, as a stream of pieces; it ends only once the blob hashed to its
 * digest. A piece may view a chunk shared with later pieces: the caller copies what it keeps.
 */
export async function* regenerateBlob(options: RegenerateOptions): AsyncGenerator<Buffer> {
  const { recipe } = options
  const damaged = damagedError(recipe)
  // uncompressed, the blob is the tar, which regenerateTar hashes against the diff_id: once is enough
  if (recipe.compression.kind === 'none') {
    const blob = new Measured(recipe.size, `the blob's`, damaged, false)
    for await (const tar of regenerateTar(options)) yield blob.pass(tar)
    if (recipe.diffId !== recipe.digest || blob.size !== recipe.size) throw damaged(`the blob regenerated from its recipe hashes to ${recipe.diffId} (${blob.size} bytes), not to its digest`)
    return
  }
  const compressor = blobCompressor(recipe.compression, recipe)
  const blob = new Measured(recipe.size, `the blob's`, damaged)
  const out = (piece: Buffer): Buffer => blob.pass(piece)
  // a segment refused (restart points that do not fit the tar) is damage to the recipe like a wrong digest
  const encoded = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p
    } catch (err) {
      if (err instanceof SnapdirError) throw err
      throw damaged(`its blob does not encode: ${(err as Error).message}`, err)
    }
  }
  const depth = Math.max(2, os.availableParallelism())
  // the blob's digest is checked below: a tar that is not the layer's cannot give it, so hashing the
  // tar against the diff_id too (a second SHA-256 over 2-3 times the bytes, on the JS thread) adds nothing
  for await (const tar of tarPieces(options, { diffId: false })) {
    compressor.write(tar)
    while (compressor.inFlight > depth) {
      const piece = await encoded(compressor.take())
      if (piece.length > 0) yield out(piece)
    }
  }
  for (const piece of await encoded(compressor.end())) yield out(piece)
  const digest = blob.digest()
  if (digest !== recipe.digest || blob.size !== recipe.size) throw damaged(`the blob regenerated from its recipe hashes to ${digest} (${blob.size} bytes), not to its digest`)
}

/**
 * The layer's tar a recipe gives back, every chunk verified; it ends only once the tar hashed to the
 * layer's diff_id and had its size.
 */
export function regenerateTar(options: RegenerateOptions): AsyncGenerator<Buffer> {
  return tarPieces(options, { diffId: true })
}

/** regenerateTar, its size always checked, its hash against the diff_id only when `check.diffId`. */
async function* tarPieces(options: RegenerateOptions, check: { diffId: boolean }): AsyncGenerator<Buffer> {
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

  // two streams read in turns, each in its own order: a reader for both would see the framing's chunk
  // and a file's chunk alternate, keep neither, and lose its plan at the first framing read after content
  const framingChunks = new OrderedChunks(options.store, damaged, options.signal)
  framingChunks.plan(recipe.framing)
  const framing = new RefCursor(recipe.framing, framingChunks)
  const reader = new OrderedChunks(options.store, damaged, options.signal)
  for (const refs of plan) if (!Buffer.isBuffer(refs)) reader.plan(refs)

  const tar = new Measured(recipe.tarSize, `the tar's`, damaged, check.diffId)
  const out = (piece: Buffer): Buffer => tar.pass(piece)
  try {
    for (const [i, s] of recipe.segments.entries()) {
      for await (const piece of framing.take(s.framing)) yield out(piece)
      const content = plan[i]!
      if (Buffer.isBuffer(content)) yield out(content)
      else for await (const piece of new RefCursor(content, reader).take(Infinity)) yield out(piece)
    }
    for await (const piece of framing.take(recipe.tail)) yield out(piece)
  } finally {
    framingChunks.close()
    reader.close()
  }
  if (tar.size !== recipe.tarSize) throw damaged(`its recipe gives ${tar.size} bytes of tar, not ${recipe.tarSize}`)
  if (!check.diffId) return
  const diffId = tar.digest()
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

/** Pieces counted (and hashed) as they pass; more than `limit` bytes in all is damage to the recipe. */
class Measured {
  size = 0
  private readonly hash

  constructor(
    private readonly limit: number,
    private readonly whose: string,
    private readonly damaged: (why: string) => SnapdirError,
    hashed = true,
  ) {
    this.hash = hashed ? createHash('sha256') : null
  }

  pass(piece: Buffer): Buffer {
    this.size += piece.length
    if (this.size > this.limit) throw this.damaged(`its recipe gives more than ${this.whose} ${this.limit} bytes`)
    this.hash?.update(piece)
    return piece
  }

  /** `sha256:<hex>` of what passed */
  digest(): string {
    return `sha256:${this.hash!.digest('hex')}`
  }
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
 * Verified chunks in the order they are planned, a few fetched ahead. A chunk the plan reads again
 * later (small files packed together slice the same chunks, and the tar's order need not be the
 * packing's) is kept until its last planned read, up to KEEP chunks, so it is fetched once.
 */
class OrderedChunks {
  private readonly order: Array<{ id: string; needs: number }> = []
  private next = 0
  private readonly inFlight = new Map<string, Promise<Buffer>>()
  /** planned reads not yet made, per chunk */
  private readonly uses = new Map<string, number>()
  /** chunks read that the plan reads again, oldest first */
  private readonly kept = new Map<string, Buffer>()
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
      else {
        this.order.push({ id, needs: r.offset + r.length })
        this.uses.set(id, (this.uses.get(id) ?? 0) + 1)
      }
    }
  }

  async get(ref: ChunkRef): Promise<Buffer> {
    const id = toHex(ref.id)
    if (this.current?.id === id) return this.check(this.current.data, id, ref)
    const kept = this.kept.get(id)
    if (kept !== undefined) {
      while (this.next < this.order.length && this.order[this.next]!.id !== id) this.next++
      if (this.next < this.order.length) this.next++
      this.taken(id, kept)
      return this.check(kept, id, ref)
    }
    // catch up with the plan to this chunk, fetching ahead of it
    while (this.next < this.order.length && this.order[this.next]!.id !== id) this.next++
    for (let k = this.next; k < Math.min(this.order.length, this.next + AHEAD); k++) void this.fetch(this.order[k]!)
    const planned = this.order[this.next]
    const data = await (this.inFlight.get(id) ?? this.fetch(planned ?? { id, needs: ref.offset + ref.length }))
    this.inFlight.delete(id)
    if (planned) this.next++
    this.taken(id, data)
    return this.check(data, id, ref)
  }

  /** the chunk being sliced now, and what the plan still reads of those read before */
  private current: { id: string; data: Buffer } | null = null

  private taken(id: string, data: Buffer): void {
    this.current = { id, data }
    const left = (this.uses.get(id) ?? 1) - 1
    this.uses.set(id, left)
    this.kept.delete(id)
    if (left > 0) {
      this.kept.set(id, data)
      if (this.kept.size > KEEP) this.kept.delete(this.kept.keys().next().value!)
    }
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
    // planned again further on, and kept: reading ahead to it costs nothing
    const kept = this.kept.get(c.id)
    if (kept !== undefined) return Promise.resolve(kept)
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
