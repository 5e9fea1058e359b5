// What a set of stored images would cost at each level of deduplication, side by side:
//
//   registry     each distinct layer blob once, by digest, compressed as pushed (descriptor sizes)
//   whole layer  each distinct layer once, by diff_id: the content of its files
//   whole file   each distinct file content once, across all those layers
//   chunk        each distinct chunk once: what the store holds for the layers (chunks and layer trees)
//
// Everything is read from the store: the images out of their bundle trees (stored-image.ts), the
// layers' expanded trees by their refs, the stored size of every chunk and tree the layers use.
// A file's content identity is its list of chunk refs (or its inline bytes), so no file is read;
// the catch is that a packed small file (docs/FORMAT.md) cut with other neighbours gets other refs
// and counts as another file, which makes the whole-file level an upper bound.
import { checkStoreFormat } from '../store/store-config.js'
import { createHash } from 'node:crypto'
import type { Tree } from '../format/tree.js'
import { toHex } from '../format/id.js'
import { getChunk } from '../store/chunks.js'
import { objectKey, readRecipe, readStoredTree } from '../store/objects.js'
import { findEntry } from '../store/tree-file.js'
import { listRevisions } from '../store/revisions.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import type { Platform } from './platform.js'
import { headProducer, PRODUCERS, recipeProducer, type Producer } from './blob-producer.js'
import { resolveStoredImages } from './stored-image.js'

export interface DedupStatsOptions {
  /** for multi-platform indexes (default: this machine's platform) */
  platform?: Platform
  /** store requests in flight at most, when asking for object sizes */
  jobs?: number
  /** once the number of objects whose stored size is needed is known */
  onPlan?: (objects: number) => void
  onObject?: () => void
}

export interface ImageDedupStats {
  /** the snapshot (bundle tree) ID */
  id: string
  /** the name its latest revision records, if the store has one for it */
  name: string | null
  /** the image's ref name in index.json, if it has one */
  ref: string | null
  manifest: string
  layers: number
  /** the image's layer blobs, as its manifest gives their sizes */
  layerBlobBytes: number
  /** file content of its layers, each layer's hardlinked files once */
  contentBytes: number
}

export interface DedupStats {
  images: ImageDedupStats[]
  registry: { layers: number; bytes: number }
  /**
   * `storedEstimate`: each file's share of the stored size of the chunks it uses (inline files, their
   * share of their tree's), summed over the files of the distinct layers; an estimate, since a store
   * that deduplicated only whole layers would compress them in other pieces.
   */
  wholeLayer: { layers: number; files: number; bytes: number; storedEstimate: number }
  /** as wholeLayer, over the distinct file contents (`inlineBytes`: those small enough to be inline); `storedEstimate` likewise */
  wholeFile: { files: number; bytes: number; inlineBytes: number; storedEstimate: number }
  /**
   * exact: chunks and layer trees as the store holds them; `storedBytes` is their sum. `inlineBytes`:
   * the small files the layer trees carry, each tree its own copy.
   */
  chunk: { chunks: number; rawBytes: number; chunkStoredBytes: number; trees: number; treeStoredBytes: number; inlineBytes: number; storedBytes: number }
  /**
   * What the byte-exact layouts add on top (push stores the layout itself too): their trees, and the
   * chunks of their blobs that no layer tree uses. Not part of any level above.
   */
  bundles: { trees: number; treeStoredBytes: number; chunks: number; chunkRawBytes: number; chunkStoredBytes: number }
  /**
   * How the layer blobs are kept: as recipes (format/recipe.ts: the recipe objects and the chunks of
   * their tar framing, counted here and in no level above), or raw (their bytes chunked in the bundle,
   * counted in `bundles`), each with the reason push gave.
   */
  blobs: {
    recipes: number
    recipeStoredBytes: number
    framingChunks: number
    framingRawBytes: number
    framingStoredBytes: number
    /** `producer`: the family the blob's first bytes point at (blob-producer.ts headProducer) */
    raw: Array<{ digest: string; bytes: number; reason: string; producer: Producer }>
    /**
     * The recipe hit rate per producer family, each family with at least one blob once, in
     * blob-producer.ts's order: a recipe's family is its compressor's, a raw blob's the one its header
     * points at. `bytes`: the blobs' sizes; `recipeBytes`: those of the blobs kept as recipes.
     */
    producers: Array<{ producer: Producer; name: string; blobs: number; recipes: number; raw: number; bytes: number; recipeBytes: number }>
  }
}

