// Everything a snapshot needs, as the store holds it: its own tree and, for the push of an image, each
// expanded layer (the ref refs/layers/<diff_id> that `mount --view rootfs|layers` finds it by, the
// layer's tree) and every chunk those trees name. verify checks it, sync copies it; gc keeps it and
// serve reads it.
//
// The layers of an image snapshot are the ones its revisions list (revisions.ts `image.layers`). A
// snapshot several revisions name gets the union of their layers; one no revision names (a layer tree
// verified as a snapshot of its own, or a store written by an older version) is its own tree alone.
// Trees are read one at a time and dropped once their chunks are listed: the closure holds IDs, sizes
// and (unless asked not to) the names of the files using each chunk, never the trees' inline bytes.
//
// A file of the snapshot's tree stored as a layer recipe (format/recipe.ts, a layer blob given back
// from its expanded tree) brings its recipe, the chunks of the recipe's tar framing and the layer tree
// it names (read like a layer's, if no revision listed that layer).
//
// For sync, what the destination holds is left out: a tree, tree part or recipe there proves every
// object under it is there too (commit.ts writes, and flushes, referents before referrers), so the
// chunks under it are not listed. A tree the snapshot's revisions name as their previous one, when the
// destination has it, is read from this store (its root, and the parts of it the snapshot does not
// share) for the same reason: an edit then costs a check of the parts and chunks it changed, not of
// every chunk of the tree.
import { toHex } from '../format/id.js'
import { decodeObject } from '../format/object.js'
import { printablePath } from '../format/tree-paths.js'
import type { Recipe } from '../format/recipe.js'
import { decodeTreePart, decodeTreeRoot, treeSize, type ChunkRef, type Tree } from '../format/tree.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { readLayerRef, layerRefKey, type ImageLayer, type LayerRef } from './layer-refs.js'
import { isObjectDamage, objectKey, readRecipe, readStoredTree, type EncodedObject, type StoredTree } from './objects.js'
import { listRevisions, type Revision } from './revisions.js'
import type { ReadStore, Store } from './store.js'

/** One expanded layer of an image snapshot, as its revision lists it, with the ref the store holds for it. */
export interface ClosureLayer extends ImageLayer {
  /** refs/layers/<diff_id> as the store holds it; null when it is missing or unreadable (see damage) */
  ref: LayerRef | null
}

/** A tree of the closure: the snapshot's own (layer null) or a layer's. */
export interface ClosureTree {
  id: string
  layer: ClosureLayer | null
  /**
   * read: its chunks are listed; skipped: `skipTree` said it is complete where the caller is going, so
   * it was not read; damaged: missing or unreadable (see damage), its chunks unknown
   */
  state: 'read' | 'skipped' | 'damaged'
  /** the tree object (its root) as stored, when `keepTreeObjects` asked for it (sync copies it as it is) */
  object?: Buffer
  /**
   * likewise its parts (format 2 trees; empty for format 1), but for those `skipPart` said are where
   * the caller is going: when `skipPart` was given, every part listed here is one it said is not
   */
  parts?: EncodedObject[]
  /** the parts left out of `parts` and whose chunks were not listed (skipPart, or the previous tree's) */
  presentParts?: string[]
  /** the IDs of all its parts (format 2; empty for format 1), when `partIds` asked for them (gc keeps them) */
  partIds?: string[]
}

/** Who uses a chunk: one tree of the closure, and the files of that tree (for messages). */
export interface ChunkUser {
  tree: string
  /** null for the snapshot's own tree */
  layer: ClosureLayer | null
  /** empty when the closure was built with `files: false` */
  files: string[]
}

export interface ClosureChunk {
  id: string
  /** the furthest byte any tree reads of it (offset + length): getChunk's `needs` */
  needs: number
  /** in closure order: the snapshot's tree first, then the layers' in revision order */
  users: ChunkUser[]
}

/** A layer blob of the snapshot's tree stored as a recipe. */
export interface ClosureRecipe {
  id: string
  /** the file of the snapshot's tree it gives back (the first, if several) */
  file: string
  /** null when it is missing or damaged (see damage) */
  recipe: Recipe | null
  /** the recipe object as stored, when `keepTreeObjects` asked for it */
  object?: Buffer
  /** skipped: `skipRecipe` said the destination has it (and so its framing chunks) */
  state: 'read' | 'skipped' | 'damaged'
}

/** A layer object the snapshot needs that the store lacks or holds damaged. Chunks are checked by the caller. */
export interface ClosureDamage {
  layer: ClosureLayer
  object: 'tree' | 'ref' | 'recipe'
  /** the store key: trees/…/<id>, tree-parts/…/<id> (a part of the layer's tree), refs/layers/<hex> or recipes/…/<id> */
  key: string
  /** mismatch: the ref names another tree than the revision's (the views would read that one) */
  problem: 'missing' | 'corrupt' | 'mismatch'
  detail: string
}

