import type { Chunker } from '../chunk/chunker.js'
import { native } from '../chunk/native.js'
import { ZSTD_LEVEL } from '../format/object.js'
import type { Store } from '../store/store.js'

const ID_BYTES = 32

/** Chunks cut from the start of a buffer; valid until the next cut(). */
export interface CutResult {
  count: number
  /** chunk lengths, in order (only the first `count` are this cut's) */
  lengths: Uint32Array
  /** the chunks' BLAKE3 IDs, 32 bytes each, in fresh memory the caller may keep */
  ids: Buffer
  /** bytes the chunks cover: all of the buffer at eof, else up to the last cut made */
  consumed: number
}

/**
 * Cuts buffers, hashes the chunks and stores the ones a local store lacks, in one native call per
 * buffer (native/cut-store.c): push's fast path. Only with the native chunker; the store, if any, must
 * be a local directory (Store.localChunks). Chunks and bytes written are counted in `written`.
 */
export class NativeCutter {
  /** [chunks stored, bytes stored] since the last takeWritten() */
  private readonly written = new Float64Array(2)
  private lengths = new Uint32Array(0)

  private constructor(
    private readonly handle: object,
    private readonly min: number,
    private readonly sink: { dir: string; tmpTag: string } | null,
  ) {}

  /** The cutter for this chunker and store, or null when the fast path does not apply. */
  static for(chunker: Chunker, store: Store | null): NativeCutter | null {
    if (!native || chunker.handle === null) return null
    if (store !== null && !store.localChunks) return null
    return new NativeCutter(chunker.handle, chunker.params.min, store?.localChunks ?? null)
  }

  cut(data: Uint8Array, eof: boolean): CutResult {
    const cap = Math.floor(data.length / this.min) + 2
    if (this.lengths.length < cap) this.lengths = new Uint32Array(cap)
    const ids = Buffer.allocUnsafe(cap * ID_BYTES)
    const count = native!.cutHashStore(
      this.handle, data, eof, this.lengths, ids, this.sink?.dir ?? null, this.sink?.tmpTag ?? '', ZSTD_LEVEL, this.written,
    )
    let consumed = 0
    for (let i = 0; i < count; i++) consumed += this.lengths[i]!
    return { count, lengths: this.lengths, ids, consumed }
  }

  /** Chunks and bytes stored since the last call. */
  takeWritten(): { chunks: number; bytes: number } {
    const out = { chunks: this.written[0]!, bytes: this.written[1]! }
    this.written.fill(0)
    return out
  }
}
