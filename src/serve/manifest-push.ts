// PUT /v2/<name>/manifests/<reference> (distribution-spec, "Pushing Manifests"): the manifest is
// checked (size, JSON, a known image manifest or index media type, the digest when the reference is
// one) and every blob or manifest it names must be there, uploaded to this repository or stored under
// one of its tags (else MANIFEST_BLOB_UNKNOWN, and nothing is kept). Then:
//   - with a tag, the image becomes a snapshot as any push makes one (push-registry.ts over a
//     PushedImage), named <name>:<tag> in the store's image names, written last: until then nothing
//     of it is visible, and a process dying halfway leaves only objects nothing names;
//   - by digest alone (skopeo pushes an index's images so, then the index by tag; `skopeo copy …
//     docker://host/repo@sha256:…` and oras push an image so; oras, cosign and sync push referrers
//     so), it is stored at once the same way, as a snapshot of its own under a tag clients do not
//     see (internal-tags.ts): it lasts, other serve processes on the store serve it by its digest,
//     the referrers API lists it when it has a subject, and an index pushed later takes it from the
//     store (its layers are not expanded twice: push-registry.ts skips layers the store holds).
//     A digest other than sha256 has no such tag: that manifest is only staged, for a later
//     manifest of the repository pushed to this process to take along.
// Two pushes of one tag each commit whole; the tag names whichever wrote its record last.
import { createHash } from 'node:crypto'
import { isObject, type Descriptor } from '../oci/descriptor.js'
import { formatDigest, parseDigest } from '../oci/digest.js'
import { manifestParts, indexEntries } from '../oci/document-walker.js'
import { LayoutProblem } from '../oci/layout-problem.js'
import { INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST } from '../oci/media-types.js'
import { pushFromRegistry } from '../snapshot/push-registry.js'
import { imageNameKey, readImageName } from '../store/image-names.js'
import type { Store } from '../store/store.js'
import { Semaphore } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { RegistryError } from './errors.js'
import { internalTag } from './internal-tags.js'
import { PushedImage } from './pushed-image.js'
import type { RepositoryImages } from './repository-images.js'
import type { StagedBlobs, StagedManifest } from './staged-blobs.js'

/**
 * Layers of one pushed image expanded at once: one's recipe check (its compression on the pool's
 * threads) overlaps the other's expansion (bound to the JS thread), so more would gain nothing.
 */
const LAYERS_AT_ONCE = 2

/** The largest manifest taken (distribution's own limit; containerd's too). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

export interface ManifestPushContext {
  store: Store
  staged: StagedBlobs
  /** what the repository's tags hold in the store (the read side's view) */
  stored: RepositoryImages
  /** bounds how many pushed images are stored at once (each expands layers) */
  ingest: Semaphore
}

export interface ManifestPut {
  repository: string
  /** a tag or a digest */
  reference: string
  bytes: Buffer
  /** the request's Content-Type, if any */
  contentType?: string
  signal?: AbortSignal
}

export interface PushedManifest {
  digest: string
  mediaType: string
  /** the snapshot stored, for a push with a tag */
  id?: string
}

export async function pushManifest(ctx: ManifestPushContext, put: ManifestPut): Promise<PushedManifest> {
  const { repository, reference, bytes } = put
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new RegistryError('MANIFEST_INVALID', { message: `the manifest is ${bytes.length} bytes; at most ${MAX_MANIFEST_BYTES} are taken`, status: 413 })
  }
  const byDigest = reference.includes(':')
  let tag: string | undefined
  let digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  if (byDigest) {
    const d = parseDigest(reference)
    if (typeof d === 'string') throw new RegistryError('DIGEST_INVALID', { message: `reference ${JSON.stringify(reference)} ${d}` })
    const computed = `${d.algorithm}:${createHash(d.algorithm).update(bytes).digest('hex')}`
    if (computed !== formatDigest(d)) throw new RegistryError('DIGEST_INVALID', { message: `the manifest hashes to ${computed}, not ${reference}` })
    digest = computed
  } else {
    tag = reference
    // the tag's grammar, and the repository's length as a store key
    try {
      imageNameKey({ name: repository, tag })
    } catch (err) {
      throw new RegistryError('MANIFEST_INVALID', { message: (err as Error).message })
    }
  }
  const { mediaType, named, referrer } = parseManifest(bytes, put.contentType)
  await checkNamed(ctx, repository, named)
  const top: StagedManifest = { bytes, mediaType, digest }
  const shownAs = tag === undefined ? `${repository}@${digest}` : `${repository}:${tag}`
  tag ??= internalTag(digest, referrer ? 'referrer' : 'manifest') ?? undefined
  if (tag === undefined) {
    ctx.staged.addManifest(repository, top)
    return { digest, mediaType }
  }

  // the tag names these very bytes already (a push repeated): nothing to store again
  const there = await readImageName(ctx.store, { name: repository, tag }, () => {}).catch(() => null)
  if (there?.digest === digest) {
    await ctx.staged.drop(repository, [digest, ...named.map((d) => formatDigest(d.digest))])
    return { digest, mediaType, id: there.id }
  }

  await ctx.ingest.acquire(put.signal)
  const image = new PushedImage(top, ctx.staged, ctx.stored)
  try {
    const result = await pushFromRegistry(
      ctx.store,
      { registry: image, repository, reference: digest, tag, shownAs },
      { name: shownAs, images: [{ name: repository, tag, digest }], artifacts: true, layerConcurrency: LAYERS_AT_ONCE, ...(put.signal ? { signal: put.signal } : {}) },
    ).catch((err: unknown) => {
      // what is wrong with the image itself (not the store) is the client's: MANIFEST_INVALID
      if (err instanceof SnapdirError && err.code === 'ERR_SOURCE') throw new RegistryError('MANIFEST_INVALID', { message: err.message, cause: err })
      throw err
    })
    image.release()
    await ctx.staged.drop(repository, image.named())
    return { digest, mediaType, id: result.id }
  } finally {
    image.release()
    ctx.ingest.release()
  }
}

