// Blob uploads (distribution-spec v1.1, "Pushing blobs" and "Mounting a blob from another repository"):
//   POST   /v2/<name>/blobs/uploads/                       a session: 202, Location, Docker-Upload-UUID
//   POST   /v2/<name>/blobs/uploads/?digest=<d>            monolithic: the body is the blob, 201
//   POST   /v2/<name>/blobs/uploads/?mount=<d>&from=<r>    201 when <r> has the blob, else a session (202)
//   PATCH  /v2/<name>/blobs/uploads/<uuid>                 a chunk (Content-Range in order, else 416)
//   PUT    /v2/<name>/blobs/uploads/<uuid>?digest=<d>      the last chunk, if any; checked; 201
//   GET    /v2/<name>/blobs/uploads/<uuid>                 where it stands: 204, Range 0-<last>
//   DELETE /v2/<name>/blobs/uploads/<uuid>                 cancelled: 204
// A completed blob is staged for the repository (staged-blobs.ts), not stored: a manifest naming it
// stores it (manifest-push.ts). https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md
import type { IncomingMessage } from 'node:http'
import { RegistryError } from './errors.js'
import { UPLOAD_PATH, checkDigest, checkName, type RequestContext, type Route } from './route.js'
import { uploadHeaders, type UploadSession } from './upload-sessions.js'
import type { WriteSide } from './write-side.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function uploadRoutes(write: WriteSide): Route[] {
  const session = (ctx: RequestContext): UploadSession => {
    const { name, uuid } = ctx.params as { name: string; uuid: string }
    if (!UUID.test(uuid)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { message: `${JSON.stringify(uuid)} is not an upload this registry gave`, detail: { uuid } })
    return write.uploads.get(name, uuid)
  }

  /** The answer to a blob that is now the repository's: 201 with where it is. */
  const created = (ctx: RequestContext, digest: string): void => {
    ctx.res.writeHead(201, { Location: `/v2/${ctx.params.name!}/blobs/${digest}`, 'Docker-Content-Digest': digest, 'Content-Length': '0' })
    ctx.res.end()
  }

  /** The answer to a session still open: 202 (or 204) with where it stands. */
  const inProgress = (ctx: RequestContext, s: UploadSession, status = 202): void => {
    ctx.res.writeHead(status, { Location: `/v2/${s.repository}/blobs/uploads/${s.id}`, ...uploadHeaders(s), 'Content-Length': '0' })
    ctx.res.end()
  }

  /** Appends the request's body, if it has one, to the session, and completes it as `digest`. */
  const complete = async (ctx: RequestContext, s: UploadSession, digest: string): Promise<void> => {
    if (hasBody(ctx.req)) await write.uploads.append(s, ctx.req, bodyOptions(ctx.req))
    const finished = await write.uploads.finish(s, digest)
    await write.staged.add(s.repository, finished)
    created(ctx, finished.digest)
  }

  async function start(ctx: RequestContext): Promise<void> {
    const name = ctx.params.name!
    const q = ctx.url.searchParams
    const mount = q.get('mount')
    const from = q.get('from')
    if (mount !== null && from !== null && (await mounted(ctx, name, checkDigest(mount), checkName(from)))) {
      ctx.req.resume()
      created(ctx, mount)
      return
    }
    const digest = q.get('digest')
    const s = await write.uploads.start(name)
    try {
      if (digest !== null) {
        await complete(ctx, s, checkDigest(digest))
        return
      }
      if (hasBody(ctx.req)) await write.uploads.append(s, ctx.req, bodyOptions(ctx.req))
    } catch (err) {
      await write.uploads.cancel(s).catch(() => {})
      throw err
    }
    inProgress(ctx, s)
  }

  /** Whether `from` has `digest` (staged or stored) for `name` to use: noted as `name`'s, no bytes copied. */
  async function mounted(ctx: RequestContext, name: string, digest: string, from: string): Promise<boolean> {
    const staged = await write.staged.stat(from, digest)
    if (staged !== null && 'from' in staged) {
      write.staged.addMount(name, digest, staged.from, staged.size)
      return true
    }
    if (staged !== null) {
      // uploaded to `from` and not stored yet: the staged file is shared (dropped from one repository, it stays in the other)
      try {
        await write.staged.share(from, name, digest)
        return true
      } catch {
        return false // dropped from `from` meanwhile: a new upload instead
      }
    }
    let size: number
    try {
      size = (await ctx.images.blob(from, digest)).size
    } catch (err) {
      if (err instanceof RegistryError) return false
      throw err
    }
    write.staged.addMount(name, digest, from, size)
    return true
  }

  async function patch(ctx: RequestContext): Promise<void> {
    const s = session(ctx)
    await write.uploads.append(s, ctx.req, bodyOptions(ctx.req))
    inProgress(ctx, s)
  }

  async function put(ctx: RequestContext): Promise<void> {
    const s = session(ctx)
    const digest = ctx.url.searchParams.get('digest')
    if (digest === null) throw new RegistryError('DIGEST_INVALID', { message: 'the PUT that completes an upload names its digest (?digest=)' })
    await complete(ctx, s, checkDigest(digest))
  }

  async function status(ctx: RequestContext): Promise<void> {
    inProgress(ctx, session(ctx), 204)
    return Promise.resolve()
  }

  async function cancel(ctx: RequestContext): Promise<void> {
    await write.uploads.cancel(session(ctx))
    ctx.res.writeHead(204, { 'Content-Length': '0' })
    ctx.res.end()
  }

  // a name may hold slashes: each pattern ends in a fixed tail that says where the name stops
  return [
    { methods: ['POST'], path: /^\/v2\/(?<name>.+)\/blobs\/uploads\/?$/, write: true, handle: start },
    { methods: ['PATCH'], path: UPLOAD_PATH, write: true, handle: patch },
    { methods: ['PUT'], path: UPLOAD_PATH, write: true, handle: put },
    { methods: ['GET'], path: UPLOAD_PATH, write: true, handle: status },
    { methods: ['DELETE'], path: UPLOAD_PATH, write: true, handle: cancel },
  ]
}

/** Whether a request carries a body: a Content-Length above 0, or chunked. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  if (length !== undefined) return Number(length) > 0
  return req.headers['transfer-encoding'] !== undefined
}

function bodyOptions(req: IncomingMessage): { range?: string; length?: number } {
  const range = req.headers['content-range']
  const length = req.headers['content-length']
  return { ...(range !== undefined ? { range } : {}), ...(length !== undefined ? { length: Number(length) } : {}) }
}
