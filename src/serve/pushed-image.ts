// A pushed image as push-registry.ts reads an image from a registry: the manifest the client PUT,
// and everything it names from what the client uploaded before (staged-blobs.ts) or, when the
// repository had it already, from the store as the read side serves it (repository-images.ts). So an image pushed to serve
// becomes a snapshot by the same path as `snapdir push docker://…`: layers expanded from their staged
// files (as from a layout's: blobFile), kept as recipes, names and tags written last.
import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import type { ImageRegistry } from '../snapshot/registry-image.js'
import type { RepositoryImages } from './repository-images.js'
import type { StagedBlobs, StagedManifest } from './staged-blobs.js'

export class PushedImage implements ImageRegistry {
  /** the staged digests read, for the caller to drop once the image is stored */
  readonly used = new Set<string>()
  /** the documents read (the top one, the manifests of an index) */
  private readonly documents: Buffer[] = []
  private readonly releases: Array<() => void> = []

  constructor(
    private readonly top: StagedManifest,
    private readonly staged: StagedBlobs,
    private readonly stored: RepositoryImages,
  ) {}

  async getManifest(repo: string, reference: string, accept?: readonly string[]): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    if (reference === this.top.digest) {
      this.documents.push(this.top.bytes)
      return this.top
    }
    const staged = this.staged.manifest(repo, reference)
    if (staged !== null) {
      this.hold(repo, reference)
      this.documents.push(staged.bytes)
      return staged
    }
    // MANIFEST_UNKNOWN when the repository has none: the push fails (pushManifest checked first)
    const stored = await this.stored.manifest(repo, reference, 'digest')
    this.documents.push(stored.bytes)
    return { bytes: stored.bytes, mediaType: accept?.[0] ?? stored.mediaType, digest: stored.digest }
  }

  async getBlob(repo: string, digest: string): Promise<Readable> {
    // held before it is looked at: a push that drops it meanwhile leaves it (staged-blobs.ts drop)
    this.hold(repo, digest)
    const staged = await this.staged.stat(repo, digest)
    if (staged !== null) {
      if ('file' in staged) return createReadStream(staged.file)
      return Readable.from((await this.stored.blob(staged.from, digest)).content())
    }
    return Readable.from((await this.stored.blob(repo, digest)).content())
  }

  /** The staged upload of `digest`, held until release(): layers are expanded from it (no stream). */
  async blobFile(repo: string, digest: string): Promise<string | null> {
    this.hold(repo, digest)
    const staged = await this.staged.stat(repo, digest)
    return staged !== null && 'file' in staged ? staged.file : null
  }

  /**
   * Every digest the image names (documents, configs, layers), read or not: a layer the store held
   * already was not read, yet the image has it now, so its staged copy is not needed any more.
   */
  named(): Set<string> {
    const out = new Set(this.used)
    const add = (d: unknown): void => {
      if (typeof d === 'object' && d !== null && typeof (d as { digest?: unknown }).digest === 'string') out.add((d as { digest: string }).digest)
    }
    for (const bytes of this.documents) {
      const doc = JSON.parse(bytes.toString('utf8')) as { config?: unknown; layers?: unknown; manifests?: unknown }
      add(doc.config)
      for (const list of [doc.layers, doc.manifests]) if (Array.isArray(list)) list.forEach(add)
    }
    return out
  }

  /** Lets go of what was held from removal by a sweep. */
  release(): void {
    for (let r = this.releases.pop(); r; r = this.releases.pop()) r()
  }

  private hold(repo: string, digest: string): void {
    if (this.used.has(digest)) return
    this.used.add(digest)
    this.releases.push(this.staged.pin(repo, [digest]))
  }
}
