import { SnapdirError } from '../util/errors.js'
import { JsFastCdc } from './fastcdc-js.js'
import { native } from './native.js'
import { validateChunkerParams, type ChunkerParams } from './params.js'

export type ChunkerImplementation = 'native' | 'js'

export interface Cuts {
  /** chunk lengths from the start of the data, in order */
  lengths: ArrayLike<number>
  count: number
  /** gear hash at each cut (only when asked for) */
  hashes?: bigint[]
}

/** SNAPDIR_CHUNKER=js forces the TypeScript fallback (tests compare both). */
export function defaultImplementation(): ChunkerImplementation {
  return process.env.SNAPDIR_CHUNKER === 'js' || native === null ? 'js' : 'native'
}

/**
 * FastCDC 2020 over whole buffers. Stateless between calls: each call cuts from the start of the
 * data it is given (the caller carries the unfinished tail, see chunk-stream.ts).
 */
export class Chunker {
  readonly params: ChunkerParams
  readonly implementation: ChunkerImplementation
  /** length of the chunk that starts any run of at least `max` zero bytes */
  readonly zeroLength: number
  /** the native chunker's handle (native.cutFiles takes it), null for the TypeScript one */
  readonly handle: object | null
  private readonly js: JsFastCdc | null
  private lengths = new Uint32Array(0)

  constructor(params: ChunkerParams, implementation: ChunkerImplementation = defaultImplementation()) {
    this.params = validateChunkerParams(params)
    this.implementation = implementation
    if (implementation === 'native') {
      if (native === null) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native chunker is not built (run npm install)')
      this.handle = native.chunkerCreate(params.min, params.avg, params.max, params.level, params.seed)
      this.js = null
      this.zeroLength = native.chunkerZeroChunk(this.handle)[0]
    } else {
      this.handle = null
      this.js = new JsFastCdc(params)
      this.zeroLength = this.js.zeroLength
    }
  }

  /**
   * Cuts `data` from its start. With `eof` false it stops once fewer than `max` bytes remain, since
   * bytes not yet seen could still move that cut; the caller keeps them for the next call.
   */
  cuts(data: Uint8Array, eof: boolean, withHashes = false): Cuts {
    if (this.handle !== null) return this.nativeCuts(data, eof, withHashes)
    return this.jsCuts(data, eof, withHashes)
  }

  private nativeCuts(data: Uint8Array, eof: boolean, withHashes: boolean): Cuts {
    // every chunk but the last is at least `min` long, so this many slots always suffice
    const cap = Math.floor(data.length / this.params.min) + 2
    if (this.lengths.length < cap) this.lengths = new Uint32Array(cap)
    const hashes = withHashes ? new BigUint64Array(cap) : null
    const count = native!.chunkerCuts(this.handle!, data, eof, this.lengths, hashes)
    // a copy: callers consume the lengths lazily while other files are cut with this chunker
    const out: Cuts = { lengths: this.lengths.slice(0, count), count }
    if (hashes) out.hashes = Array.from(hashes.subarray(0, count))
    return out
  }

  private jsCuts(data: Uint8Array, eof: boolean, withHashes: boolean): Cuts {
    const js = this.js!
    const lengths: number[] = []
    const hashes: bigint[] = []
    let pos = 0
    while (pos < data.length) {
      const rest = data.length - pos
      if (!eof && rest < this.params.max) break
      const len = js.cut(data, pos, rest)
      lengths.push(len)
      if (withHashes) hashes.push(js.lastHash())
      pos += len
    }
    const out: Cuts = { lengths, count: lengths.length }
    if (withHashes) out.hashes = hashes
    return out
  }
}