export interface SnapshotClosure {
  id: string
  /** the bytes of the snapshot's own files (format/tree.ts treeSize), as a revision records it */
  size: number
  /** the revisions naming the snapshot, oldest first (none for a tree pushed by no revision) */
  revisions: Revision[]
  /** the image's layers, each (digest, diff_id, tree) once in revision order; empty for a plain directory */
  layers: ClosureLayer[]
  /** the snapshot's tree first, then each distinct layer tree */
  trees: ClosureTree[]
  /** every chunk the trees (and the recipes' framing) read, in the order first met */
  chunks: Map<string, ClosureChunk>
  /** the recipes the snapshot's files are stored as, each once */
  recipes: ClosureRecipe[]
  /** layer trees and refs missing or damaged; the snapshot's own tree missing or damaged is thrown instead */
  damage: ClosureDamage[]
}

export interface ClosureOptions {
  /** name the files using each chunk (default true); false keeps only which trees use it */
  files?: boolean
  /** keep each tree object read (its stored bytes) in `trees` */
  keepTreeObjects?: boolean
  /**
   * A layer tree for which this resolves true is taken as complete elsewhere (sync: the destination
   * has it, and a tree there proves its chunks are there): it is not read and its chunks not listed.
   */
  skipTree?: (id: string) => Promise<boolean>
  /** likewise for a recipe: taken as complete (with its framing chunks) where the caller is going */
  skipRecipe?: (id: string) => Promise<boolean>
  /**
   * Likewise for a part of a format 2 tree the closure reads (the snapshot's, a layer's): a part there
   * proves the chunks its entries name are there, so they are not listed, nor is the part kept. Asked
   * of each part (several at once) except those of a previous tree (below). With it, the revisions'
   * `previous_id` trees for which `skipTree` resolves true are read (root, and the parts the snapshot
   * does not share): their parts are taken as there without asking, and their chunks as well.
   */
  skipPart?: (id: string) => Promise<boolean>
  /** list the IDs of each tree's parts in `trees` (partIds) */
  partIds?: boolean
  /** the store's revisions, when the caller has listed them already (gc walks every snapshot: one listing, not one each) */
  revisions?: Revision[]
}

/** Parts asked about at once (skipPart: a HEAD each on S3). */
const PART_CHECKS = 16

/**
 * The closure of snapshot `id` in `store`. Its own tree missing is ERR_SNAPSHOT_NOT_FOUND and damaged
 * is ERR_OBJECT_CORRUPT / ERR_TREE_MALFORMED, thrown: without it there is nothing to check. A layer's
 * tree or ref missing or damaged is listed in `damage`, and the rest of the closure is still listed.
 */
