// Registry to registry (sync --from docker://… --to docker://…), as image-syncer copies: the source's
// documents read by digest, each blob streamed from the source's GET into the destination's upload,
// checked by digest on the way (the client's verifying stream, and the destination's own check),
// nothing staged. A blob the destination registry holds in the source repository is mounted, not sent.
// The image's referrers follow it (copy-referrers.ts), listed while its blobs go. A no-op re-sync
// stops at the tag's HEAD, so a referrer added to an image already copied comes along with the
// image's next change. Requests that do not depend on each other go at once.
import { RegistryBlobs, type ImageOrigin } from '../oci/registry-blobs.js'
import { imageError } from '../oci/layout-problem.js'
import { planTransfer, type TransferOptions } from '../oci/transfer-plan.js'
import { SnapdirError } from '../util/errors.js'
import { copyReferrers, referrersOf, type ReferrerRegistry } from './copy-referrers.js'
import { sendImage, type ImageDestination, type SendOptions, type SendSummary } from './send-image.js'

export interface ImageCopySource extends ImageOrigin, ReferrerRegistry {
  headManifest(repository: string, reference: string): Promise<{ digest: string } | null>
}

export interface ImageCopySummary extends SendSummary {
  rewritten: boolean
  /** referrers (signatures, SBOMs) of the image's manifests copied with it */
  referrers: number
}

export interface RepositoryRef {
  repository: string
  /** a tag or a digest */
  reference: string
}

/**
 * What the caller asked just before the copy (a sync run: its plan resolved the source, and it checked
 * the target for being up to date), so the copy need not ask again: the manifest digest the source's
 * reference names, and what the target's reference names (null: nothing).
 */
export interface KnownReferences {
  source: string
  target: string | null
}

export async function copyImage(
  from: ImageCopySource,
  source: RepositoryRef,
  to: ImageDestination & ReferrerRegistry & { readonly registry: string },
  target: RepositoryRef,
  options: SendOptions & TransferOptions & { referrers?: boolean; known?: KnownReferences } = {},
): Promise<ImageCopySummary> {
  const shown = `${from.registry}/${source.repository}:${source.reference}`
  const whole = (options.platforms ?? []).length === 0
  if (whole) {
    // a no-op re-sync costs one manifest request on each side, asked at once
    const [head, there] = options.known
      ? [{ digest: options.known.source }, options.known.target === null ? null : { digest: options.known.target }]
      : await Promise.all([from.headManifest(source.repository, source.reference), to.headManifest(target.repository, target.reference)])
    if (head === null) throw new SnapdirError('ERR_REGISTRY_NOT_FOUND', `${shown}: no such image`)
    if (there?.digest === head.digest) {
      return { digest: head.digest, alreadyComplete: true, rewritten: false, referrers: 0, blobs: { sent: 0, skipped: 0, mounted: 0 }, bytes: { sent: 0, skipped: 0, mounted: 0 }, manifests: { sent: 0, skipped: 0 } }
    }
  }
  const blobs = new RegistryBlobs(from, source.repository)
  const plan = await (async () => planTransfer(blobs, await blobs.image(source.reference), options))().catch((err: unknown) => {
    throw imageError(err, 'ERR_IMAGE', shown, { image: shown })
  })
  const more = options.mountFrom
  const mountFrom =
    from.registry !== to.registry ? more : typeof more === 'function' ? (digest: string) => [source.repository, ...more(digest)] : [source.repository, ...(more ?? [])]
  const sendOptions = { ...options, ...(mountFrom ? { mountFrom } : {}) }
  // the referrers listed while the image is sent (listing needs nothing of the target); sent after
  // their subjects, as a registry may refuse a manifest whose subject it lacks
  const listing = options.referrers === false ? null : referrersOf(from, source.repository, plan.manifests.map((m) => m.digest), options.jobs)
  listing?.catch(() => {}) // awaited below, unless the send fails first
  const summary = await sendImage(plan, to, target.repository, target.reference, { ...sendOptions, ...(whole ? { referenceChecked: true } : {}) })
  const referrers = listing === null ? 0 : await copyReferrers(from, source.repository, to, target.repository, await listing, sendOptions)
  return { ...summary, rewritten: plan.rewritten, referrers }
}
