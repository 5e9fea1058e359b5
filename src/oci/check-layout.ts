// Checks an OCI image layout end to end: every descriptor reachable from index.json (nested indexes,
// manifests, configs, layers) must name a blob that is there, has the descriptor's size, hashes to
// its digest and has a media type we know for its role. What is wrong is one line naming the blob and
// the document that references it, the way skopeo or a registry would refuse it.
// Blobs that nothing references are not read: they are not part of any image.
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { checkBlobDirectory, LayoutProblem, MissingBlobProblem, verifyBlob } from './blob-file.js'
import { parseDescriptor, isObject, quote, type Descriptor } from './descriptor.js'
import { formatDigest, type DigestAlgorithm } from './digest.js'
import { INDEX_FILE, MAX_DOCUMENT_BYTES, parseJson, readLayoutIndex } from './image-layout.js'
import { CONFIG_TYPES, INDEX_TYPES, isForeignLayer, LAYER_TYPES, MANIFEST_TYPES } from './media-types.js'

export interface CheckLayoutOptions {
  /** how messages name the layout (pull checks a temporary directory but names the target) */
  shownAs?: string
  signal?: AbortSignal
  /** blobs hashed at once; reading one while hashing another keeps both disk and CPU busy */
  concurrency?: number
}

export interface LayoutSummary {
  /** image manifests reached */
  manifests: number
  /** image indexes reached, index.json not counted */
  indexes: number
  /** distinct blobs checked (indexes, manifests, configs, layers) */
  blobs: number
  bytes: number
  /** foreign layers the layout leaves out, to be fetched from their URLs */
  absentForeignLayers: number
}

/** A blob to check: its descriptor, and how messages name it ("layer sha256:… of manifest sha256:…"). */
interface BlobRef {
  descriptor: Descriptor
  what: string
}

/**
 * Checks the layout at `dir` and returns what it holds; throws a SnapdirError with code ERR_SOURCE
 * whose message names the first problem found.
 */
