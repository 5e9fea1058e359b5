// What a mount shows of a snapshot (DESIGN.md, "The mount"):
//   tree    the snapshot as pushed; for an OCI layout, the layout itself
//   rootfs  /config.json (the image config) and /rootfs/, the layers flattened, whiteouts applied
//   layers  /config.json and /layers/0, /layers/1, … bottom first, each as an overlayfs lower directory
// rootfs and layers need a pushed image layout: its layers were expanded into trees of their own on
// push (oci/image-layers.ts), and a view is those trees put together, served like any snapshot.
import { checkTreePaths } from '../format/tree-paths.js'
import { compareBytes, type Tree, type TreeEntry } from '../format/tree.js'
import { flattenLayers, overlayLayers, underDirectory } from '../oci/flatten.js'
import type { Platform } from '../oci/platform.js'
import { resolveStoredImage } from '../oci/stored-image.js'
import { readTree } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'

import type { ViewName } from './view-names.js'

export interface ViewOptions {
  view: ViewName
  /** which image of a layout holding several (ref name or manifest digest) */
  image?: string
  platform?: Platform
}

/** The tree a mount of snapshot `id` serves for `options`. */
export async function loadView(store: Store, id: string, options: ViewOptions): Promise<Tree> {
  const bundle = await readTree(store, id)
  if (options.view === 'tree') return bundle
  const image = await resolveStoredImage(store, id, bundle, options)
  const layers = await Promise.all(image.layers.map((l) => readTree(store, l.tree)))
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
