// An image in a registry, read as the OCI image layout `skopeo copy docker://REF oci:DIR:TAG` would
// write (with --all for a multi-platform image): the document walker reads it through BlobReader like a
// layout on disk. index.json lists the manifest (or index) the reference names, annotated with the tag
// as skopeo annotates it; oci-layout is skopeo's; every document keeps the registry's bytes. Documents
// are read once and kept (they are small: the walker bounds them), from an earlier push of the same
// image in the store when it has them (checked by digest there), else from the registry (checked as
// they arrive), so a push of an image the store holds asks the registry for the top manifest only.
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { blobPath, checkDigest, missingFile, sizeMismatch, tooLarge, type BlobReader, type BlobRef } from '../oci/blob-reader.js'
import { formatDigest } from '../oci/digest.js'
import { INDEX_FILE, LAYOUT_MARKER } from '../oci/image-layout.js'
import { LayoutProblem } from '../oci/layout-problem.js'
import { INDEX_TYPES, MANIFEST_TYPES } from '../oci/media-types.js'
import type { SelectedImage } from '../oci/select-platforms.js'

/** What the image is read with: the registry client (src/registry/client.ts). */
export interface ImageRegistry {
  getManifest(repo: string, reference: string, accept?: readonly string[], options?: { signal?: AbortSignal }): Promise<{ bytes: Buffer; mediaType: string; digest: string }>
  getBlob(repo: string, digest: string, options?: { signal?: AbortSignal; size?: number }): Promise<Readable>
  /**
   * A local file with the blob's bytes, checked against its digest when it was written and left as it
   * is until the push ends, when the registry has one (serve's staged uploads); else null. A layer
   * with a file is expanded from it (oci/image-layers.ts blobFile), not streamed.
   */
  blobFile?(repo: string, digest: string): Promise<string | null>
}

/** skopeo's oci-layout, byte for byte (containers/image writes it with a space). */
const SKOPEO_LAYOUT_MARKER = Buffer.from('{"imageLayoutVersion": "1.0.0"}')
const REF_NAME = 'org.opencontainers.image.ref.name'

export class RegistryImage implements BlobReader {
  /** every document read (indexes, manifests, configs), by digest */
  readonly documents = new Map<string, Buffer>()
  private indexJson: Buffer = Buffer.alloc(0)
  /** indexes rewritten by a platform selection, by their path in a layout */
  private written: Map<string, Buffer> = new Map()
  /** the top manifest's or index's digest, once open */
  top = ''

  constructor(
    private readonly registry: ImageRegistry,
    readonly repository: string,
    /** an earlier push of this image in the store, where documents are read first */
    private readonly earlier: BlobReader | null,
    private readonly signal?: AbortSignal,
  ) {}

  /** Reads the manifest or index `reference` (a tag or a digest) names; `tag` annotates it in index.json. */
  async open(reference: string, tag: string | undefined): Promise<void> {
    const m = await this.registry.getManifest(this.repository, reference, undefined, this.options())
    // the client checked the bytes against the digest asked for, or the one the registry says
    const top = m.digest
    if (top.startsWith('sha256:') && top !== `sha256:${createHash('sha256').update(m.bytes).digest('hex')}`) {
      throw new LayoutProblem(`manifest ${reference} does not hash to ${top}`)
    }
    this.top = top
    this.documents.set(top, m.bytes)
    const entry = { mediaType: m.mediaType, digest: top, size: m.bytes.length, ...(tag !== undefined ? { annotations: { [REF_NAME]: tag } } : {}) }
    this.indexJson = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [entry] }))
  }

  /** Narrows the image to a platform selection (select-platforms.ts selectFrom over this image). */
  select(selected: SelectedImage): void {
    this.indexJson = selected.indexJson
    this.written = selected.written
  }

  /** index.json and oci-layout, as the layout holds them. */
  topFiles(): Map<string, Buffer> {
    return new Map([[INDEX_FILE, this.indexJson], [LAYOUT_MARKER, SKOPEO_LAYOUT_MARKER]])
  }

  /** The bytes of a blob that is a document read (or written by a selection), if it is one. */
  document(rel: string, digest: string): Buffer | undefined {
    return this.written.get(rel) ?? this.documents.get(digest)
  }

  async readFile(name: string, maxBytes: number): Promise<Buffer> {
    const file = this.topFiles().get(name)
    if (file === undefined) throw missingFile(name, name)
    if (file.length > maxBytes) throw tooLarge(name, file.length, maxBytes)
    return file
  }

  async readBlob(ref: BlobRef): Promise<Buffer> {
    const { descriptor } = ref
    const digest = formatDigest(descriptor.digest)
    const have = this.document(blobPath(descriptor.digest), digest)
    if (have !== undefined) return have
    let bytes: Buffer | null = null
    if (this.earlier !== null) {
      try {
        bytes = await this.earlier.readBlob(ref)
      } catch (err) {
        // not there, or not right there (a chunk missing or damaged: verify names it): the registry has it
        if (this.signal?.aborted) throw err
      }
    }
    if (bytes === null) {
      if (INDEX_TYPES.has(descriptor.mediaType) || MANIFEST_TYPES.has(descriptor.mediaType)) {
        bytes = (await this.registry.getManifest(this.repository, digest, [descriptor.mediaType], this.options())).bytes
      } else {
        const parts: Buffer[] = []
        for await (const piece of await this.registry.getBlob(this.repository, digest, { size: descriptor.size, ...this.options() })) parts.push(piece as Buffer)
        bytes = Buffer.concat(parts)
      }
      if (bytes.length !== descriptor.size) throw sizeMismatch(ref, bytes.length)
      checkDigest(ref, createHash(descriptor.digest.algorithm).update(bytes).digest('hex'))
    }
    this.documents.set(digest, bytes)
    return bytes
  }

  private options(): { signal?: AbortSignal } {
    return this.signal ? { signal: this.signal } : {}
  }
}
