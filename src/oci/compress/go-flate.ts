// Go 1.19's compress/flate encoder (native/go-flate.c, a port checked byte for byte against Go itself
// in test/oci/go-flate.test.ts). Its output depends only on the level and the input, as long as the
// input never arrives in a write that leaves the window's end between 65,274 and 65,535 bytes (see
// docs/go-flate.md): callers feed it as they like and get Go's bytes for the same sequence of writes.
import { native, nativeLoadError } from '../../chunk/native.js'
import { SnapdirError } from '../../util/errors.js'
import type { DeflateEncoder } from './deflate-encoder.js'

/** Go's levels: -2 HuffmanOnly, -1 default (6), 0 NoCompression, 1 BestSpeed, 2..9. */
export const GO_FLATE_LEVELS = [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const

export function createGoFlateEncoder(level: number): DeflateEncoder {
  if (!native) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'Go-compatible gzip needs the native addon, which failed to load', { cause: nativeLoadError })
  }
  const addon = native
  const handle = addon.goFlateCreate(level)
  return {
    write: (input) => addon.goFlateWrite(handle, input),
    end: () => addon.goFlateEnd(handle),
  }
}