/** The snapshots the revisions log records as pushes of image layouts, each once, oldest first. */
export async function imageSnapshotIds(store: Store): Promise<string[]> {
  const ids = (await listRevisions(store)).filter((r) => r.image !== undefined).map((r) => r.id)
  return [...new Set(ids)]
}

interface LayerTree {
  id: string
  tree: Tree
  rawBytes: number
  storedBytes: number
}

interface ChunkUse {
  /** the chunk's length: the furthest byte any ref reads (every byte of a chunk belongs to a file) */
  length: number
  stored: number
}

/** Reads the images of snapshots `ids` and their layers out of `store` and counts every level. */
export async function dedupStats(store: Store, ids: string[], options: DedupStatsOptions = {}): Promise<DedupStats> {
  const jobs = options.jobs ?? 16
  if (!Number.isInteger(jobs) || jobs < 1) throw new RangeError(`dedupStats: jobs must be a positive integer, got ${jobs}`)
  await store.open()
  await checkStoreFormat(store)
  const revisions = await listRevisions(store)
  const names = new Map(revisions.map((r) => [r.id, r.name]))
  // why a blob is raw, as push said it; a revision from before recipes says nothing
  const rawReasons = new Map<string, string>()
  for (const r of revisions) for (const l of r.image?.layers ?? []) if (l.raw !== undefined) rawReasons.set(l.digest, l.raw)
  const bundles = new Map<string, LayerTree>()
  // tree parts counted already: two trees may share one (format 2), which the store holds once
  const counted = new Set<string>()
  const images: Array<ImageDedupStats & { trees: string[] }> = []
  const blobSizes = new Map<string, number>()
  // where each blob is in its bundle: a raw blob's first bytes tell who likely wrote it
  const blobFiles = new Map<string, { bundle: Tree; file: string }>()
  const diffIds = new Map<string, string>()
  for (const id of new Set(ids)) {
    const bundle = await loadTree(store, id, counted)
    bundles.set(id, bundle)
    for (const { ref, image } of await resolveStoredImages(store, id, bundle.tree, options.platform)) {
      for (const l of image.layers) {
        blobSizes.set(l.digest, l.size)
        blobFiles.set(l.digest, { bundle: bundle.tree, file: l.file })
        diffIds.set(l.diffId, l.tree)
      }
      images.push({
        id, name: names.get(id) ?? null, ref, manifest: image.manifest, layers: image.layers.length,
        layerBlobBytes: image.layers.reduce((a, l) => a + l.size, 0), contentBytes: 0, trees: image.layers.map((l) => l.tree),
      })
    }
  }

  // the blobs kept as recipes: each recipe once, and the chunks of its framing
  const recipeIds = new Set<string>()
  for (const b of bundles.values()) for (const e of b.tree.entries) if (e.recipe !== undefined) recipeIds.add(e.recipe)
  const recipeDigests = new Map<string, Producer>()
  let recipeStoredBytes = 0
  const framing = new Map<string, ChunkUse>()
  for (const rid of recipeIds) {
    const { recipe, stored } = await readRecipe(store, rid)
    recipeStoredBytes += stored.length
    recipeDigests.set(recipe.digest, recipeProducer(recipe.compression))
    for (const r of recipe.framing) framing.set(toHex(r.id), { length: r.offset + r.length, stored: 0 })
  }

  const layers = new Map<string, LayerTree>()
  for (const treeId of new Set(diffIds.values())) layers.set(treeId, await loadTree(store, treeId, counted))
  const chunks = new Map<string, ChunkUse>()
  const bundleChunks = new Map<string, ChunkUse>()
  collectChunks(layers.values(), chunks, null)
  collectChunks(bundles.values(), bundleChunks, chunks)
  for (const id of [...chunks.keys(), ...bundleChunks.keys()]) framing.delete(id)
  options.onPlan?.(chunks.size + bundleChunks.size + framing.size)
  await forEachLimit([...chunks, ...bundleChunks, ...framing], jobs, async ([id, use]) => {
    const stored = await store.size(objectKey('chunk', id))
    if (stored === null) {
      throw new SnapdirError('ERR_OBJECT_MISSING', `chunk ${id} is not in ${store.url} (a stored image needs it; run snapdir verify)`, { data: { key: objectKey('chunk', id) } })
    }
    use.stored = stored
    options.onObject?.()
  })

  // Each file's share of what stores it: per ref, the slice of the chunk it reads (count times), and
  // for an inline file, its share of the compressed tree it lives in.
  const files = new Map<string, { bytes: number; inline: boolean; estimate: number }>()
  const wholeLayer = { layers: diffIds.size, files: 0, bytes: 0, storedEstimate: 0 }
  const layerBytes = new Map<string, number>()
  let inlineBytes = 0
  for (const layer of layers.values()) {
    let bytes = 0
    for (const e of layer.tree.entries) {
      if (e.type !== 'file') continue
      let estimate = 0
      if (e.inline) {
        estimate = (e.size * layer.storedBytes) / layer.rawBytes
        inlineBytes += e.size
      } else {
        for (const r of e.chunks) {
          const c = chunks.get(toHex(r.id))!
          estimate += (r.count * r.length * c.stored) / c.length
        }
      }
      bytes += e.size
      wholeLayer.files++
      wholeLayer.storedEstimate += estimate
      const key = contentKey(e)
      if (!files.has(key)) files.set(key, { bytes: e.size, inline: e.inline !== undefined, estimate })
    }
    wholeLayer.bytes += bytes
    layerBytes.set(layer.id, bytes)
  }
  for (const image of images) image.contentBytes = image.trees.reduce((a, t) => a + layerBytes.get(t)!, 0)

  const sum = <T>(xs: Iterable<T>, f: (x: T) => number): number => {
    let total = 0
    for (const x of xs) total += f(x)
    return total
  }
  const raw: DedupStats['blobs']['raw'] = []
  for (const [digest, bytes] of blobSizes) {
    if (recipeDigests.has(digest)) continue
    const { bundle, file } = blobFiles.get(digest)!
    const reason = rawReasons.get(digest) ?? 'pushed before snapdir kept layer blobs as recipes'
    raw.push({ digest, bytes, reason, producer: headProducer(await blobHead(store, bundle, file)) })
  }
  const chunkStoredBytes = sum(chunks.values(), (c) => c.stored)
  const treeStoredBytes = sum(layers.values(), (t) => t.storedBytes)
  return {
    images: images.map(({ trees: _, ...image }) => image),
    registry: { layers: blobSizes.size, bytes: sum(blobSizes.values(), (s) => s) },
    wholeLayer: { ...wholeLayer, storedEstimate: Math.round(wholeLayer.storedEstimate) },
    wholeFile: {
      files: files.size,
      bytes: sum(files.values(), (f) => f.bytes),
      inlineBytes: sum(files.values(), (f) => (f.inline ? f.bytes : 0)),
      storedEstimate: Math.round(sum(files.values(), (f) => f.estimate)),
    },
    chunk: {
      chunks: chunks.size,
      rawBytes: sum(chunks.values(), (c) => c.length),
      chunkStoredBytes,
      trees: layers.size,
      treeStoredBytes,
      inlineBytes,
      storedBytes: chunkStoredBytes + treeStoredBytes,
    },
    bundles: {
      trees: bundles.size,
      treeStoredBytes: sum(bundles.values(), (t) => t.storedBytes),
      chunks: bundleChunks.size,
      chunkRawBytes: sum(bundleChunks.values(), (c) => c.length),
      chunkStoredBytes: sum(bundleChunks.values(), (c) => c.stored),
    },
    blobs: {
      recipes: recipeIds.size,
      recipeStoredBytes,
      framingChunks: framing.size,
      framingRawBytes: sum(framing.values(), (c) => c.length),
      framingStoredBytes: sum(framing.values(), (c) => c.stored),
      raw,
      producers: producerCounts(blobSizes, recipeDigests, raw),
    },
  }
}

