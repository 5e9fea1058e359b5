// klauspost/compress 1.15.12's zstd encoder with the options containers/image (skopeo, podman, buildah)
// uses: what their zstd layers are written with. The encoder is ours, in C (native/kzstd.c), byte for
// byte the Go code's output, frame header, blocks and checksum included (docs/zstd.md).
import { native } from '../../chunk/index.js'
import { SnapdirError } from '../../util/errors.js'

/** klauspost's EncoderLevel numbers (zstd.SpeedDefault is what zstd.NewWriter uses unless told otherwise). */
export const ZSTD_SPEED_DEFAULT = 2

/** The levels our encoder reproduces. */
export const KZSTD_LEVELS: readonly number[] = [ZSTD_SPEED_DEFAULT]

/** Writes one whole zstd stream: write() and end() return the bytes to append to the blob. */
export interface ZstdEncoder {
  write(input: Buffer): Buffer
  end(): Buffer
}

/**
 * What `zstd.NewWriter(w, zstd.WithEncoderLevel(level))` writes for the bytes given, whatever the split
 * of the writes: a frame of 128 KiB blocks with an 8 MiB window and the content checksum, or, for less
 * than one block in all, a single-segment frame with its content size (Go's EncodeAll).
 */
export function createZstdEncoder(options: { level: number }): ZstdEncoder {
  const { level } = options
  if (!KZSTD_LEVELS.includes(level)) {
    throw new SnapdirError('ERR_INTERNAL', `zstd encoder: options.level must be one of ${KZSTD_LEVELS.join(', ')} (klauspost EncoderLevel), got ${level}`)
  }
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install (the zstd encoder needs it)')
  const addon = native
  const handle = addon.zstdCreate(level)
  return {
    write: (input) => addon.zstdWrite(handle, input),
    end: () => addon.zstdEnd(handle),
  }
}
