// Reading the msgpack objects the format writes (trees, recipes): one msgpackr reader, loaded on first
// use (push writes with MsgpackWriter and never needs it), and the type checks every decoder applies.
import { createRequire } from 'node:module'
import type { Unpackr } from 'msgpackr'

let unpackr: Unpackr | null = null

/** The reader for canonical objects: no records, no maps, 64-bit integers as numbers. */
export function msgpackReader(): Unpackr {
  if (!unpackr) {
    const { Unpackr } = createRequire(import.meta.url)('msgpackr') as typeof import('msgpackr')
    unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' })
  }
  return unpackr
}

export function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array
}

/** msgpackr gives bins as Buffers or as Uint8Array views: a Buffer over the same memory either way. */
export function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}
