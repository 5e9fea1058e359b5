// Go 1.19's compress/flate encoder (native/go-flate.c, a port checked byte for byte against Go itself
// in test/oci/go-flate.test.ts), and its restart points: at levels 4..9 a second encoder can take over
// at any block boundary from a few numbers and the 64 KiB of input before it, so one stream can be
// regenerated in segments on several cores (docs/go-flate.md).
import { GO_FLATE_RESTART_ROW, native, nativeLoadError, type NativeAddon } from '../../chunk/native.js'
import type { RestartPoint } from '../../format/recipe.js'
import { SnapdirError } from '../../util/errors.js'
import type { DeflateEncoder } from './deflate-encoder.js'

/** Go's levels: -2 HuffmanOnly, -1 default (6), 0 NoCompression, 1 BestSpeed, 2..9. */
export const GO_FLATE_LEVELS = [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const

/** The levels with restart points: those whose every position enters the hash chains. */
export function hasRestartPoints(level: number): boolean {
  return level === -1 || (level >= 4 && level <= 9)
}

/** Where an encoder can take over (native/go-flate.h goflate_restart): the seven numbers a recipe keeps. */
export type GoFlateRestart = RestartPoint

/** The state of a new encoder: the restart point of a stream's first segment. */
export const GO_FLATE_START: Readonly<GoFlateRestart> = { input: 0, base: 0, blockStart: 0, outBit: 0, length: 3, offset: 0, byteAvailable: 0 }

export interface GoFlateOptions {
  /**
   * Step as Go does on every write, so that the bytes are Go's for this same sequence of writes. By
   * default the encoder steps on a full window only, which gives Go's bytes for one large write (or
   * writes at multiples of 32 KiB) whatever the split: Go's own output depends on the split at levels
   * 2..9 (docs/go-flate.md).
   */
  followWrites?: boolean
  /** note a restart point at each block boundary (levels 4..9, writes not followed) */
  recordRestarts?: boolean
}

export interface GoFlateEncoder extends DeflateEncoder {
  /** the restart points noted since the last call */
  restarts(): GoFlateRestart[]
}

function addon(): NativeAddon {
  if (!native) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'Go-compatible gzip needs the native addon, which failed to load', { cause: nativeLoadError })
  }
  return native
}

export function createGoFlateEncoder(level: number, options: GoFlateOptions = {}): GoFlateEncoder {
  const a = addon()
  const record = options.recordRestarts ?? false
  const handle = a.goFlateCreate(level, options.followWrites ?? false, record)
  // the points noted before end(), which frees the encoder (none are noted in its last step)
  let noted: GoFlateRestart[] = []
  let ended = false
  const take = (): GoFlateRestart[] => {
    if (!record || ended) return []
    const rows = a.goFlateRestarts(handle)
    const out: GoFlateRestart[] = []
    const R = GO_FLATE_RESTART_ROW
    for (let i = 0; i < rows.length; i += 7) {
      out.push({
        input: rows[i + R.input]!,
        base: rows[i + R.base]!,
        blockStart: rows[i + R.blockStart]!,
        outBit: rows[i + R.outBit]!,
        length: rows[i + R.length]!,
        offset: rows[i + R.offset]!,
        byteAvailable: rows[i + R.byteAvailable]!,
      })
    }
    return out
  }
  const ending = (): void => {
    noted = noted.concat(take())
    ended = true
  }
  return {
    write: (input) => a.goFlateWrite(handle, input),
    end: () => {
      ending()
      return a.goFlateEnd(handle)
    },
    // an addon built before the async calls existed (a stale build/): the same work on this thread
    writeAsync: typeof a.goFlateWriteAsync === 'function' ? (input) => a.goFlateWriteAsync(handle, input) : async (input) => a.goFlateWrite(handle, input),
    endAsync: async () => {
      ending()
      return typeof a.goFlateEndAsync === 'function' ? a.goFlateEndAsync(handle) : a.goFlateEnd(handle)
    },
    restarts: () => {
      const out = noted.concat(take())
      noted = []
      return out
    },
  }
}

export interface GoFlateSegmentOptions {
  level: number
  from: GoFlateRestart
  /** the next restart point's outBit, or null for the rest of the stream */
  endBit: number | null
  /**
   * The stream from from.base on: at least to the end of the segment's last block and 64 KiB past it,
   * or to the stream's end (then inputEnds).
   */
  input: Uint8Array
  inputEnds: boolean
}

/**
 * One segment of a stream, encoded on the libuv pool: the bytes from bit from.outBit (rounded down to a
 * byte) to endBit (rounded up), the bits outside the segment zero, for joinGoFlateSegments.
 */
export function encodeGoFlateSegment(o: GoFlateSegmentOptions): Promise<Buffer> {
  const a = addon()
  const R = GO_FLATE_RESTART_ROW
  const row = new Float64Array(7)
  for (const [name, column] of Object.entries(R)) row[column] = o.from[name as keyof GoFlateRestart]
  return a.goFlateSegment(o.level, row, o.endBit ?? -1, o.input, o.inputEnds)
}

/** The DEFLATE stream from its segments, in order, each with the restart point it started from. */
export function joinGoFlateSegments(parts: ReadonlyArray<{ from: GoFlateRestart; bytes: Buffer }>): Buffer {
  const last = parts.at(-1)
  if (!last) return Buffer.alloc(0)
  const out = Buffer.alloc(Math.floor(last.from.outBit / 8) + last.bytes.length)
  for (const { from, bytes } of parts) {
    const at = Math.floor(from.outBit / 8)
    // a segment's first byte holds the previous one's last bits
    out[at] = out[at]! | bytes[0]!
    bytes.copy(out, at + 1, 1)
  }
  return out
}
