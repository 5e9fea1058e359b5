// What a route of the registry is, and how a request finds its route. The server (server.ts) reads
// routes from one table (route-table.ts), first match wins; a route is a method list, a path pattern
// whose named groups become `params`, and a handler. A `name` group is a repository name, checked
// against the spec's grammar before any handler runs (NAME_INVALID: so `..` or `%2e` never reach a
// store key). A route marked `write` is refused with UNSUPPORTED when the server is --read-only.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Store } from '../store/store.js'
import type { BlobCache } from './blob-cache.js'
import { RegistryError } from './errors.js'
import { isInternalTag } from './internal-tags.js'
import type { RepositoryImages } from './repository-images.js'

export interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  /** the route's named groups; `name` validated */
  params: Readonly<Record<string, string>>
  /** the user --htpasswd authenticated, or null */
  user: string | null
  store: Store
  /** the read side's view of the store: what each repository's tags name */
  images: RepositoryImages
  /** regenerated blobs kept on local disk (blob-cache.ts); null: each request reads the store */
  blobCache: BlobCache | null
  /** adds fields to this request's access log line (e.g. the problem of an aborted blob) */
  note(fields: Record<string, unknown>): void
  /** a line on the server's log, outside the access log (a fault worth a look) */
  warn(message: string, fields?: Record<string, unknown>): void
}

export interface Route {
  methods: readonly string[]
  /** anchored; named groups become params */
  path: RegExp
  /** changes the store: refused by --read-only */
  write?: boolean
  handle(ctx: RequestContext): Promise<void>
}

// The paths more than one route file answers (by method), written once. A name may hold slashes:
// each pattern ends in a fixed tail that says where the name stops.
/** /v2/<name>/manifests/<reference> */
export const MANIFEST_PATH = /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/
/** /v2/<name>/blobs/<digest> */
export const BLOB_PATH = /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/
/** /v2/<name>/blobs/uploads/<uuid> */
export const UPLOAD_PATH = /^\/v2\/(?<name>.+)\/blobs\/uploads\/(?<uuid>[^/]+)$/

// distribution-spec "Pulling manifests": <name> is path components of [a-z0-9]+ joined by
// one of . _ __ -+, separated by /. The whole is at most 255 characters, as docker-registry has it.
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const NAME_MAX = 255

export function checkName(name: string): string {
  if (name.length <= NAME_MAX && NAME.test(name)) return name
  throw new RegistryError('NAME_INVALID', { detail: { name } })
}

// a tag, as the spec has it; a digest, as algorithm:encoded
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

export function isDigest(reference: string): boolean {
  return DIGEST.test(reference)
}

/** What a manifest reference is: a tag, a digest, or neither (null). */
function referenceKind(reference: string): 'tag' | 'digest' | null {
  if (isDigest(reference)) return 'digest'
  return TAG.test(reference) ? 'tag' : null
}

/**
 * What the <reference> of /v2/<name>/manifests/<reference> is, as a client may name it: a digest
 * (DIGEST_INVALID when not one the image-spec registers) or a tag. Neither, or one of serve's own tags
 * (internal-tags.ts: clients reach those manifests by digest only), is `refused`: MANIFEST_INVALID for
 * a push, MANIFEST_UNKNOWN for a read or delete.
 */
export function manifestReference(reference: string, refused: 'MANIFEST_INVALID' | 'MANIFEST_UNKNOWN'): 'tag' | 'digest' {
  const kind = referenceKind(reference)
  if (kind === null) throw new RegistryError(refused, { message: `${JSON.stringify(reference)} is neither a tag nor a digest`, detail: { reference } })
  if (kind === 'digest') checkDigest(reference)
  else if (isInternalTag(reference)) {
    const why = refused === 'MANIFEST_INVALID' ? 'is kept by this registry for manifests pushed by digest; push under another tag' : 'is not a tag clients can use; ask for the manifest by its digest'
    throw new RegistryError(refused, { message: `tag ${reference} ${why}`, detail: { tag: reference } })
  }
  return kind
}

/** A digest a path names: sha256 or sha512 as the image-spec registers them (DIGEST_INVALID otherwise). */
export function checkDigest(digest: string): string {
  if (/^sha256:[a-f0-9]{64}$/.test(digest) || /^sha512:[a-f0-9]{128}$/.test(digest)) return digest
  throw new RegistryError('DIGEST_INVALID', { message: `${JSON.stringify(digest)} is not a digest (sha256:<64 hex> or sha512:<128 hex>)`, detail: { digest } })
}

export type RouteMatch = { route: Route; params: Record<string, string> } | { allowed: string[] } | null

/**
 * The route for `method` and `path`: its params, or the methods the path allows (405 when there are
 * some), or null (no route serves the path).
 */
export function matchRoute(routes: readonly Route[], method: string, path: string): RouteMatch {
  const allowed: string[] = []
  for (const route of routes) {
    const m = route.path.exec(path)
    if (m === null) continue
    // HEAD is answered by each GET route (node's response sends the headers alone)
    if (route.methods.includes(method) || (method === 'HEAD' && route.methods.includes('GET'))) {
      return { route, params: { ...m.groups } }
    }
    allowed.push(...route.methods)
  }
  return allowed.length > 0 ? { allowed: [...new Set(allowed)] } : null
}