/** Bytes a blob's header needs at most to tell its producer (a gzip name or extra field can be long). */
const HEAD_BYTES = 4096

/** The first bytes of the blob at `file` in the bundle: those of its first chunk, at most HEAD_BYTES. */
async function blobHead(store: Store, bundle: Tree, file: string): Promise<Buffer> {
  const entry = findEntry(bundle, file)
  if (entry === null || entry.type !== 'file') {
    throw new SnapdirError('ERR_TREE_MALFORMED', `layer blob ${file} is not a file of its image's snapshot`, { data: { file } })
  }
  if (entry.inline) return entry.inline.subarray(0, HEAD_BYTES)
  const first = entry.chunks[0]
  if (first === undefined) return Buffer.alloc(0)
  const { raw } = await getChunk(store, toHex(first.id), { needs: first.offset + first.length })
  return raw.subarray(first.offset, first.offset + Math.min(first.length, HEAD_BYTES))
}

/** Blobs and recipes per producer family, the families with a blob in PRODUCERS' order. */
function producerCounts(sizes: Map<string, number>, recipes: Map<string, Producer>, raw: DedupStats['blobs']['raw']): DedupStats['blobs']['producers'] {
  const by = new Map<Producer, DedupStats['blobs']['producers'][number]>()
  const row = (producer: Producer): DedupStats['blobs']['producers'][number] => {
    let r = by.get(producer)
    if (!r) by.set(producer, (r = { producer, name: PRODUCERS[producer], blobs: 0, recipes: 0, raw: 0, bytes: 0, recipeBytes: 0 }))
    return r
  }
  for (const [digest, producer] of recipes) {
    const bytes = sizes.get(digest)
    // a recipe of a blob none of the given images uses (another image of the same layer)
    if (bytes === undefined) continue
    const r = row(producer)
    r.blobs++
    r.recipes++
    r.bytes += bytes
    r.recipeBytes += bytes
  }
  for (const b of raw) {
    const r = row(b.producer)
    r.blobs++
    r.raw++
    r.bytes += b.bytes
  }
  return (Object.keys(PRODUCERS) as Producer[]).flatMap((p) => by.get(p) ?? [])
}

