// Referrers (signatures, SBOMs: manifests whose `subject` names an image) copied with their image
// between registries (distribution-spec v1.1 "Listing Referrers"): listed through the source's
// referrers API, or where it has none through the tag schema's index (`sha256-<hex>`, an image index
// of the referrers); each sent as any image is (send-image.ts), by digest; and where the destination
// has no referrers API, its tag schema index made to list them too, as oras and cosign do.
import { RegistryBlobs, type ImageOrigin } from '../oci/registry-blobs.js'
import { imageError } from '../oci/layout-problem.js'
import { OCI_INDEX } from '../oci/media-types.js'
import { planTransfer } from '../oci/transfer-plan.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { sendImage, type ImageDestination, type SendOptions } from './send-image.js'

export interface ReferrerDescriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

/** What listing referrers needs of a registry (registry/client.ts RegistryClient). */
export interface ReferrerRegistry {
  referrers(repository: string, digest: string): Promise<ReferrerDescriptor[] | null>
  getManifest(repository: string, reference: string, accept?: readonly string[]): Promise<{ bytes: Buffer; mediaType: string; digest: string }>
}

/** The tag schema's tag for the referrers of `digest`: `sha256-<hex>`. */
export function referrersTag(digest: string): string {
  return digest.replace(':', '-').slice(0, 128)
}

/** The referrers of `subject`: from the referrers API, else the tag schema's index, else none. */
export async function listReferrers(registry: ReferrerRegistry, repository: string, subject: string): Promise<ReferrerDescriptor[]> {
  return (await registry.referrers(repository, subject)) ?? (await taggedReferrers(registry, repository, subject))
}

async function taggedReferrers(registry: ReferrerRegistry, repository: string, subject: string): Promise<ReferrerDescriptor[]> {
  // one GET, a 404 the usual answer: most images have no referrers
  const index = await registry.getManifest(repository, referrersTag(subject), [OCI_INDEX]).catch((err: unknown) => {
    if (err instanceof SnapdirError && err.code === 'ERR_REGISTRY_NOT_FOUND') return null
    throw err
  })
  if (index === null) return []
  const { bytes } = index
  const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: unknown }
  if (!Array.isArray(doc.manifests)) return []
  return (doc.manifests as Array<Partial<ReferrerDescriptor>>).filter((d): d is ReferrerDescriptor => typeof d.digest === 'string' && typeof d.mediaType === 'string' && typeof d.size === 'number')
}

/** The referrers of each of `subjects`, those that have any, in their order; `jobs` listed at once. */
export async function referrersOf(registry: ReferrerRegistry, repository: string, subjects: readonly string[], jobs = 4): Promise<SubjectReferrers[]> {
  const listed = new Map<string, ReferrerDescriptor[]>()
  await forEachLimit(subjects, jobs, async (subject) => {
    listed.set(subject, await listReferrers(registry, repository, subject))
  })
  return subjects.map((subject) => ({ subject, referrers: listed.get(subject) ?? [] })).filter((l) => l.referrers.length > 0)
}

export interface SubjectReferrers {
  subject: string
  referrers: ReferrerDescriptor[]
}

/**
 * Copies the referrers `listed` (referrersOf at the source: listing needs nothing of the target, so a
 * copy lists while it sends the image, and sends these once their subjects are there) from `source`
 * to `target`; returns how many it copied (those there already included: each is sent by digest,
 * which costs one HEAD when it is there).
 */
export async function copyReferrers(
  from: ImageOrigin & ReferrerRegistry,
  sourceRepository: string,
  to: ImageDestination & ReferrerRegistry & { readonly registry: string },
  targetRepository: string,
  listed: readonly SubjectReferrers[],
  options: SendOptions = {},
): Promise<number> {
  let copied = 0
  for (const { subject, referrers } of listed) {
    for (const d of referrers) {
      const blobs = new RegistryBlobs(from, sourceRepository)
      const shown = `${from.registry}/${sourceRepository}@${d.digest}`
      const plan = await (async () => planTransfer(blobs, await blobs.image(d.digest), { artifacts: true }))().catch((err: unknown) => {
        throw imageError(err, 'ERR_IMAGE', `referrer ${shown} of ${subject}`, { image: shown })
      })
      await sendImage(plan, to, targetRepository, d.digest, options)
      copied++
    }
    if ((await to.referrers(targetRepository, subject)) !== null) continue
    // no referrers API at the destination: the tag schema's index lists them, with any it listed before
    const have = await taggedReferrers(to, targetRepository, subject)
    const added = referrers.filter((r) => !have.some((h) => h.digest === r.digest))
    if (added.length === 0) continue
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [...have, ...added] }))
    await to.putManifest(targetRepository, referrersTag(subject), index, OCI_INDEX)
  }
  return copied
}
