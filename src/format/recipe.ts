// A layer recipe: how to give back a layer blob byte for byte from its expanded tree, so the store
// keeps a layer once (docs/FORMAT.md, "Recipe"). The idea is tar-split's: every byte of the tar that is
// not a regular file's content (headers, PAX and GNU long-name records, padding, the end-of-archive
// blocks and anything after them) is kept, in order, as the "framing" stream, cut into ordinary
// chunks; the file contents come from the layer tree's entries. Canonical msgpack of positional arrays,
// like the tree:
//
//   recipe = ['snapdir-recipe', 1, digest, size, diffId, tarSize, layerTree(32 bytes), framingSize,
//             [framing chunk refs: chunkId, offset, length, count, …], [segments…], compression]
//   segments = [framing0, source0, framing1, source1, …, framingTail]: `framingN` bytes of the framing
//             stream, then one file's content; `source` is the index of the layer-tree entry (in path
//             order, a regular file) whose content it is, or, for content the tree does not hold (a path
//             written twice in the tar, the first copy replaced), that content's own chunk refs.
//   compression = ['none'] | ['gzip', header bytes, family, level, blockSize (, restarts)]
//               | ['zstd', family, level, windowSize, blockSize, checksum (1 or 0)]
//   restarts = [input, base, blockStart, outBit, length, offset, byteAvailable, …]: Go's compress/flate
//             at levels 4..9 only, seven numbers per point where a second encoder takes over
//             (oci/compress/go-flate.ts GoFlateRestart), in stream order; absent when none were kept.
//
// Index in path order is what every tree format keeps (readTree gives entries sorted by path bytes).
import { SnapdirError } from '../util/errors.js'
import { ID_BYTES } from './id.js'
import { MsgpackWriter } from './msgpack-writer.js'
import { asBuffer, isBytes, isUint, msgpackReader } from './msgpack-reader.js'
import { writeChunkRefs, type ChunkRef } from './tree.js'

export const RECIPE_MAGIC = 'snapdir-recipe'
export const RECIPE_FORMAT = 1

/** How the tar is compressed into the blob. */
export type RecipeCompression =
  | { kind: 'none' }
  /** a gzip member: the exact header bytes, raw deflate by `family` at `level`, then CRC-32 and ISIZE */
  | { kind: 'gzip'; header: Buffer; family: string; level: number; blockSize: number; restarts?: RestartPoint[] }
  /**
   * one zstd stream as `family` writes it (`klauspost`: klauspost/compress 1.15.12's zstd.Encoder) at its
   * EncoderLevel `level`, with that window and block size and the content checksum or not; the frame
   * fields (header, block splitting, last block, checksum) follow from these (docs/zstd.md)
   */
  | { kind: 'zstd'; family: string; level: number; windowSize: number; blockSize: number; checksum: boolean }

/**
 * Where a second Go flate encoder can take over the stream (docs/go-flate.md, "Restart points";
 * native/go-flate.h goflate_restart): offsets in the tar, outBit in the DEFLATE stream.
 */
export interface RestartPoint {
  /** the search position */
  input: number
  /** the stream offset of the window's first byte */
  base: number
  /** where the block being gathered started (base + 2^31 - 1: it cannot be stored) */
  blockStart: number
  outBit: number
  /** the lazy match pending at input - 1 */
  length: number
  offset: number
  /** 1 when the byte at input - 1 is still to be emitted */
  byteAvailable: number
}

const RESTART_FIELDS = ['input', 'base', 'blockStart', 'outBit', 'length', 'offset', 'byteAvailable'] as const

/** Where one file's content comes from: a layer-tree entry (its index in path order) or chunk refs of its own. */
export type SegmentSource = number | ChunkRef[]

export interface RecipeSegment {
  /** bytes of framing before the content */
  framing: number
  source: SegmentSource
}

