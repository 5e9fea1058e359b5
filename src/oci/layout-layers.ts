// The layers push expands (image-layers.ts), as the image says them: each distinct layer blob with the
// diff_id its image config gives it in every place it is used. For an OCI image layout they are read
// by the document walker; a Docker archive lists its own (docker-archive.ts).
import { LayoutBlobs } from './blob-file.js'
import { blobPath, type BlobReader } from './blob-reader.js'
import type { Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { readDiffIds, walkLayout, type WalkOptions } from './document-walker.js'
import { layoutError } from './layout-problem.js'
import { layerCompression } from './media-types.js'

/** A distinct layer blob of a layout, with every place that uses it. */
export interface LayoutLayer {
  descriptor: Descriptor
  /** where the blob is, relative to the layout (or archive) directory */
  file: string
  /** the diff_id the config gives the layer, and which manifest says so; one per use */
  uses: Array<{ diffId: string; manifest: string; position: number }>
}

/**
 * The tar layers an image layout's images use, each distinct digest once, in the order first met.
 * Call after checkImageLayout: of the blobs, this reads only the documents and configs.
 * Layers that are not tars (artifacts), and foreign layers the layout leaves out, are not listed.
 */
export async function layoutLayers(dir: string, shownAs = dir): Promise<LayoutLayer[]> {
  const blobs = new LayoutBlobs(dir)
  return imageLayers(blobs, (d) => blobs.hasBlob(d), shownAs)
}

/**
 * The same over any image source (a registry's, as a layout would hold it); `has` says whether a
 * foreign layer (one with urls) is there, or left out. `options.artifacts` takes artifacts' manifests
 * (their blobs are no file system layers: none is listed).
 */
export async function imageLayers(blobs: BlobReader, has: (d: Descriptor) => Promise<boolean>, shownAs: string, options: WalkOptions = {}): Promise<LayoutLayer[]> {
  const byDigest = new Map<string, LayoutLayer>()
  try {
    await walkLayout(blobs, {
      manifest: async (ref, parts) => {
        const diffIds = await readDiffIds(blobs, parts)
        if (diffIds === null) return // an artifact: no file system layers
        const manifest = formatDigest(ref.descriptor.digest)
        for (const [position, { descriptor: layer }] of parts.layers.entries()) {
          if (layerCompression(layer.mediaType) === null) continue
          if (layer.urls.length > 0 && !(await has(layer))) continue // foreign, left out
          const key = formatDigest(layer.digest)
          const entry = byDigest.get(key) ?? { descriptor: layer, file: blobPath(layer.digest), uses: [] }
          entry.uses.push({ diffId: diffIds[position]!, manifest, position })
          byDigest.set(key, entry)
        }
      },
    }, undefined, options)
  } catch (err) {
    throw layoutError(err, shownAs)
  }
  return [...byDigest.values()]
}
