// An image in a registry read as the document walker reads a layout (a TransferSource): indexes and
// manifests fetched by digest (checked by the client, and against their descriptor's size here),
// blobs as the client's verifying streams, so a registry-to-registry copy streams blob to blob with
// nothing staged, checked by digest on the way.
import { Readable } from 'node:stream'
import type { BlobRef } from './blob-reader.js'
import { sizeMismatch } from './blob-reader.js'
import type { Descriptor } from './descriptor.js'
import { formatDigest, parseDigest } from './digest.js'
import { documentName, MAX_DOCUMENT_BYTES, type ListedRef } from './document-walker.js'
import { LayoutProblem } from './layout-problem.js'
import { INDEX_TYPES, MANIFEST_TYPES } from './media-types.js'
import type { TransferSource } from './transfer-plan.js'

/** What reading an image needs of a registry (registry/client.ts RegistryClient). */
export interface ImageOrigin {
  readonly registry: string
  getManifest(repository: string, reference: string, accept?: readonly string[]): Promise<{ bytes: Buffer; mediaType: string; digest: string }>
  getBlob(repository: string, digest: string, options?: { size?: number }): Promise<Readable>
}

export class RegistryBlobs implements TransferSource {
  /** documents read already (the image's own, read to learn what it is) */
  private readonly held = new Map<string, Buffer>()

  constructor(
    private readonly origin: ImageOrigin,
    private readonly repository: string,
  ) {}

  /** The image `reference` (a tag or a digest) names, as an entry for the walk; its bytes are kept for it. */
  async image(reference: string): Promise<ListedRef> {
    const m = await this.origin.getManifest(this.repository, reference)
    const digest = parseDigest(m.digest)
    if (typeof digest === 'string') throw new LayoutProblem(`the manifest of ${this.repository}:${reference} has digest ${m.digest}, which ${digest}`)
    const descriptor: Descriptor = { mediaType: m.mediaType, digest, size: m.bytes.length, urls: [] }
    this.held.set(m.digest, m.bytes)
    return {
      descriptor,
      what: `${documentName(descriptor)} (${this.origin.registry}/${this.repository}:${reference})`,
      index: INDEX_TYPES.has(m.mediaType),
      raw: { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length },
    }
  }

  readFile(name: string): Promise<Buffer> {
    return Promise.reject(new LayoutProblem(`${name}: a registry has blobs and manifests, no files`))
  }

  async readBlob(ref: BlobRef): Promise<Buffer> {
    const { descriptor } = ref
    const digest = formatDigest(descriptor.digest)
    let data = this.held.get(digest)
    if (data === undefined) {
      if (INDEX_TYPES.has(descriptor.mediaType) || MANIFEST_TYPES.has(descriptor.mediaType)) {
        data = (await this.origin.getManifest(this.repository, digest, [descriptor.mediaType])).bytes
      } else {
        if (descriptor.size > MAX_DOCUMENT_BYTES) throw new LayoutProblem(`${ref.what} is ${descriptor.size} bytes; snapdir reads documents of at most ${MAX_DOCUMENT_BYTES}`)
        const parts: Buffer[] = []
        for await (const piece of await this.origin.getBlob(this.repository, digest, { size: descriptor.size })) parts.push(piece as Buffer)
        data = Buffer.concat(parts)
      }
    }
    // the client checked the digest; the descriptor's size is the walk's to hold it to
    if (data.length !== descriptor.size) throw sizeMismatch(ref, data.length)
    return data
  }

  /**
   * The blob as a stream that asks the registry when first read: the client's verifying stream passed
   * on as pipe() would (an async generator around it cost a promise per piece).
   */
  blobContent(ref: BlobRef): AsyncIterable<Buffer> {
    const open = (): Promise<Readable> => this.origin.getBlob(this.repository, formatDigest(ref.descriptor.digest), { size: ref.descriptor.size })
    let source: Readable | null = null
    let opening = false
    const out: Readable = new Readable({
      // a few of the source's pieces (64 KiB each) held, so that one does not pause it every time
      highWaterMark: 256 * 1024,
      read() {
        if (source !== null) {
          source.resume()
          return
        }
        if (opening) return
        opening = true
        open().then(
          (s) => {
            source = s
            if (out.destroyed) {
              s.destroy()
              return
            }
            s.on('data', (piece: Buffer) => {
              if (!out.push(piece)) s.pause()
            })
            s.once('end', () => out.push(null))
            s.once('error', (err) => out.destroy(err))
          },
          (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
        )
      },
      destroy(err, done) {
        source?.destroy()
        done(err)
      },
    })
    return out
  }
}
