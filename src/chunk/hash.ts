import { blake3 } from '@napi-rs/blake-hash'

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