export async function snapshotClosure(store: Store, id: string, options: ClosureOptions = {}): Promise<SnapshotClosure> {
  const withFiles = options.files ?? true
  const chunks = new Map<string, ClosureChunk>()
  const recipeFiles = new Map<string, string>()
  // `skipped`: 1 for each entry under a part where the caller is going (its recipe is still listed:
  // commit.ts writes the snapshot's tree parts before the recipes)
  const addTree = (tree: Tree, treeId: string, layer: ClosureLayer | null, skipped?: Uint8Array): void => {
    for (const [i, e] of tree.entries.entries()) {
      if (layer === null && e.recipe !== undefined && !recipeFiles.has(e.recipe)) recipeFiles.set(e.recipe, printablePath(e.path))
      if (e.type !== 'file' || e.chunks.length === 0 || skipped?.[i] === 1) continue
      addRefs(e.chunks, withFiles ? printablePath(e.path) : '', treeId, layer)
    }
  }
  const addRefs = (refs: ChunkRef[], name: string, treeId: string, layer: ClosureLayer | null): void => {
    for (const c of refs) {
      const chunkId = toHex(c.id)
      if (knownChunks.has(chunkId)) continue
      const needs = c.offset + c.length
      let chunk = chunks.get(chunkId)
      if (chunk === undefined) {
        chunk = { id: chunkId, needs, users: [] }
        chunks.set(chunkId, chunk)
      } else if (needs > chunk.needs) chunk.needs = needs
      let user = chunk.users.at(-1)
      if (user === undefined || user.tree !== treeId) {
        user = { tree: treeId, layer, files: [] }
        chunk.users.push(user)
      }
      if (withFiles && user.files.at(-1) !== name) user.files.push(name)
    }
  }

  // the snapshot's own tree first, alone: an unknown ID fails before anything else is read. Each
  // tree is read in a call of its own, so it is garbage once its chunks are listed.
  const readOwn = async (): Promise<StoredTree> => {
    return readStoredTree(store, id).catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING' && err.data.part === undefined) {
        throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${store.url}`, { data: { id, store: store.url } })
      }
      // a part of the tree missing or damaged: the snapshot is there, but not whole
      if (isObjectDamage(err)) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', err.message, { cause: err, data: err.data })
      throw err
    })
  }
  // Lists a tree's chunks but those under parts where the caller is going; what `trees` keeps of it.
  const listTree = async (stored: StoredTree, treeId: string, layer: ClosureLayer | null): Promise<Pick<ClosureTree, 'object' | 'parts' | 'presentParts' | 'partIds'>> => {
    const present = new Set<string>()
    if (options.skipPart && stored.parts.length > 0) {
      await forEachLimit(stored.parts, PART_CHECKS, async (p) => {
        if (knownParts.has(p.id) || (await options.skipPart!(p.id))) present.add(p.id)
      })
    }
    let entry = 0
    const skipped = new Uint8Array(stored.tree.entries.length)
    stored.parts.forEach((p, i) => {
      const n = stored.partEntries[i]!
      if (present.has(p.id)) skipped.fill(1, entry, entry + n)
      entry += n
    })
    addTree(stored.tree, treeId, layer, skipped)
    const partIds = options.partIds ? { partIds: stored.parts.map((p) => p.id) } : {}
    if (!options.keepTreeObjects) return partIds
    return { object: stored.root, parts: stored.parts.filter((p) => !present.has(p.id)), ...(present.size > 0 ? { presentParts: [...present] } : {}), ...partIds }
  }
  const knownParts = new Set<string>()
  const knownChunks = new Set<string>()
  const own = await readOwn()
  const size = treeSize(own.tree)

  const revisions = (options.revisions ?? (await listRevisions(store))).filter((r) => r.id === id)
  if (options.skipPart && options.skipTree) {
    const ownParts = new Set(own.parts.map((p) => p.id))
    for (const previous of new Set(revisions.map((r) => r.previous_id))) {
      if (typeof previous !== 'string' || previous === id || !(await options.skipTree(previous))) continue
      await readPreviousTree(store, previous, ownParts, knownParts, knownChunks)
    }
  }
  const trees: ClosureTree[] = [{ id, layer: null, state: 'read', ...(await listTree(own, id, null)) }]
  const layers: ClosureLayer[] = []
  const seenLayers = new Set<string>()
  // each ref once per diff_id: the views find a layer's tree through it
  const refs = new Map<string, { ref: LayerRef | null; error: SnapdirError | null }>()
  for (const l of revisions.flatMap((r) => r.image?.layers ?? [])) {
    const key = `${l.digest} ${l.diffId} ${l.tree}`
    if (seenLayers.has(key)) continue
    seenLayers.add(key)
    let read = refs.get(l.diffId)
    if (read === undefined) {
      try {
        read = { ref: await readLayerRef(store, l.diffId), error: null }
      } catch (err) {
        if (!isObjectDamage(err)) throw err
        read = { ref: null, error: err }
      }
      refs.set(l.diffId, read)
    }
    layers.push({ digest: l.digest, diffId: l.diffId, tree: l.tree, ...(l.recipe !== undefined ? { recipe: l.recipe } : {}), ...(l.raw !== undefined ? { raw: l.raw } : {}), ref: read.ref })
  }

  // the recipes of the snapshot's files: each brings its framing chunks and the layer tree it names
  const recipes: ClosureRecipe[] = []
  const recipeLayers: ClosureLayer[] = []
  const recipeDamage: ClosureDamage[] = []
  for (const [recipeId, file] of recipeFiles) {
    const listed = layers.find((l) => l.recipe === recipeId)
    if (options.skipRecipe && (await options.skipRecipe(recipeId))) {
      recipes.push({ id: recipeId, file, recipe: null, state: 'skipped' })
      continue
    }
    try {
      const { recipe, stored } = await readRecipe(store, recipeId)
      recipes.push({ id: recipeId, file, recipe, state: 'read', ...(options.keepTreeObjects ? { object: stored } : {}) })
      const layer = listed ?? layers.find((l) => l.digest === recipe.digest && l.tree === recipe.tree) ??
        { digest: recipe.digest, diffId: recipe.diffId, tree: recipe.tree, ref: null }
      addRefs(recipe.framing, withFiles ? `the tar framing of ${file}` : '', recipe.tree, layer)
      // content the layer tree does not hold (a path the tar wrote twice) is named by the recipe itself
      for (const seg of recipe.segments) if (typeof seg.source !== 'number') addRefs(seg.source, withFiles ? `a replaced file in the tar of ${file}` : '', recipe.tree, layer)
      if (!layers.some((l) => l.tree === recipe.tree) && !recipeLayers.some((l) => l.tree === recipe.tree)) recipeLayers.push(layer)
    } catch (err) {
      if (!isObjectDamage(err)) throw err
      recipes.push({ id: recipeId, file, recipe: null, state: 'damaged' })
      const layer = listed ?? { digest: digestOfBlobPath(file) ?? file, diffId: '(unknown: its recipe is unreadable)', tree: '', ref: null }
      recipeDamage.push({ layer, object: 'recipe', key: objectKey('recipe', recipeId), problem: err.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt', detail: `${file}: ${err.message}` })
    }
  }

  const readLayerTree = async (layer: ClosureLayer): Promise<Pick<ClosureTree, 'object' | 'parts' | 'presentParts' | 'partIds'>> => {
    const stored = await readStoredTree(store, layer.tree, `layer ${layer.diffId} (tree ${layer.tree}) in ${store.url}`)
    return listTree(stored, layer.tree, layer)
  }
  const damage: ClosureDamage[] = [...recipeDamage]
  const refsReported = new Set<string>()
  for (const layer of [...layers, ...recipeLayers]) {
    if (!refsReported.has(layer.diffId) && !recipeLayers.includes(layer)) {
      refsReported.add(layer.diffId)
      const { error } = refs.get(layer.diffId)!
      const key = layerRefKey(layer.diffId)
      if (error !== null) damage.push({ layer, object: 'ref', key, problem: error.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt', detail: error.message })
      else if (layer.ref === null) damage.push({ layer, object: 'ref', key, problem: 'missing', detail: `layer ref ${key} is missing from ${store.url}: the rootfs and layers views cannot find the layer` })
      else if (layer.ref.tree !== layer.tree) {
        damage.push({ layer, object: 'ref', key, problem: 'mismatch', detail: `layer ref ${key} in ${store.url} names tree ${layer.ref.tree}, not ${layer.tree} as the revision lists` })
      }
    }
    if (trees.some((t) => t.id === layer.tree)) continue
    if (options.skipTree && (await options.skipTree(layer.tree))) {
      trees.push({ id: layer.tree, layer, state: 'skipped' })
      continue
    }
    try {
      const stored = await readLayerTree(layer)
      trees.push({ id: layer.tree, layer, state: 'read', ...stored })
    } catch (err) {
      if (!(isObjectDamage(err) || (err instanceof SnapdirError && err.code === 'ERR_TREE_MALFORMED'))) throw err
      trees.push({ id: layer.tree, layer, state: 'damaged' })
      const part = typeof err.data.part === 'string' ? err.data.part : null
      const detail = err.code === 'ERR_OBJECT_MISSING' && part === null ? `layer tree ${layer.tree} is missing from ${store.url}` : err.message
      const key = part === null ? objectKey('tree', layer.tree) : objectKey('tree-part', part)
      damage.push({ layer, object: 'tree', key, problem: err.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt', detail })
    }
  }
  return { id, size, revisions, layers, trees, chunks, recipes, damage }
}

/**
 * Adds to `parts` the parts of tree `id` (the previous revision's, which the caller's destination
 * holds whole), and to `chunks` the chunks named by those of its parts that are not in `shared` (the
 * snapshot's own parts, listed or asked about anyway). Read from `store`, whose copy has the same
 * bytes (names are hashes); what it lacks or holds damaged only leaves less known.
 */
async function readPreviousTree(store: ReadStore, id: string, shared: Set<string>, parts: Set<string>, chunks: Set<string>): Promise<void> {
  const what = `tree ${id} from ${store.url}`
  const addRefs = (entries: Tree['entries']): void => {
    for (const e of entries) for (const c of e.chunks) chunks.add(toHex(c.id))
  }
  try {
    const root = decodeTreeRoot(decodeObject(await store.get(objectKey('tree', id)), id, what), what)
    if (root.format === 1) return addRefs(root.tree.entries)
    for (const p of root.parts) parts.add(p.id)
    const unshared = root.parts.filter((p) => !shared.has(p.id))
    await forEachLimit(unshared, PART_CHECKS, async (p) => {
      const raw = decodeObject(await store.get(objectKey('tree-part', p.id)), p.id, `part ${p.id} of ${what}`)
      addRefs(decodeTreePart(raw, p.entries, 0, `${what}, part ${p.id}`))
    })
  } catch (err) {
    if (isObjectDamage(err) || (err instanceof SnapdirError && err.code === 'ERR_TREE_MALFORMED')) return
    throw err
  }
}

/** The digest a layout's blob path names (blobs/sha256/<hex>), for messages about a blob whose recipe is lost. */
function digestOfBlobPath(file: string): string | null {
  const m = /(?:^|\/)blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(file)
  return m ? `${m[1]}:${m[2]}` : null
}
