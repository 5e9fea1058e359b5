// Tags serve writes for its own keeping, never shown to clients. A manifest pushed by digest alone
// (no tag) is stored at once as a snapshot of its own, so that it lasts past this process and every
// serve process on the store serves it, as a registry keeps what it answered 201 to; a snapshot the
// read side serves is one an image name names, so it gets one of these:
//
//   sha256-<hex>.referrer   a referrer (a manifest with a `subject`: a signature, an SBOM)
//   sha256-<hex>.manifest   any other manifest or index pushed by digest
//
// <hex> is the manifest's own digest, unlike the referrers tag schema's `sha256-<subject hex>` (an
// index of a subject's referrers that clients write and read as any tag). tags/list leaves these out;
// lookups by digest, the referrers API, DELETE by digest and a sync between stores see them as the
// tags they are in the store.

const INTERNAL = /^sha256-[0-9a-f]{64}\.(?:referrer|manifest)$/

/**
 * The tag a manifest pushed by digest alone is stored under; null for a digest other than sha256
 * (sha512's hex does not fit a tag's 128 characters): that manifest is only staged.
 */
export function internalTag(digest: string, kind: 'referrer' | 'manifest'): string | null {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return null
  return `${digest.replace(':', '-')}.${kind}`
}

/** Whether `tag` is one serve keeps a manifest pushed by digest under (not a client's). */
export function isInternalTag(tag: string): boolean {
  return INTERNAL.test(tag)
}
