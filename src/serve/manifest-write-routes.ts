// Manifests pushed and deleted (distribution-spec v1.1, "Pushing Manifests", "Deleting tags",
// "Deleting manifests"):
//   PUT    /v2/<name>/manifests/<tag|digest>   201, Location, Docker-Content-Digest (manifest-push.ts)
//   DELETE /v2/<name>/manifests/<tag|digest>   202 (manifest-delete.ts)
// https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md
import type { IncomingMessage } from 'node:http'
import { RegistryError } from './errors.js'
import { deleteManifest } from './manifest-delete.js'
import { MAX_MANIFEST_BYTES, pushManifest } from './manifest-push.js'
import { MANIFEST_PATH, manifestReference, type RequestContext, type Route } from './route.js'
import type { WriteSide } from './write-side.js'

export function manifestWriteRoutes(write: WriteSide): Route[] {
  async function put(ctx: RequestContext): Promise<void> {
    const { name, reference } = ctx.params as { name: string; reference: string }
    manifestReference(reference, 'MANIFEST_INVALID')
    const bytes = await readManifestBody(ctx.req)
    const abort = new AbortController()
    // a client that goes away stops the push (nothing of it is named yet)
    const onClose = (): void => {
      if (!ctx.res.writableFinished) abort.abort(new Error('the client closed the connection'))
    }
    ctx.res.once('close', onClose)
    try {
      const contentType = ctx.req.headers['content-type']
      const pushed = await pushManifest(
        { store: ctx.store, staged: write.staged, stored: ctx.images, ingest: write.ingest },
        { repository: name, reference, bytes, ...(contentType !== undefined ? { contentType } : {}), signal: abort.signal },
      )
      if (pushed.id !== undefined) ctx.note({ snapshot: pushed.id })
      ctx.res.writeHead(201, { Location: `/v2/${name}/manifests/${pushed.digest}`, 'Docker-Content-Digest': pushed.digest, 'Content-Length': '0' })
      ctx.res.end()
    } finally {
      ctx.res.off('close', onClose)
    }
  }

  async function remove(ctx: RequestContext): Promise<void> {
    const { name, reference } = ctx.params as { name: string; reference: string }
    const kind = manifestReference(reference, 'MANIFEST_UNKNOWN')
    const removed = await deleteManifest(ctx.store, ctx.images, write.staged, name, reference, kind)
    ctx.note({ untagged: removed.map((r) => r.tag) })
    ctx.res.writeHead(202, { 'Content-Length': '0' })
    ctx.res.end()
  }

  return [
    { methods: ['PUT'], path: MANIFEST_PATH, write: true, handle: put },
    { methods: ['DELETE'], path: MANIFEST_PATH, write: true, handle: remove },
  ]
}

/**
 * The request's body, at most MAX_MANIFEST_BYTES: a larger one is refused (413, MANIFEST_INVALID)
 * from its Content-Length, or as soon as it outgrows the limit; the rest is read and dropped, so
 * that the client, still sending, reads the answer rather than a broken pipe.
 */
async function readManifestBody(req: IncomingMessage): Promise<Buffer> {
  const tooLarge = (size: string): RegistryError => {
    req.resume()
    return new RegistryError('MANIFEST_INVALID', { status: 413, message: `the manifest is ${size} bytes; at most ${MAX_MANIFEST_BYTES} are taken` })
  }
  const length = Number(req.headers['content-length'] ?? NaN)
  if (length > MAX_MANIFEST_BYTES) throw tooLarge(String(length))
  const parts: Buffer[] = []
  let size = 0
  for await (const piece of req) {
    size += (piece as Buffer).length
    if (size > MAX_MANIFEST_BYTES) throw tooLarge(`more than ${MAX_MANIFEST_BYTES}`)
    parts.push(piece as Buffer)
  }
  return Buffer.concat(parts)
}