export interface Recipe {
  /** the blob's digest, `sha256:<hex>`, and size */
  digest: string
  size: number
  /** the tar's digest (the layer's diff_id) and size */
  diffId: string
  tarSize: number
  /** the ID of the layer tree the contents come from */
  tree: string
  framingSize: number
  framing: ChunkRef[]
  segments: RecipeSegment[]
  /** framing bytes after the last content */
  tail: number
  compression: RecipeCompression
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/

export function encodeRecipe(r: Recipe): Buffer {
  const w = new MsgpackWriter(1024 + r.segments.length * 8 + r.framing.length * 48)
  w.array(11)
  w.str(RECIPE_MAGIC)
  w.number(RECIPE_FORMAT)
  w.str(r.digest)
  w.number(r.size)
  w.str(r.diffId)
  w.number(r.tarSize)
  w.bin(Buffer.from(r.tree, 'hex'))
  w.number(r.framingSize)
  writeChunkRefs(w, r.framing)
  w.array(2 * r.segments.length + 1)
  for (const s of r.segments) {
    w.number(s.framing)
    if (typeof s.source === 'number') w.number(s.source)
    else writeChunkRefs(w, s.source)
  }
  w.number(r.tail)
  const c = r.compression
  if (c.kind === 'none') {
    w.array(1)
    w.str('none')
  } else if (c.kind === 'zstd') {
    w.array(6)
    w.str('zstd')
    w.str(c.family)
    w.number(c.level)
    w.number(c.windowSize)
    w.number(c.blockSize)
    w.number(c.checksum ? 1 : 0)
  } else {
    const restarts = c.restarts ?? []
    w.array(restarts.length > 0 ? 6 : 5)
    w.str('gzip')
    w.bin(c.header)
    w.str(c.family)
    w.number(c.level)
    w.number(c.blockSize)
    if (restarts.length > 0) {
      w.array(restarts.length * RESTART_FIELDS.length)
      for (const r of restarts) for (const f of RESTART_FIELDS) w.number(r[f])
    }
  }
  return w.bytes()
}

/**
 * Decodes and checks a recipe: every field typed, and the lengths adding up (framing refs to
 * framingSize, the framing the segments use to framingSize). Anything off is ERR_OBJECT_CORRUPT naming it.
 */
export function decodeRecipe(bytes: Buffer, what: string): Recipe {
  const bad = (why: string): never => {
    throw new SnapdirError('ERR_OBJECT_CORRUPT', `${what}: malformed recipe: ${why}`)
  }
  let wire: unknown
  try {
    wire = msgpackReader().unpack(bytes)
  } catch (err) {
    return bad(`not msgpack (${(err as Error).message})`)
  }
  if (!Array.isArray(wire) || wire.length !== 11 || wire[0] !== RECIPE_MAGIC) return bad('not a snapdir recipe')
  if (wire[1] !== RECIPE_FORMAT) return bad(`format ${String(wire[1])} is not supported (this snapdir reads ${RECIPE_FORMAT})`)
  const [, , digest, size, diffId, tarSize, tree, framingSize, framing, segments, compression] = wire as unknown[]
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest) || !isUint(size)) return bad('digest or size')
  if (typeof diffId !== 'string' || !DIGEST_RE.test(diffId) || !isUint(tarSize)) return bad('diff_id or tar size')
  if (!isBytes(tree) || tree.length !== ID_BYTES) return bad('layer tree')
  if (!isUint(framingSize)) return bad('framing size')
  const framingRefs = decodeRefs(framing, 'framing', bad)
  if (framingRefs.total !== framingSize) return bad(`framing chunks give ${framingRefs.total} bytes, framing size says ${framingSize}`)
  if (!Array.isArray(segments) || segments.length % 2 !== 1) return bad('segments')
  const list: RecipeSegment[] = []
  let framingUsed = 0
  let contentRefBytes = 0
  for (let i = 0; i + 1 < segments.length; i += 2) {
    const n = segments[i] as unknown
    const src = segments[i + 1] as unknown
    if (!isUint(n)) return bad(`segment ${i / 2}: framing length`)
    framingUsed += n
    if (isUint(src)) list.push({ framing: n, source: src })
    else {
      const refs = decodeRefs(src, `segment ${i / 2}`, bad)
      if (refs.refs.length === 0) return bad(`segment ${i / 2}: empty content`)
      contentRefBytes += refs.total
      list.push({ framing: n, source: refs.refs })
    }
  }
  const tail = segments[segments.length - 1] as unknown
  if (!isUint(tail)) return bad('tail framing length')
  if (framingUsed + tail !== framingSize) return bad(`segments use ${framingUsed + tail} bytes of framing, framing size says ${framingSize}`)
  if (framingSize + contentRefBytes > tarSize) return bad(`framing and content refs give more than the tar's ${tarSize} bytes`)
  return {
    digest, size, diffId, tarSize, tree: Buffer.from(tree).toString('hex'), framingSize, framing: framingRefs.refs,
    segments: list, tail, compression: decodeCompression(compression, tarSize, bad),
  }
}