/** The manifest's media type and the descriptors it names that must be there; MANIFEST_INVALID when it is not one. */
function parseManifest(bytes: Buffer, contentType: string | undefined): { mediaType: string; named: Descriptor[]; referrer: boolean } {
  let doc: unknown
  try {
    doc = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new RegistryError('MANIFEST_INVALID', { message: `the manifest is not JSON: ${(err as Error).message}` })
  }
  if (!isObject(doc)) throw new RegistryError('MANIFEST_INVALID', { message: 'the manifest is not a JSON object' })
  if (doc.schemaVersion !== 2) throw new RegistryError('MANIFEST_INVALID', { message: `the manifest has schemaVersion ${JSON.stringify(doc.schemaVersion)}; only 2 (OCI, Docker v2 schema 2) is taken` })
  const given = contentType?.split(';')[0]!.trim().toLowerCase()
  const own = typeof doc.mediaType === 'string' ? doc.mediaType : undefined
  const known = (t: string | undefined): boolean => t !== undefined && (INDEX_TYPES.has(t) || MANIFEST_TYPES.has(t))
  // the media type is the Content-Type's, as the client pushed it; the document's own must agree
  const mediaType = known(given) ? given! : (own ?? (Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST))
  if (own !== undefined && own !== mediaType) throw new RegistryError('MANIFEST_INVALID', { message: `the manifest says it is ${own} but was pushed as ${mediaType}` })
  if (!known(mediaType)) throw new RegistryError('MANIFEST_INVALID', { message: `${mediaType} is not an image manifest or index media type` })
  const name = `the manifest (${mediaType})`
  const referrer = isObject(doc.subject)
  try {
    if (INDEX_TYPES.has(mediaType)) return { mediaType, named: indexEntries(doc, name).map((e) => e.descriptor), referrer }
    // an artifact (a signature, an SBOM) names blobs of any media type
    const parts = manifestParts(doc, name, { artifacts: true })
    // a foreign layer (with urls) is not pushed: a registry does not have it
    const named = [parts.config.descriptor, ...parts.layers.map((l) => l.descriptor).filter((d) => d.urls.length === 0)]
    return { mediaType, named, referrer }
  } catch (err) {
    if (err instanceof LayoutProblem) throw new RegistryError('MANIFEST_INVALID', { message: err.message })
    throw err
  }
}

/** Every descriptor's blob (or manifest) is uploaded to or stored in `repository`, with its size. */
async function checkNamed(ctx: ManifestPushContext, repository: string, named: Descriptor[]): Promise<void> {
  for (const d of named) {
    const digest = formatDigest(d.digest)
    const isDocument = INDEX_TYPES.has(d.mediaType) || MANIFEST_TYPES.has(d.mediaType)
    let size: number | null = null
    if (isDocument) size = ctx.staged.manifest(repository, digest)?.bytes.length ?? null
    size ??= (await ctx.staged.stat(repository, digest))?.size ?? null
    size ??= await storedSize(ctx.stored, repository, digest, isDocument)
    if (size === null) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { message: `${isDocument ? 'manifest' : 'blob'} ${digest} is not in ${repository}: push it first`, detail: { digest } })
    if (size !== d.size) throw new RegistryError('MANIFEST_INVALID', { message: `${digest} is ${size} bytes in ${repository}, the manifest says ${d.size}`, detail: { digest } })
  }
}

/** The size of what `repository`'s tags hold under `digest` in the store, or null. */
async function storedSize(stored: RepositoryImages, repository: string, digest: string, isDocument: boolean): Promise<number | null> {
  try {
    return isDocument ? (await stored.manifest(repository, digest, 'digest')).bytes.length : (await stored.blob(repository, digest)).size
  } catch (err) {
    if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'BLOB_UNKNOWN' || err.code === 'NAME_UNKNOWN')) return null
    throw err
  }
}
