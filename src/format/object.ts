// Every stored object (chunk or tree) is a 16-byte header and a payload:
//   magic "SDO1" | codec (0 raw, 1 zstd) | 3 reserved zero bytes | raw length, u64 little-endian
// and is named by the BLAKE3 of its raw (decoded) bytes, so a read re-hashes and compares.
import { createRequire } from 'node:module'
import type { Compressor, Decompressor } from 'zstd-napi'
import { hashBytes } from '../chunk/hash.js'
import { native } from '../chunk/native.js'
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
 * zstd level 3 (zstd's own default). Level 1 compressed 45% faster, but its chunks of a layer's files
 * came to 1.08x what Go's gzip -6 made of the same layer, so the first sync of a Docker image sent more
 * than a registry would; level 3 stores 5% less (1.03x) for about 0.1 CPU s more per 100 MB of push
 * (bench/results/zstd-level.txt). Any level decodes the same way, so stores mix levels freely.
 */
export const ZSTD_LEVEL = 3

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
  const { codec, rawLength, payload, corrupt } = parseObject(stored, expectedId, what)
  let raw: Buffer
  if (codec === CODEC_RAW) raw = payload
  else {
    try {
      decompressor ??= new (zstd().Decompressor)()
      raw = decompressor.decompress(payload)
    } catch (err) {
      return corrupt(`zstd payload does not decode (${(err as Error).message})`)
    }
  }
  return checkDecoded(raw, hashBytes(raw), rawLength, expectedId, corrupt)
}

/** Objects up to this size are decoded on the libuv pool by decodeObjectAsync (chunks are at most 256 KiB). */
const ASYNC_DECODE_MAX = 64 << 20

/**
 * decodeObject with the decompression and the hash on the libuv pool (native/object-read.c), so that
 * the JS thread goes on with other work meanwhile: the same checks, the same messages.
 */
export async function decodeObjectAsync(stored: Buffer, expectedId: string, what: string): Promise<Buffer> {
  // an addon built before objectDecode existed (a stale build/ of another checkout): decode here
  if (typeof native?.objectDecode !== 'function') return decodeObject(stored, expectedId, what)
  const { codec, rawLength, payload, corrupt } = parseObject(stored, expectedId, what)
  if (rawLength > ASYNC_DECODE_MAX) return decodeObject(stored, expectedId, what)
  let raw: Buffer
  let hash: Buffer
  try {
    ;[raw, hash] = await native.objectDecode(payload, codec, rawLength)
  } catch (err) {
    return corrupt(`zstd payload does not decode (${(err as Error).message})`)
  }
  return checkDecoded(raw, hash, rawLength, expectedId, corrupt)
}

type Corrupt = (why: string, data?: Record<string, unknown>) => never

function parseObject(stored: Buffer, expectedId: string, what: string): { codec: number; rawLength: number; payload: Buffer; corrupt: Corrupt } {
  const corrupt: Corrupt = (why, data = {}) => {
    throw new SnapdirError('ERR_OBJECT_CORRUPT', `${what}: ${why}`, { data: { id: expectedId, ...data } })
  }
  if (stored.length < HEADER_BYTES || !stored.subarray(0, 4).equals(MAGIC)) corrupt('not a snapdir object (bad header)')
  const codec = stored[4]!
  if (codec !== CODEC_RAW && codec !== CODEC_ZSTD) corrupt(`unknown codec ${codec}`)
  return { codec, rawLength: Number(stored.readBigUInt64LE(8)), payload: stored.subarray(HEADER_BYTES), corrupt }
}

function checkDecoded(raw: Buffer, hash: Buffer, rawLength: number, expectedId: string, corrupt: Corrupt): Buffer {
  if (raw.length !== rawLength) corrupt(`length ${raw.length} differs from the header's ${rawLength}`)
  const computed = toHex(hash)
  if (computed !== expectedId) corrupt(`expected ${expectedId}, computed ${computed}`, { computed })
  return raw
}
