import { createRequire } from 'node:module'
import { native } from './native.js'

type Blake3 = (data: Uint8Array) => Buffer

/**
 * The addon's BLAKE3 (the C implementation push's native path hashes with), or, when the addon is
 * not built, @napi-rs/blake-hash, loaded only then.
 */
const blake3: Blake3 = native
  ? (data) => native!.blake3(data)
  : (createRequire(import.meta.url)('@napi-rs/blake-hash') as { blake3: Blake3 }).blake3

/** BLAKE3-256 of the bytes: the ID of every chunk and tree. */
export function hashBytes(data: Buffer): Buffer {
  return blake3(data)
}

const zeroIds = new Map<number, Buffer>()

/** ID of a chunk of `length` zero bytes (memoised: sparse files repeat one or two lengths). */
export function zeroChunkId(length: number): Buffer {
  let id = zeroIds.get(length)
  if (!id) {
    id = hashBytes(Buffer.alloc(length))
    zeroIds.set(length, id)
  }
  return id
}
