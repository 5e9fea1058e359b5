// Every stored object (chunk or tree) is a 16-byte header and a payload:
//   magic "SDO1" | codec (0 raw, 1 zstd) | 3 reserved zero bytes | raw length, u64 little-endian
// and is named by the BLAKE3 of its raw (decoded) bytes, so a read re-hashes and compares.
import { createRequire } from 'node:module'
import type { Compressor, Decompressor } from 'zstd-napi'
import { hashBytes } from '../chunk/hash.js'
import { SnapdirError } from '../util/errors.js'
import { toHex } from './id.js'

const MAGIC = Buffer.from('SDO1')
export const HEADER_BYTES = 16
export const CODEC_RAW = 0
export const CODEC_ZSTD = 1

function header(codec: number, rawLength: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES)
  MAGIC.copy(h, 0)
  h[4] = codec
  h.writeBigUInt64LE(BigInt(rawLength), 8)
  return h
}

/**
 * zstd level 1: on a Debian root file system it stores 4% more than level 3 and compresses 45% faster;
 * the store still comes out smaller than casync's (see bench/).
 */
export const ZSTD_LEVEL = 1

// One compression and one decompression context per thread, reused: setting a context up costs more
// than compressing a 64 KiB chunk. zstd-napi rather than a promise-based binding because push runs
// compression synchronously inside its worker threads, where a thread-pool round trip is pure cost.
let compressor: Compressor | null = null
let decompressor: Decompressor | null = null
// loaded on first use: push's workers compress in native code (native/object-write.c) and never need it
const zstd = (): typeof import('zstd-napi') => createRequire(import.meta.url)('zstd-napi') as typeof import('zstd-napi')

/** Loads zstd now, e.g. while push's workers are busy and this thread is not. */
export function loadObjectCodec(): void {
  zstd()
}

/** Encodes raw bytes, zstd-compressed unless compression does not shrink them. */
export function encodeObject(raw: Buffer): Buffer {
  if (raw.length >= 64) {
    if (!compressor) {
      compressor = new (zstd().Compressor)()
      compressor.setParameters({ compressionLevel: ZSTD_LEVEL })
    }
    const packed = compressor.compress(raw)
    if (packed.length < raw.length) return Buffer.concat([header(CODEC_ZSTD, raw.length), packed])
  }
  return Buffer.concat([header(CODEC_RAW, raw.length), raw])
}

/**
 * Decodes a stored object and checks it is the one asked for. `what` names it in errors,
 * e.g. "chunk 3fa1… from /srv/store".
 */
export function decodeObject(stored: Buffer, expectedId: string, what: string): Buffer {
  const corrupt = (why: string, data: Record<string, unknown> = {}): never => {
    throw new SnapdirError('ERR_OBJECT_CORRUPT', `${what}: ${why}`, { data: { id: expectedId, ...data } })
  }
  if (stored.length < HEADER_BYTES || !stored.subarray(0, 4).equals(MAGIC)) corrupt('not a snapdir object (bad header)')
  const codec = stored[4]
  const rawLength = Number(stored.readBigUInt64LE(8))
  const payload = stored.subarray(HEADER_BYTES)
  let raw: Buffer
  if (codec === CODEC_RAW) raw = payload
  else if (codec === CODEC_ZSTD) {
    try {
      decompressor ??= new (zstd().Decompressor)()
      raw = decompressor.decompress(payload)
    } catch (err) {
      return corrupt(`zstd payload does not decode (${(err as Error).message})`)
    }
  } else return corrupt(`unknown codec ${codec}`)
  if (raw.length !== rawLength) corrupt(`length ${raw.length} differs from the header's ${rawLength}`)
  const computed = toHex(hashBytes(raw))
  if (computed !== expectedId) corrupt(`expected ${expectedId}, computed ${computed}`, { computed })
  return raw
}
