// klauspost/compress 1.15.12's zstd encoder with the options containers/image (skopeo, podman, buildah)
// uses: what their zstd layers are written with. The encoder is ours, in C (native/kzstd.c), byte for
// byte the Go code's output, frame header, blocks and checksum included (docs/zstd.md).
import { native } from '../../chunk/index.js'
import { SnapdirError } from '../../util/errors.js'

/** klauspost's EncoderLevel numbers (zstd.SpeedDefault is what zstd.NewWriter uses unless told otherwise). */
export const ZSTD_SPEED_FASTEST = 1
export const ZSTD_SPEED_DEFAULT = 2

/** The levels our encoder reproduces, the likeliest first. */
export const KZSTD_LEVELS: readonly number[] = [ZSTD_SPEED_DEFAULT, ZSTD_SPEED_FASTEST]

/** A zstd compressor and its parameters, as a recipe records them (format/recipe.ts). */
export interface ZstdParams {
  /** `klauspost`: klauspost/compress 1.15.12's zstd.Encoder */
  family: string
  /** its EncoderLevel */
  level: number
  /** WithWindowSize (the largest match distance; the frame's window descriptor) */
  windowSize: number
  /** input bytes per block (128 KiB unless the window is smaller) */
  blockSize: number
  /** WithEncoderCRC: the frame ends with the low 32 bits of the content's xxhash64 */
  checksum: boolean
}

/** What `zstd.NewWriter(w)` uses: containers/image's options. */
export const KLAUSPOST_ZSTD_DEFAULTS: Readonly<ZstdParams> = {
  family: 'klauspost', level: ZSTD_SPEED_DEFAULT, windowSize: 8 << 20, blockSize: 128 << 10, checksum: true,
}

/**
 * What `zstd.NewWriter(w, zstd.WithEncoderLevel(level))` uses: WithEncoderLevel sets the window and
 * the block size from the level (SpeedFastest: 4 MiB and 64 KiB; SpeedDefault: 8 MiB and 128 KiB).
 */
export function klauspostZstd(level: number): ZstdParams {
  if (level === ZSTD_SPEED_FASTEST) return { ...KLAUSPOST_ZSTD_DEFAULTS, level, windowSize: 4 << 20, blockSize: 64 << 10 }
  return { ...KLAUSPOST_ZSTD_DEFAULTS, level }
}

/**
 * Writes one whole zstd stream: write() and end() return the bytes to append to the blob; writeAsync()
 * and endAsync() do the same on the libuv pool (one call at a time), for a thread that must stay free.
 */
export interface ZstdEncoder {
  write(input: Buffer): Buffer
  end(): Buffer
  writeAsync(input: Buffer): Promise<Buffer>
  endAsync(): Promise<Buffer>
}

/**
 * What `zstd.NewWriter(w, zstd.WithEncoderLevel(level))` writes for the bytes given, whatever the split
 * of the writes: a frame of 128 KiB blocks with an 8 MiB window and the content checksum, or, for less
 * than one block in all, a single-segment frame with its content size (Go's EncodeAll). Only klauspost's
 * default window, block size and checksum are reproduced.
 */
export function createZstdEncoder(options: Partial<ZstdParams> & { level: number }): ZstdEncoder {
  if (!KZSTD_LEVELS.includes(options.level)) {
    throw new SnapdirError('ERR_INTERNAL', `zstd encoder: options.level must be one of ${KZSTD_LEVELS.join(', ')} (klauspost EncoderLevel), got ${options.level}`)
  }
  const want = klauspostZstd(options.level)
  const p = { ...want, ...options }
  for (const name of ['family', 'windowSize', 'blockSize', 'checksum'] as const) {
    if (p[name] !== want[name]) {
      throw new SnapdirError('ERR_INTERNAL', `zstd encoder: options.${name} must be ${String(want[name])} at level ${p.level} (the only one reproduced), got ${String(p[name])}`)
    }
  }
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install (the zstd encoder needs it)')
  const addon = native
  const handle = addon.zstdCreate(p.level)
  return {
    write: (input) => addon.zstdWrite(handle, input),
    end: () => addon.zstdEnd(handle),
    // an addon built before the async calls existed (a stale build/): the same work on this thread
    writeAsync: typeof addon.zstdWriteAsync === 'function' ? (input) => addon.zstdWriteAsync(handle, input) : async (input) => addon.zstdWrite(handle, input),
    endAsync: typeof addon.zstdEndAsync === 'function' ? () => addon.zstdEndAsync(handle) : async () => addon.zstdEnd(handle),
  }
}

const ZSTD_MAGIC = 0xfd2fb528
/** FHD bits (RFC 8878 3.1.1.1.1) */
const FHD_DICT_ID = 0x03
const FHD_CHECKSUM = 0x04
const FHD_RESERVED = 0x08
const FHD_SINGLE_SEGMENT = 0x20
/** klauspost's stream frames: window descriptors of 8 MiB (SpeedDefault) and 4 MiB (SpeedFastest); its frame for 1 KiB or less: 1 KiB */
const WD_8MIB = 0x68
const WD_4MIB = 0x60
const WD_1KIB = 0x00

/**
 * The zstd compressors snapdir has that could have written a blob starting with `head` (its first
 * bytes), or why none could. klauspost writes the checksum and no dictionary ID, and either its stream
 * frame (no content size; the window tells the level) or, for less than one block, a single-segment
 * frame with the content size (a 1 KiB window descriptor instead for 1 KiB or less), which any level
 * may have written.
 */
export function zstdCandidates(head: Buffer): { candidates: ZstdParams[] } | { problem: string } {
  if (head.length < 6 || head.readUInt32LE(0) !== ZSTD_MAGIC) return { problem: 'not a zstd frame (no 28 b5 2f fd magic)' }
  const fhd = head[4]!
  const shown = `zstd frame header FHD 0x${fhd.toString(16).padStart(2, '0')}`
  if (fhd & FHD_RESERVED) return { problem: `${shown} has its reserved bit set` }
  if (fhd & FHD_DICT_ID) return { problem: `${shown} names a dictionary, which no compressor snapdir has uses` }
  if (!(fhd & FHD_CHECKSUM)) return { problem: `${shown} has no checksum, which no compressor snapdir has leaves out` }
  const levels = fhd & FHD_SINGLE_SEGMENT || head[5] === WD_1KIB ? KZSTD_LEVELS : head[5] === WD_8MIB ? [ZSTD_SPEED_DEFAULT] : head[5] === WD_4MIB ? [ZSTD_SPEED_FASTEST] : []
  if (levels.length === 0) return { problem: `${shown}, window descriptor 0x${head[5]!.toString(16)}: no compressor snapdir has writes that window` }
  return { candidates: levels.map(klauspostZstd) }
}
