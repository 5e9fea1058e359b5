// Checks an OCI image layout end to end: every descriptor reachable from index.json (nested indexes,
// manifests, configs, layers) must name a blob that is there, has the descriptor's size, hashes to
// its digest and has a media type we know for its role. What is wrong is one line naming the blob and
// the document that references it, the way skopeo or a registry would refuse it.
// Blobs that nothing references are not read: they are not part of any image.
import { forEachLimit } from '../util/concurrency.js'
import { LayoutBlobs } from './blob-file.js'
import { blobKey, type BlobRef } from './blob-reader.js'
import { walkLayout } from './document-walker.js'
import { layoutError, MissingBlobProblem } from './layout-problem.js'
import { isForeignLayer } from './media-types.js'

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

/**
 * Checks the layout at `dir` and returns what it holds; throws a SnapdirError with code ERR_SOURCE
 * whose message names the first problem found.
 */
export async function checkImageLayout(dir: string, options: CheckLayoutOptions = {}): Promise<LayoutSummary> {
  const concurrency = options.concurrency ?? 4
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`)
  const blobs = new LayoutBlobs(dir, options.signal)
  const summary: LayoutSummary = { manifests: 0, indexes: 0, blobs: 0, bytes: 0, absentForeignLayers: 0 }
  /** blobs already checked: one referenced by several manifests is read once */
  const checked = new Set<string>()
  const count = (ref: BlobRef): void => {
    checked.add(blobKey(ref.descriptor))
    summary.blobs++
    summary.bytes += ref.descriptor.size
  }
  /** configs and layers, checked after every document has been walked: cheap problems first */
  const leaves: BlobRef[] = []
  try {
    await walkLayout(blobs, {
      index: (ref) => {
        summary.indexes++
        count(ref)
      },
      manifest: (ref, parts) => {
        summary.manifests++
        count(ref)
        leaves.push(parts.config, ...parts.layers)
      },
    })
    // a layer several images share is read once
    const unique = new Map<string, BlobRef>()
    for (const ref of leaves) {
      const key = blobKey(ref.descriptor)
      if (!unique.has(key) && !checked.has(key)) unique.set(key, ref)
    }
    await forEachLimit(unique.values(), concurrency, async (ref) => {
      try {
        await blobs.checkBlob(ref)
        count(ref)
      } catch (err) {
        // a layer a registry may not redistribute can be left out when its descriptor says where it lives
        if (err instanceof MissingBlobProblem && ref.descriptor.urls.length > 0 && isForeignLayer(ref.descriptor.mediaType)) {
          summary.absentForeignLayers++
          return
        }
        throw err
      }
    })
  } catch (err) {
    throw layoutError(err, options.shownAs ?? dir)
  }
  return summary
}