function decodeRefs(v: unknown, where: string, bad: (why: string) => never): { refs: ChunkRef[]; total: number } {
  if (!Array.isArray(v) || v.length % 4 !== 0) return bad(`${where}: chunk refs`)
  const refs: ChunkRef[] = []
  let total = 0
  for (let k = 0; k < v.length; k += 4) {
    const [id, offset, length, count] = [v[k] as unknown, v[k + 1] as unknown, v[k + 2] as unknown, v[k + 3] as unknown]
    if (!isBytes(id) || id.length !== ID_BYTES || !isUint(offset) || !isUint(length) || length === 0 || !isUint(count) || count === 0 ||
      (count > 1 && offset !== 0)) {
      return bad(`${where}: chunk ref ${k / 4}`)
    }
    refs.push({ id: asBuffer(id), offset, length, count })
    total += length * count
  }
  return { refs, total }
}

function decodeCompression(v: unknown, tarSize: number, bad: (why: string) => never): RecipeCompression {
  if (!Array.isArray(v) || v.length === 0) return bad('compression')
  if (v[0] === 'none' && v.length === 1) return { kind: 'none' }
  if (v[0] === 'gzip' && (v.length === 5 || v.length === 6)) {
    const [, header, family, level, blockSize, restarts] = v as unknown[]
    if (isBytes(header) && typeof family === 'string' && typeof level === 'number' && Number.isSafeInteger(level) && isUint(blockSize)) {
      const c: Extract<RecipeCompression, { kind: 'gzip' }> = { kind: 'gzip', header: asBuffer(header), family, level, blockSize }
      if (v.length === 6) c.restarts = decodeRestarts(restarts, tarSize, bad)
      return c
    }
  }
  if (v[0] === 'zstd' && v.length === 6) {
    const [, family, level, windowSize, blockSize, checksum] = v as unknown[]
    if (typeof family === 'string' && typeof level === 'number' && Number.isSafeInteger(level) && isUint(windowSize) && isUint(blockSize) && (checksum === 0 || checksum === 1)) {
      return { kind: 'zstd', family, level, windowSize, blockSize, checksum: checksum === 1 }
    }
  }
  return bad(`compression ${JSON.stringify(v[0])} is not one this snapdir knows`)
}

/**
 * Restart points as a Go flate encoder can be in them (go-flate-addon.c checks the same before it
 * starts a segment), in stream order, inside the tar: anything else is a damaged recipe.
 */
function decodeRestarts(v: unknown, tarSize: number, bad: (why: string) => never): RestartPoint[] {
  const n = RESTART_FIELDS.length
  if (!Array.isArray(v) || v.length === 0 || v.length % n !== 0 || !v.every(isUint)) return bad('compression restart points')
  const points: RestartPoint[] = []
  let prev = { input: 0, outBit: 0 }
  for (let i = 0; i < v.length; i += n) {
    const [input, base, blockStart, outBit, length, offset, byteAvailable] = v.slice(i, i + n)
    const r: RestartPoint = { input: input!, base: base!, blockStart: blockStart!, outBit: outBit!, length: length!, offset: offset!, byteAvailable: byteAvailable! }
    if (r.input <= prev.input || r.input >= tarSize || r.outBit <= prev.outBit || r.base > r.input || r.input - r.base > 65536 ||
      r.blockStart < r.base || r.blockStart > r.base + 2 ** 31 - 1 || r.length > 258 || r.offset > 32768 || r.byteAvailable > 1) {
      return bad(`compression restart point ${i / n}`)
    }
    points.push(r)
    prev = r
  }
  return points
}