export async function checkImageLayout(dir: string, options: CheckLayoutOptions = {}): Promise<LayoutSummary> {
  const concurrency = options.concurrency ?? 4
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`)
  const shownAs = options.shownAs ?? dir
  try {
    return await new LayoutWalk(dir, concurrency, options.signal).run()
  } catch (err) {
    if (err instanceof LayoutProblem) {
      throw new SnapdirError('ERR_SOURCE', `OCI image layout ${shownAs}: ${err.message}`, { cause: err, data: { layout: shownAs } })
    }
    throw err
  }
}

class LayoutWalk {
  private readonly summary: LayoutSummary = { manifests: 0, indexes: 0, blobs: 0, bytes: 0, absentForeignLayers: 0 }
  /** blobs already checked, by digest and size: one referenced by several manifests is read once */
  private readonly checked = new Set<string>()
  private readonly blobDirectories = new Set<DigestAlgorithm>()
  /** configs and layers, checked after every document has been walked: cheap problems first */
  private readonly leaves: BlobRef[] = []

  constructor(
    private readonly root: string,
    private readonly concurrency: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  async run(): Promise<LayoutSummary> {
    const index = await readLayoutIndex(this.root)
    // documents still to read; a queue rather than recursion, so nesting depth costs no stack
    const pending: BlobRef[] = this.listed(index, INDEX_FILE)
    for (let next = pending.shift(); next; next = pending.shift()) {
      const { descriptor } = next
      const key = blobKey(descriptor)
      if (this.checked.has(key)) continue
      const document = await this.readDocument(next)
      const name = `${INDEX_TYPES.has(descriptor.mediaType) ? 'image index' : 'manifest'} ${formatDigest(descriptor.digest)}`
      if (INDEX_TYPES.has(descriptor.mediaType)) {
        this.summary.indexes++
        pending.push(...this.listed(document, name))
      } else {
        this.summary.manifests++
        this.leaves.push(...this.imageParts(document, name))
      }
    }
    // a layer several images share is read once
    const unique = new Map<string, BlobRef>()
    for (const ref of this.leaves) {
      const key = blobKey(ref.descriptor)
      if (!unique.has(key) && !this.checked.has(key)) unique.set(key, ref)
    }
    await forEachLimit(unique.values(), this.concurrency, (ref) => this.checkLeaf(ref))
    return this.summary
  }

  /** The manifests an index (or index.json) lists, each an image index or an image manifest. */
  private listed(index: Record<string, unknown>, name: string): BlobRef[] {
    if (!Array.isArray(index.manifests)) throw new LayoutProblem(`${name} has no manifests list`)
    return index.manifests.map((value, i) => {
      const descriptor = this.descriptor(value, `manifests[${i}] of ${name}`)
      const role = INDEX_TYPES.has(descriptor.mediaType) ? 'image index' : 'manifest'
      const what = `${role} ${formatDigest(descriptor.digest)} listed in ${name}`
      if (!INDEX_TYPES.has(descriptor.mediaType) && !MANIFEST_TYPES.has(descriptor.mediaType)) {
        throw new LayoutProblem(`${what} has media type ${quote(descriptor.mediaType)}, which is not a known image index or manifest media type`)
      }
      return { descriptor, what }
    })
  }

  /** The config and layers of an image manifest. */
  private imageParts(manifest: Record<string, unknown>, name: string): BlobRef[] {
    const config = this.descriptor(manifest.config, `config of ${name}`)
    const configWhat = `config ${formatDigest(config.digest)} of ${name}`
    if (!CONFIG_TYPES.has(config.mediaType)) {
      throw new LayoutProblem(`${configWhat} has media type ${quote(config.mediaType)}, which is not a known config media type`)
    }
    if (!Array.isArray(manifest.layers)) throw new LayoutProblem(`${name} has no layers list`)
    const layers = manifest.layers.map((value, i) => {
      const descriptor = this.descriptor(value, `layers[${i}] of ${name}`)
      const what = `layer ${formatDigest(descriptor.digest)} of ${name}`
      if (!LAYER_TYPES.has(descriptor.mediaType)) {
        throw new LayoutProblem(`${what} has media type ${quote(descriptor.mediaType)}, which is not a known layer media type`)
      }
      return { descriptor, what }
    })
    return [{ descriptor: config, what: configWhat }, ...layers]
  }

  private descriptor(value: unknown, where: string): Descriptor {
    const parsed = parseDescriptor(value)
    if (typeof parsed === 'string') throw new LayoutProblem(`${where}: the descriptor ${parsed}`)
    return parsed
  }

  /** Reads, verifies and parses an index or manifest blob. */
  private async readDocument(ref: BlobRef): Promise<Record<string, unknown>> {
    const { descriptor, what } = ref
    if (descriptor.size > MAX_DOCUMENT_BYTES) throw new LayoutProblem(`${what} is ${descriptor.size} bytes; snapdir reads manifests of at most ${MAX_DOCUMENT_BYTES}`)
    const data = (await this.verify(ref, true))!
    const document = parseJson(data, what)
    if (!isObject(document)) throw new LayoutProblem(`${what} is not a JSON object`)
    if (document.schemaVersion !== 2) throw new LayoutProblem(`${what} has schemaVersion ${quote(document.schemaVersion)}, not 2`)
    // image-spec: a document's own mediaType, when set, must be the one it is referenced as; a
    // mismatch would have tools read the same bytes as different things
    if (document.mediaType !== undefined && document.mediaType !== descriptor.mediaType) {
      throw new LayoutProblem(`${what} says it is ${quote(document.mediaType)} but is referenced as ${quote(descriptor.mediaType)}`)
    }
    return document
  }

  private async checkLeaf(ref: BlobRef): Promise<void> {
    try {
      await this.verify(ref, false)
    } catch (err) {
      // a layer a registry may not redistribute can be left out when its descriptor says where it lives
      if (err instanceof MissingBlobProblem && ref.descriptor.urls.length > 0 && isForeignLayer(ref.descriptor.mediaType)) {
        this.summary.absentForeignLayers++
        return
      }
      throw err
    }
  }

  private async verify(ref: BlobRef, keep: boolean): Promise<Buffer | null> {
    const { digest, size } = ref.descriptor
    if (!this.blobDirectories.has(digest.algorithm)) {
      await checkBlobDirectory(this.root, digest.algorithm)
      this.blobDirectories.add(digest.algorithm)
    }
    const data = await verifyBlob(this.root, { digest, size, what: ref.what }, { keep, signal: this.signal })
    this.checked.add(blobKey(ref.descriptor))
    this.summary.blobs++
    this.summary.bytes += size
    return data
  }
}

function blobKey(d: Descriptor): string {
  return `${formatDigest(d.digest)}/${d.size}`
}
