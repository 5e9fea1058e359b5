import { UsageError } from '../util/errors.js'

/** IDs are BLAKE3-256 digests, written as 64 lower-case hex digits. */
export const ID_BYTES = 32
const ID_RE = /^[0-9a-f]{64}$/

export function toHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')
}

export function isId(s: string): boolean {
  return ID_RE.test(s)
}

/** Validates an ID given on the command line. */
export function parseId(s: string): string {
  const id = s.trim().toLowerCase()
  if (!isId(id)) {
    throw new UsageError(`malformed snapshot ID '${s}': expected 64 hex digits (as printed by 'snapdir push')`, 'ERR_BAD_ID')
  }
  return id
}
