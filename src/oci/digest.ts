// Content digests as image-spec defines them (descriptor.md#digests): `algorithm:encoded`. Only the
// registered algorithms can be checked, so only they are accepted; their encodings are lowercase hex
// of a fixed length, which also makes `blobs/<algorithm>/<encoded>` a safe relative path.

export type DigestAlgorithm = 'sha256' | 'sha512'

export interface Digest {
  algorithm: DigestAlgorithm
  encoded: string
}

const ENCODED_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 }
const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

/** Parses a digest, or returns why it cannot be checked. */
export function parseDigest(value: string): Digest | string {
  if (!GRAMMAR.test(value)) return 'is not a digest (algorithm:hex)'
  const colon = value.indexOf(':')
  const algorithm = value.slice(0, colon)
  const encoded = value.slice(colon + 1)
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return `uses digest algorithm ${algorithm}, which snapdir cannot check (sha256 and sha512 only)`
  const length = ENCODED_LENGTH[algorithm]
  if (encoded.length !== length || !/^[0-9a-f]+$/.test(encoded)) return `is not a valid ${algorithm} digest (${length} lowercase hex digits)`
  return { algorithm, encoded }
}

export function formatDigest(d: Digest): string {
  return `${d.algorithm}:${d.encoded}`
}