/**
 * A tree with its raw and stored sizes (its root and its parts not in `counted`, which it adds its
 * parts to); a missing one is ERR_SNAPSHOT_NOT_FOUND, as readTree says it.
 */
async function loadTree(store: Store, id: string, counted: Set<string>): Promise<LayerTree> {
  try {
    const { tree, rawBytes, root, parts } = await readStoredTree(store, id)
    let storedBytes = root.length
    for (const p of parts) {
      if (!counted.has(p.id)) storedBytes += p.object.length
      counted.add(p.id)
    }
    return { id, tree, rawBytes, storedBytes }
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING' && err.data.part === undefined) {
      throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${store.url}`, { data: { id, store: store.url } })
    }
    throw err
  }
}

/** Adds the chunks the trees' files use to `into`, leaving out those `skip` already has. */
function collectChunks(trees: Iterable<LayerTree>, into: Map<string, ChunkUse>, skip: Map<string, ChunkUse> | null): void {
  for (const { tree } of trees) {
    for (const e of tree.entries) {
      for (const r of e.chunks) {
        const id = toHex(r.id)
        if (skip?.has(id)) continue
        const use = into.get(id)
        if (use) use.length = Math.max(use.length, r.offset + r.length)
        else into.set(id, { length: r.offset + r.length, stored: 0 })
      }
    }
  }
}

/** A file's content identity without reading it: its inline bytes, or its list of chunk refs. */
function contentKey(e: Tree['entries'][number]): string {
  if (e.size === 0) return 'empty'
  const h = createHash('sha256')
  if (e.inline) return `inline:${h.update(e.inline).digest('hex')}`
  for (const r of e.chunks) {
    const n = Buffer.alloc(24)
    n.writeBigUInt64LE(BigInt(r.offset), 0)
    n.writeBigUInt64LE(BigInt(r.length), 8)
    n.writeBigUInt64LE(BigInt(r.count), 16)
    h.update(r.id).update(n)
  }
  return `chunks:${h.digest('hex')}`
}
