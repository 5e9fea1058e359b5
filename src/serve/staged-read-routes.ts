// What a client pushed is there for it to read back before a manifest takes it into the store
// (distribution-spec: a completed upload's Location is the blob's, and a manifest pushed by digest is
// pulled by that digest): GET and HEAD of a blob or a manifest by digest look at what this server
// staged for the repository first, and otherwise answer as the read side does (read-routes.ts).
import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import { sendBlob } from './blob-response.js'
import type { ServedBlob } from './repository-images.js'
import { readBlob, readManifest, sendManifest } from './read-routes.js'
import { BLOB_PATH, MANIFEST_PATH, checkDigest, isDigest, type RequestContext, type Route } from './route.js'
import type { WriteSide } from './write-side.js'

export function stagedReadRoutes(write: WriteSide): Route[] {
  async function blob(ctx: RequestContext): Promise<void> {
    const { name, digest } = ctx.params as { name: string; digest: string }
    checkDigest(digest)
    const staged = await write.staged.stat(name, digest)
    if (staged === null) return readBlob(ctx)
    const served: ServedBlob =
      'file' in staged
        ? { digest, size: staged.size, what: `blob ${digest} pushed to ${name}`, content: () => Readable.from(createReadStream(staged.file)) }
        : await ctx.images.blob(staged.from, digest)
    await sendBlob(ctx, served)
  }

  async function manifest(ctx: RequestContext): Promise<void> {
    const { name, reference } = ctx.params as { name: string; reference: string }
    const staged = isDigest(reference) ? write.staged.manifest(name, reference) : null
    if (staged === null) return readManifest(ctx)
    sendManifest(ctx, staged)
  }

  return [
    { methods: ['GET'], path: MANIFEST_PATH, handle: manifest },
    { methods: ['GET'], path: BLOB_PATH, handle: blob },
  ]
}
