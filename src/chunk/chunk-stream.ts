import type { Chunker } from './chunker.js'

const EMPTY = Buffer.alloc(0)
let zeroBuffer = EMPTY

/** Read-only zeros shared by every stream (allocated once, not per file). */
function zeros(length: number): Buffer {
  if (zeroBuffer.length < length) zeroBuffer = Buffer.alloc(length)
  return zeroBuffer
}

/** A chunk as cut: its bytes, or null for a chunk known to be all zeros (a hole) repeated `count` times. */
export interface RawChunk {
  data: Buffer | null
  length: number
  count: number
}

/**
 * Feeds one file's content to the chunker piece by piece and yields finished chunks. Holes are fed as
 * lengths, never as bytes: once a chunk starts with at least `max` zeros ahead its length is fixed
 * (the gear hash of zeros saturates), so a 1 TiB hole costs a multiplication, and the cut points are
 * exactly those of reading the zeros.
 * Yielded `data` views the buffers passed to `push`; the caller must not reuse them while in use.
 */
export class ChunkStream {
  private pending: Buffer = EMPTY

  constructor(private readonly chunker: Chunker) {}

  *push(data: Buffer): Generator<RawChunk> {
    if (data.length === 0) return
    const all = this.pending.length > 0 ? Buffer.concat([this.pending, data]) : data
    const { lengths, count } = this.chunker.cuts(all, false)
    let pos = 0
    for (let i = 0; i < count; i++) {
      const len = lengths[i]!
      yield { data: all.subarray(pos, pos + len), length: len, count: 1 }
      pos += len
    }
    // copy the short tail so it does not pin the whole read buffer
    this.pending = Buffer.from(all.subarray(pos))
  }

  *pushZeros(length: number): Generator<RawChunk> {
    const max = this.chunker.params.max
    let rest = length
    if (this.pending.length > 0) {
      // Feed real zeros until the data before the hole is cut off; what stays pending is then zeros only
      // (pending < max before, and at least max zeros follow it).
      const k = Math.min(rest, 2 * max)
      yield* this.push(zeros(2 * max).subarray(0, k))
      rest -= k
      if (rest === 0) return
    }
    let zerosAhead = this.pending.length + rest
    if (zerosAhead >= max) {
      const z = this.chunker.zeroLength
      const n = Math.floor((zerosAhead - max) / z) + 1
      yield { data: null, length: z, count: n }
      zerosAhead -= n * z
    }
    this.pending = Buffer.alloc(zerosAhead)
  }

  *end(): Generator<RawChunk> {
    if (this.pending.length === 0) return
    const all = this.pending
    this.pending = EMPTY
    const { lengths, count } = this.chunker.cuts(all, true)
    let pos = 0
    for (let i = 0; i < count; i++) {
      const len = lengths[i]!
      yield { data: all.subarray(pos, pos + len), length: len, count: 1 }
      pos += len
    }
  }
}
