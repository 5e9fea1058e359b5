// klauspost pgzip 1.2.5 on klauspost/compress 1.15.12 flate: what containers/image (skopeo, podman,
// buildah) and umoci write their gzip layers with. The encoder is ours, in C (native/kflate.c,
// native/pgzip.c), byte for byte the same as the Go code, its blocks compressed on worker threads.
import os from 'node:os'
import { native } from '../../chunk/index.js'
import { SnapdirError } from '../../util/errors.js'
import type { DeflateEncoder } from './deflate-encoder.js'
import { GZIP_FLAGS, type GzipHeader } from './gzip-member.js'

/** pgzip's defaultBlockSize (containers/image: pgzip.NewWriterLevel) */
export const PGZIP_DEFAULT_BLOCK_SIZE = 1 << 20
/** umoci 0.4.7: SetConcurrency(256 << 10, 2 * GOMAXPROCS) */
export const PGZIP_UMOCI_BLOCK_SIZE = 256 << 10
/** pgzip refuses block sizes up to its 16 KiB tail */
const TAIL_SIZE = 16384
/** MTIME pgzip writes when the caller leaves ModTime unset: Go's zero time.Time's Unix() as uint32 */
export const PGZIP_ZERO_MTIME = 0x886e0900

export interface PgzipEncoderOptions {
  /** flate level: -2 Huffman only, -1 default (the same stream as 5), 0 stored, 1..9 */
  level: number
  /** input bytes per block (pgzip's SetConcurrency blockSize) */
  blockSize: number
  /** worker threads; 0 compresses on the calling thread. Default: the machine's cores */
  threads?: number
}

/**
 * A raw DEFLATE encoder writing what pgzip writes between its gzip header and trailer. write() returns
 * the bytes of the blocks finished so far, in order (blocks finish on worker threads); end() the rest.
 */
export function createPgzipEncoder(options: PgzipEncoderOptions): DeflateEncoder {
  const { level, blockSize } = options
  if (!Number.isInteger(level) || level < -2 || level > 9) {
    throw new SnapdirError('ERR_INTERNAL', `pgzip encoder: options.level must be an integer -2..9, got ${level}`)
  }
  if (!Number.isInteger(blockSize) || blockSize <= TAIL_SIZE || blockSize > 2 ** 30) {
    throw new SnapdirError('ERR_INTERNAL', `pgzip encoder: options.blockSize must be an integer ${TAIL_SIZE + 1}..2^30, got ${blockSize}`)
  }
  const threads = options.threads ?? Math.min(os.availableParallelism(), 16)
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install (the pgzip encoder needs it)')
  const addon = native
  const handle = addon.pgzipCreate(level, blockSize, threads)
  return {
    write: (input) => addon.pgzipWrite(handle, input),
    end: () => addon.pgzipEnd(handle),
    // an addon built before the async calls existed (a stale build/): the same work on this thread
    writeAsync: typeof addon.pgzipWriteAsync === 'function' ? (input) => addon.pgzipWriteAsync(handle, input) : async (input) => addon.pgzipWrite(handle, input),
    endAsync: typeof addon.pgzipEndAsync === 'function' ? () => addon.pgzipEndAsync(handle) : async () => addon.pgzipEnd(handle),
  }
}

/** The pgzip parameters a header allows, likeliest first. */
export interface PgzipCandidate {
  level: number
  blockSize: number
}

/**
 * Which pgzip writers could have written this header: pgzip sets FLG only for a name, comment or
 * extra field (never FTEXT or FHCRC), and XFL from the level alone: 2 for 9, 4 for 1, 0 for the rest.
 * The block size is not in the header: containers/image's default first, then umoci's.
 */
export function pgzipCandidates(header: GzipHeader): PgzipCandidate[] {
  if (header.headerCrc || header.flags & GZIP_FLAGS.FTEXT) return []
  let levels: number[]
  if (header.xfl === 2) levels = [9]
  else if (header.xfl === 4) levels = [1]
  else if (header.xfl === 0) levels = [-1, 2, 3, 4, 6, 7, 8, 0, -2] // 5 writes what -1 does
  else return []
  const sizes = [PGZIP_DEFAULT_BLOCK_SIZE, PGZIP_UMOCI_BLOCK_SIZE]
  return levels.flatMap((level) => sizes.map((blockSize) => ({ level, blockSize })))
}
