// Content descriptors (image-spec descriptor.md): what a manifest or index says about a blob it
// names. Parsed from untrusted JSON, so every field is checked before it is used as a path or a size.
import { parseDigest, type Digest } from './digest.js'

export interface Descriptor {
  mediaType: string
  digest: Digest
  size: number
  /** where a blob left out of the layout can be fetched (foreign and nondistributable layers) */
  urls: readonly string[]
}

/** The descriptor, or why `value` is not one. */
export function parseDescriptor(value: unknown): Descriptor | string {
  if (!isObject(value)) return 'is not a descriptor (a JSON object)'
  const { mediaType, digest, size, urls } = value
  if (typeof mediaType !== 'string' || mediaType === '') return 'has no mediaType'
  if (typeof digest !== 'string') return 'has no digest'
  const parsed = parseDigest(digest)
  if (typeof parsed === 'string') return `digest ${quote(digest)} ${parsed}`
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return `size ${quote(size)} is not a byte count`
  if (urls !== undefined && (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string'))) return 'urls is not a list of strings'
  return { mediaType, digest: parsed, size, urls: urls ?? [] }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * A value from the layout, fit for a one-line message: as JSON (so a newline in a string cannot break
 * the line), cut short.
 */
export function quote(value: unknown): string {
  const text = value === undefined ? 'nothing' : (JSON.stringify(value) ?? typeof value)
  return text.length > 120 ? `${text.slice(0, 120)}…` : text
}
