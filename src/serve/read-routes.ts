// The read side of the OCI Distribution API v1.1 (distribution-spec "Pull", "Content Discovery"):
//   GET /v2/                                   the API is here (200)
//   GET|HEAD /v2/<name>/manifests/<reference>  by tag or digest, the stored bytes and media type
//   GET|HEAD /v2/<name>/blobs/<digest>         streamed, checked, with Range
//   GET /v2/<name>/tags/list                   paginated (n, last, Link)
//   GET /v2/<name>/referrers/<digest>          an image index of the manifests whose subject it is
//   GET /v2/_catalog                           paginated
// https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md
import { OCI_INDEX } from '../oci/media-types.js'
import { sendBlob } from './blob-response.js'
import { paginate } from './pagination.js'
import { BLOB_PATH, MANIFEST_PATH, checkDigest, manifestReference, type RequestContext, type Route } from './route.js'

/** A JSON answer; `headers` before the body. */
export function sendJson(ctx: RequestContext, value: unknown, headers: Record<string, string> = {}, contentType = 'application/json'): void {
  const body = Buffer.from(JSON.stringify(value))
  ctx.res.writeHead(200, { ...headers, 'Content-Type': contentType, 'Content-Length': String(body.length) })
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body)
}

async function base(ctx: RequestContext): Promise<void> {
  sendJson(ctx, {})
  return Promise.resolve()
}

async function catalog(ctx: RequestContext): Promise<void> {
  const page = paginate(await ctx.images.repositories(), ctx.url, '/v2/_catalog')
  sendJson(ctx, { repositories: page.items }, page.link !== undefined ? { Link: page.link } : {})
}

async function tagsList(ctx: RequestContext): Promise<void> {
  const name = ctx.params.name!
  // paged over what the client sees: a page is never short for a tag left out
  const tags = await ctx.images.visibleTags(name)
  const page = paginate(tags, ctx.url, `/v2/${name}/tags/list`)
  sendJson(ctx, { name, tags: page.items }, page.link !== undefined ? { Link: page.link } : {})
}

/** A manifest as the store holds it (also the fallback of what a client pushed: staged-read-routes.ts). */
export async function readManifest(ctx: RequestContext): Promise<void> {
  const { name, reference } = ctx.params as { name: string; reference: string }
  const kind = manifestReference(reference, 'MANIFEST_UNKNOWN')
  sendManifest(ctx, await ctx.images.manifest(name, reference, kind))
}

/**
 * A manifest's answer: its bytes and media type as stored, never converted (the client that asked
 * for another type gets the one there is); the body left out for HEAD.
 */
export function sendManifest(ctx: RequestContext, m: { bytes: Buffer; mediaType: string; digest: string }): void {
  ctx.res.writeHead(200, {
    'Content-Type': m.mediaType,
    'Content-Length': String(m.bytes.length),
    'Docker-Content-Digest': m.digest,
    ETag: `"${m.digest}"`,
  })
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : m.bytes)
}

/** A blob as the store holds it (also the fallback of what a client pushed: staged-read-routes.ts). */
export async function readBlob(ctx: RequestContext): Promise<void> {
  const { name, digest } = ctx.params as { name: string; digest: string }
  checkDigest(digest)
  await sendBlob(ctx, await ctx.images.blob(name, digest))
}

async function referrers(ctx: RequestContext): Promise<void> {
  const { name, digest } = ctx.params as { name: string; digest: string }
  checkDigest(digest)
  let found = await ctx.images.referrers(name, digest)
  const headers: Record<string, string> = {}
  const artifactType = ctx.url.searchParams.get('artifactType')
  if (artifactType !== null) {
    found = found.filter((r) => r.artifactType === artifactType)
    headers['OCI-Filters-Applied'] = 'artifactType'
  }
  sendJson(ctx, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: found }, headers, OCI_INDEX)
}

// a name may hold slashes: each pattern ends in a fixed tail that says where the name stops
export const readRoutes: readonly Route[] = [
  { methods: ['GET'], path: /^\/v2\/?$/, handle: base },
  { methods: ['GET'], path: /^\/v2\/_catalog$/, handle: catalog },
  { methods: ['GET'], path: /^\/v2\/(?<name>.+)\/tags\/list$/, handle: tagsList },
  { methods: ['GET'], path: MANIFEST_PATH, handle: readManifest },
  { methods: ['GET'], path: BLOB_PATH, handle: readBlob },
  { methods: ['GET'], path: /^\/v2\/(?<name>.+)\/referrers\/(?<digest>[^/]+)$/, handle: referrers },
]
