// Tags serve writes for its own keeping, never shown to clients. A referrer (a manifest with a
// `subject`: a signature, an SBOM) pushed by digest alone is stored at once as a snapshot of its own,
// and a snapshot the read side serves is one an image name names, so it gets one:
//
//   sha256-<hex>.referrer
//
// <hex> is the manifest's own digest, unlike the referrers tag schema's `sha256-<subject hex>` (an
// index of a subject's referrers that clients write and read as any tag). tags/list leaves these out;
// lookups by digest, the referrers API, DELETE by digest and a sync between stores see them as the
// tags they are in the store.

const INTERNAL = /^sha256-[0-9a-f]{64}\.referrer$/

/**
 * The tag a referrer pushed by digest alone is stored under; null for a digest other than sha256
 * (sha512's hex does not fit a tag's 128 characters): that referrer is only staged.
 */
export function internalTag(digest: string, kind: 'referrer'): string | null {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return null
  return `${digest.replace(':', '-')}.${kind}`
}

/** Whether `tag` is one serve keeps a referrer pushed by digest under (not a client's). */
export function isInternalTag(tag: string): boolean {
  return INTERNAL.test(tag)
}
