// What a mount shows of a snapshot (DESIGN.md, "The mount"):
//   tree    the snapshot as pushed; for an OCI layout, the layout itself
//   rootfs  /config.json (the image config) and /rootfs/, the layers flattened, whiteouts applied
//   layers  /config.json and /layers/0, /layers/1, … bottom first, each as an overlayfs lower directory
//   layer   one expanded layer alone, by its diff_id, as an overlayfs lower directory: what the
//           containerd snapshotter mounts for each layer of an image it serves lazily
// rootfs and layers need a pushed image layout: its layers were expanded into trees of their own on
// push (oci/image-layers.ts), and a view is those trees put together, served like any snapshot.
import { checkTreePaths } from '../format/tree-paths.js'
import { compareBytes, type Tree, type TreeEntry } from '../format/tree.js'
import { flattenLayers, overlayLayers, underDirectory } from '../oci/flatten.js'
import type { Platform } from '../oci/platform.js'
import { resolveStoredImage } from '../oci/stored-image.js'
import { readLayerRef } from '../store/layer-refs.js'
import { readTree } from '../store/objects.js'
import { SharedChunks } from '../store/shared-chunks.js'
import type { ReadStore } from '../store/store.js'
import { toHex } from '../format/id.js'
import { SnapdirError } from '../util/errors.js'

import type { ViewName } from './view-names.js'

export type ViewOptions =
  | {
      view: ViewName
      /** which image of a layout holding several (ref name or manifest digest) */
      image?: string
      platform?: Platform
    }
  | {
      view: 'layer'
      /**
       * diff_ids, bottom first: the view is the last, the ones below it only give the directories it
       * implies (a tar that names a/b/c but not a/) the metadata they have in the image
       */
      chain: string[]
    }

/**
 * Tree parts fetched at once for a view: the mount is not up until they are all in, and they are
 * small (at most 64 KiB), so the store's round trip, not its bandwidth, is what they wait on.
 */
const META_JOBS = 64

/** Files of a bundle this small are documents (index.json, manifests, configs), fetched ahead at once. */
const DOCUMENT_BYTES = 1024 * 1024
const DOCUMENT_CHUNKS = 64

/**
 * The tree a mount of snapshot `id` serves for `options` (`id` is unused for a layer). What does not
 * depend on what came before is fetched at once: the small files of the bundle (whose chunks hold
 * index.json, the manifest and the config, otherwise read one after another), the layer refs, the
 * layer trees and their parts.
 */
export async function loadView(store: ReadStore, id: string, options: ViewOptions): Promise<Tree> {
  if (options.view === 'layer') return loadLayerView(store, options.chain)
  const bundle = await readTree(store, id, { jobs: META_JOBS })
  if (options.view === 'tree') return bundle
  const documents = new SharedChunks(store)
  documents.warm(documentChunks(bundle))
  const image = await resolveStoredImage(documents, id, bundle, options)
  const layers = await Promise.all(image.layers.map((l) => readTree(store, l.tree, { jobs: META_JOBS })))
  const root = bundle.entries[0]!
  const entries: TreeEntry[] = [root, { ...image.config, path: Buffer.from('config.json') }]
  if (options.view === 'rootfs') {
    entries.push(...underDirectory(flattenLayers(layers), Buffer.from('rootfs')))
  } else {
    entries.push({ ...root, path: Buffer.from('layers') })
    overlayLayers(layers).forEach((layer, i) => entries.push(...underDirectory(layer, Buffer.from(`layers/${i}`))))
  }
  entries.sort((a, b) => compareBytes(a.path, b.path))
  checkTreePaths(entries, (why) => {
    throw new SnapdirError('ERR_TREE_MALFORMED', `the ${options.view} view of ${id}: ${why}`)
  })
  return { chunker: bundle.chunker, entries }
}

/** The chunks of the bundle's small files, in tree order, at most DOCUMENT_CHUNKS of them. */
function documentChunks(bundle: Tree): Set<string> {
  const ids = new Set<string>()
  for (const e of bundle.entries) {
    if (e.type !== 'file' || e.size > DOCUMENT_BYTES || e.recipe !== undefined) continue
    for (const ref of e.chunks) {
      if (ids.size >= DOCUMENT_CHUNKS) return ids
      ids.add(toHex(ref.id))
    }
  }
  return ids
}

/** One layer of an image, by the diff_ids of it and the layers below it (bottom first). */
async function loadLayerView(store: ReadStore, chain: string[]): Promise<Tree> {
  if (chain.length === 0) throw new SnapdirError('ERR_USAGE', 'a layer view needs the diff_id of the layer')
  const layers = await Promise.all(
    chain.map(async (diffId) => {
      const ref = await readLayerRef(store, diffId)
      if (ref === null) throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `layer ${diffId} is not in ${store.url} (no image pushed there has it)`, { data: { diffId, store: store.url } })
      return readTree(store, ref.tree, { jobs: META_JOBS })
    }),
  )
  const entries = overlayLayers(layers).at(-1)!
  checkTreePaths(entries, (why) => {
    throw new SnapdirError('ERR_TREE_MALFORMED', `the view of layer ${chain.at(-1)!}: ${why}`)
  })
  return { chunker: layers.at(-1)!.chunker, entries }
}
