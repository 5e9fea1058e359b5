// The commit of a snapshot whose chunks are stored and flushed: what names them is written in the
// order that keeps a crash harmless, each step flushed before the next names it:
//
//   tree parts -> flush -> layer trees, recipes -> flush -> layer refs -> flush -> the snapshot's tree
//   -> flush -> revision -> flush -> image names and tags -> flush
//
// (a recipe names a layer tree, and is named by the layer ref and the snapshot's tree)
//
// (tree parts: the parts of format 2 trees, layers' and the snapshot's, which their roots name.)
// A process or machine dying anywhere leaves only objects nothing names yet (a later push or sync
// reuses them; gc sweeps them), never a ref or a revision naming something missing. Push and sync
// both commit through here.
import type { Tree } from '../format/tree.js'
import { encodeTreeObject, writeRecipe, writeTree, writeTreeParts, type EncodedObject, type EncodedTree } from './objects.js'
import { writeLayerRef, type ImageLayer, type LayerBlobStorage } from './layer-refs.js'
import { imageNameKey, writeImageName, type ImageTag } from './image-names.js'
import { addRevision, type Revision } from './revisions.js'
import type { Store } from './store.js'

/** One layer of an image snapshot to commit. */
export interface CommitLayer {
  digest: string
  diffId: string
  /** the expanded tree: to write (a Tree, or an encoded or stored object), or the ID of one the store holds */
  tree: Tree | EncodedTree | string
  /** the blob's recipe to write (after the layer trees: it names one), when it is stored as one */
  recipe?: EncodedObject
  /** how the blob is stored, as the revision records it */
  storage?: LayerBlobStorage
  /** the ref to write for it (merged with the store's refs/layers/<diff_id>); null writes none */
  ref: { digests: string[]; mediaType: string; recipes?: Record<string, string>; raw?: Record<string, string> } | null
}

export type CommitStep = 'layer-trees' | 'layer-refs' | 'tree' | 'revision' | 'images'

export interface SnapshotCommit {
  /** the snapshot's tree, encoded (or as another store holds it); its ID is the snapshot ID */
  tree: EncodedTree
  /** for an image: its layers, listed in the revision in this order; absent for a plain directory */
  layers?: CommitLayer[]
  /** recipes the snapshot's tree names, besides the layers' own (sync copies them so), written with the layer trees */
  recipes?: EncodedObject[]
  /** layer trees those recipes name that no layer of `layers` does, written with the layer trees */
  recipeTrees?: EncodedTree[]
  revision: Pick<Revision, 'name' | 'size' | 'source'>
  /**
   * image names and tags to point at the snapshot (image-names.ts), written last: a tag there means
   * the snapshot and its revision are; a tag the store has already moves to this snapshot. With
   * `created_at` (a sync copying the source's records), the record keeps it
   */
  images?: Array<ImageTag & { created_at?: string }>
  /** after each step is written and flushed; the layer steps only for an image */
  onStep?: (step: CommitStep) => void
}

/**
 * Writes what names a snapshot, in the crash-safe order above. Every chunk the trees name must be
 * stored and flushed already. Returns the revision written.
 */
export async function commitSnapshot(store: Store, commit: SnapshotCommit): Promise<Revision> {
  for (const n of commit.images ?? []) imageNameKey(n) // a malformed name fails before anything is written
  let image: Revision['image'] | undefined
  // every tree's parts first, in one step: a tree given decoded is encoded here, one at a time, and
  // only its root is kept (the parts are written)
  const layerTrees: Array<string | EncodedTree> = []
  let parts = 0
  for (const layer of commit.layers ?? []) {
    if (typeof layer.tree === 'string') layerTrees.push(layer.tree)
    else {
      const encoded = 'object' in layer.tree ? layer.tree : encodeTreeObject(layer.tree)
      parts += await writeTreeParts(store, encoded)
      layerTrees.push({ id: encoded.id, object: encoded.object })
    }
  }
  for (const tree of commit.recipeTrees ?? []) parts += await writeTreeParts(store, tree)
  parts += await writeTreeParts(store, commit.tree)
  if (parts > 0) await store.flush()
  const ownRoot: EncodedTree = { id: commit.tree.id, object: commit.tree.object }
  if (commit.layers !== undefined) {
    const written: ImageLayer[] = []
    for (const [i, layer] of commit.layers.entries()) {
      const t = layerTrees[i]!
      const tree = typeof t === 'string' ? t : await writeTree(store, t)
      written.push({ digest: layer.digest, diffId: layer.diffId, tree, ...(layer.storage ? layer.storage : {}) })
    }
    for (const layer of commit.layers) if (layer.recipe) await writeRecipe(store, layer.recipe)
    for (const tree of commit.recipeTrees ?? []) await writeTree(store, tree)
    for (const recipe of commit.recipes ?? []) await writeRecipe(store, recipe)
    await store.flush()
    commit.onStep?.('layer-trees')
    for (const [i, layer] of commit.layers.entries()) {
      if (layer.ref !== null) {
        const { digests, mediaType, recipes, raw } = layer.ref
        await writeLayerRef(store, { diffId: layer.diffId, digests, mediaType, tree: written[i]!.tree, ...(recipes ? { recipes } : {}), ...(raw ? { raw } : {}) })
      }
    }
    await store.flush()
    commit.onStep?.('layer-refs')
    image = { layers: written }
  } else if (commit.recipes !== undefined && commit.recipes.length > 0) {
    for (const tree of commit.recipeTrees ?? []) await writeTree(store, tree)
    for (const recipe of commit.recipes) await writeRecipe(store, recipe)
    await store.flush()
  }
  const id = await writeTree(store, ownRoot)
  await store.flush()
  commit.onStep?.('tree')
  const revision = await addRevision(store, { id, ...commit.revision, ...(image ? { image } : {}) })
  await store.flush()
  commit.onStep?.('revision')
  if (commit.images !== undefined && commit.images.length > 0) {
    for (const n of commit.images) await writeImageName(store, { ...n, id })
    await store.flush()
    commit.onStep?.('images')
  }
  return revision
}
