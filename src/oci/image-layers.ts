// Layers of an image, stored expanded: every layer the image lists (layout-layers.ts, docker-archive.ts)
// becomes a snapdir tree (layer-expand.ts) in the store, and a small ref names it by the layer's diff_id
// (store/layer-refs.ts).
//
// A layer whose ref already lists its digest is not read again: the ref was written only after a full
// expansion checked that the blob of that digest decompresses to that diff_id and gave that tree.
// Expansion writes chunks only; the trees and refs are written by store/commit.ts (commitLayers gives
// them) after the chunks, each step flushed, so a ref never names a missing tree.
import path from 'node:path'
import type { ChunkerParams } from '../chunk/params.js'
import type { Recipe } from '../format/recipe.js'
import type { CommitLayer } from '../store/commit.js'
import { readLayerRef, type LayerBlobStorage } from '../store/layer-refs.js'
import { encodeRecipeObject, encodeTreeObject, objectKey, type EncodedTree } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError, sourceError } from '../util/errors.js'
import { formatDigest } from './digest.js'
import { expandLayer, type ExpandedLayer, type LayerStats } from './layer-expand.js'
import type { LayoutLayer } from './layout-layers.js'
import { findGzipCompressor, findZstdCompressor, withRestarts } from './compressor-match.js'
import { regenerateBlob } from './recipe-reader.js'

/** How push stored a layer blob: as a recipe (by its ID), or raw with the reason it could not be a recipe. */
export type { LayerBlobStorage } from '../store/layer-refs.js'

/** One layer of ExpandedImageLayers. */
export interface LayerEntry {
  diffId: string
  mediaType: string
  /** where the blob is in the pushed directory */
  file: string
  tree: EncodedTree | null
  treeId: string | null
  /** the recipe to write, when made now */
  recipe: EncodedTree | null
  storage: LayerBlobStorage
}

export interface ExpandedImageLayers {
  /** by digest, in the image's order: the diff_id and, when expanded now, the tree; else the ID of the tree its ref names */
  layers: Map<string, LayerEntry>
  stats: { layers: number; expanded: number; skipped: number; chunksWritten: number; bytesWritten: number; tarBytes: number; recipes: number; raw: number; rawBytes: number }
}

export interface ExpandImageOptions {
  params: ChunkerParams
  signal?: AbortSignal
  /** after each layer, expanded or skipped, with its blob size */
  onLayer?: (bytes: number) => void
  /** how messages name the image; default "OCI image layout DIR" */
  shownAs?: string
  /**
   * the layer's blob as a stream (a registry's), instead of its file in `dir`: read once, its
   * compressor found while it streams (streamed-compressor-match.ts)
   */
  openBlob?: (layer: LayoutLayer) => Promise<AsyncIterable<Buffer>>
  /**
   * with `openBlob`: a local file that holds the layer's blob when the source has one (an upload
   * serve staged), read as a layout's blob file is instead of the stream, and kept unchanged until
   * the expansion returns. The compressor is then found by the search over the file after the
   * expansion, as for a layout: streamed, the candidates encode in step with the expansion, which
   * holds both back (the expansion of a serve push took about twice as long so).
   */
  blobFile?: (layer: LayoutLayer) => Promise<string | null>
  /** layers expanded at once (default 1) */
  concurrency?: number
}

/**
 * Expands the layout's layers into the store (chunks only; see commitLayers).
 * A layer whose blob does not hash to its digest, or whose tar does not hash to the diff_id its image
 * config gives it, is one ERR_SOURCE naming the layer and the manifest.
 */
export async function expandImageLayers(store: Store, dir: string, layers: LayoutLayer[], options: ExpandImageOptions): Promise<ExpandedImageLayers> {
  const out: ExpandedImageLayers = {
    layers: new Map(),
    stats: { layers: layers.length, expanded: 0, skipped: 0, chunksWritten: 0, bytesWritten: 0, tarBytes: 0, recipes: 0, raw: 0, rawBytes: 0 },
  }
  const count = (storage: LayerBlobStorage, size: number): LayerBlobStorage => {
    if ('recipe' in storage) out.stats.recipes++
    else {
      out.stats.raw++
      out.stats.rawBytes += size
    }
    return storage
  }
  const shown = options.shownAs ?? `OCI image layout ${dir}`
  // One at a time by default: expansion is CPU-bound on this thread, and chunk writes already overlap
  // within one. With `concurrency` above 1, one layer's recipe check (regeneration, its compression on
  // the pool's threads) overlaps another's expansion. A failure stops the others (through the signal
  // they are given), and is thrown once they all have ended: nothing is left writing behind it.
  const stop = new AbortController()
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal
  const entries: Array<LayerEntry | undefined> = []
  await forEachLimit(layers.keys(), Math.max(1, options.concurrency ?? 1), async (i) => {
    try {
      entries[i] = await expandOne(layers[i]!)
    } catch (err) {
      stop.abort()
      throw err
    }
    options.onLayer?.(layers[i]!.descriptor.size)
  })
  // in the image's order, whichever ended first
  layers.forEach((layer, i) => out.layers.set(formatDigest(layer.descriptor.digest), entries[i]!))
  return out

  async function expandOne(layer: LayoutLayer): Promise<LayerEntry> {
    const digest = formatDigest(layer.descriptor.digest)
    const use = layer.uses[0]!
    const what = (u: { manifest: string; position: number }): string => `layer ${digest} (layers[${u.position}] of manifest ${u.manifest})`
    const known = await readLayerRef(store, use.diffId)
    // a layer expanded before is skipped when its blob's storage is known too: its recipe (if the store
    // still has it), or why it is raw
    const knownRecipe = known?.recipes?.[digest]
    const knownRaw = known?.raw?.[digest]
    const recipeThere = knownRecipe !== undefined && (await store.has(objectKey('recipe', knownRecipe)))
    if (known !== null && known.digests.includes(digest) && layer.uses.every((u) => u.diffId === use.diffId) && (recipeThere || knownRaw !== undefined)) {
      const storage: LayerBlobStorage = recipeThere ? { recipe: knownRecipe } : { raw: knownRaw! }
      out.stats.skipped++
      return {
        diffId: use.diffId, mediaType: layer.descriptor.mediaType, file: layer.file, tree: null, treeId: known.tree, recipe: null,
        storage: count(storage, layer.descriptor.size),
      }
    }
    // the blob's file: the layout's, one the source has, or none (then it streams)
    const file = options.openBlob ? ((await options.blobFile?.(layer)) ?? null) : path.join(dir, layer.file)
    const streamed = file === null ? { stream: await options.openBlob!(layer), matchCompressor: { size: layer.descriptor.size } } : {}
    const expanded = await expandLayer({
      blob: file ?? path.join(dir, layer.file),
      ...streamed,
      mediaType: layer.descriptor.mediaType,
      params: options.params,
      store,
      name: `${digest} of manifest ${use.manifest} in ${shown}`,
      framing: true,
      signal,
    })
    if (expanded.digest !== digest) {
      throw sourceError(shown, `${what(use)} hashes to ${expanded.digest}, not to its digest (changed since it was checked, or never matched)`, { data: { layout: dir, layer: digest } })
    }
    for (const u of layer.uses) {
      if (u.diffId !== expanded.diffId) {
        throw sourceError(shown, `${what(u)} uncompresses to ${expanded.diffId}, but the image config says its diff_id is ${u.diffId}`, {
          data: { layout: dir, layer: digest, manifest: u.manifest },
        })
      }
    }
    addStats(out.stats, expanded.stats)
    out.stats.expanded++
    const tree = encodeTreeObject(expanded.tree)
    const made = await makeRecipe(store, expanded, tree, file ?? path.join(dir, layer.file), layer.descriptor.size, signal)
    return {
      diffId: expanded.diffId, mediaType: layer.descriptor.mediaType, file: layer.file, tree, treeId: null,
      recipe: made.recipe, storage: count(made.storage, layer.descriptor.size),
    }
  }
}

/**
 * The layer's recipe, once the blob regenerated from it (out of the store's chunks: what a pull would
 * read) hashed to its digest; otherwise the blob stays raw and the reason says why.
 */
async function makeRecipe(
  store: Store, expanded: ExpandedLayer, tree: EncodedTree, blob: string, size: number, signal: AbortSignal | undefined,
): Promise<{ recipe: EncodedTree | null; storage: LayerBlobStorage }> {
  const { framing } = expanded
  if (framing === undefined) return { recipe: null, storage: { raw: `${expanded.compression} compression: snapdir cannot regenerate it yet` } }
  const recipe: Recipe = {
    digest: expanded.digest, size, diffId: expanded.diffId, tarSize: expanded.stats.tarBytes, tree: tree.id,
    framingSize: framing.size, framing: framing.refs, segments: framing.segments, tail: framing.tail, compression: { kind: 'none' },
  }
  try {
    if (expanded.streamed) {
      // found while the blob streamed; checked here out of the store, as a pull would read it
      const { found, restarts } = expanded.streamed
      if ('reason' in found) return { recipe: null, storage: { raw: found.reason } }
      recipe.compression = await withRestarts({ store, recipe, tree: expanded.tree, ...(signal ? { signal } : {}) }, found.compression, restarts)
      // with restart points, withRestarts regenerated the blob through them already
      if (recipe.compression === found.compression) for await (const piece of regenerateBlob({ store, recipe, tree: expanded.tree, ...(signal ? { signal } : {}) })) void piece
    } else if (expanded.compression !== 'none') {
      // the search regenerates the blob (tar out of the store, compressed, compared byte for byte and
      // hashed), so a compressor it finds needs no second check
      const find = expanded.compression === 'gzip' ? findGzipCompressor : findZstdCompressor
      const found = await find({ store, recipe, tree: expanded.tree, blob, ...(signal ? { signal } : {}) })
      if ('reason' in found) return { recipe: null, storage: { raw: found.reason } }
      recipe.compression = found.compression
    } else for await (const piece of regenerateBlob({ store, recipe, tree: expanded.tree, ...(signal ? { signal } : {}) })) void piece
  } catch (err) {
    if (signal?.aborted || !(err instanceof SnapdirError) || err.code !== 'ERR_SNAPSHOT_DAMAGED') throw err
    return { recipe: null, storage: { raw: `regeneration did not match: ${err.message}` } }
  }
  const encoded = encodeRecipeObject(recipe)
  return { recipe: encoded, storage: { recipe: encoded.id } }
}

function addStats(into: ExpandedImageLayers['stats'], s: LayerStats): void {
  into.chunksWritten += s.chunksWritten
  into.bytesWritten += s.bytesWritten
  into.tarBytes += s.tarBytes
}

/**
 * The layers as commitSnapshot (store/commit.ts) writes them, in the crash-safe order: the trees of the
 * layers expanded now, then their refs; a layer skipped (its ref listed its digest) by its tree's ID.
 */
export function commitLayers(expanded: ExpandedImageLayers): CommitLayer[] {
  return [...expanded.layers].map(([digest, layer]) => ({
    digest,
    diffId: layer.diffId,
    tree: layer.tree ?? layer.treeId!,
    storage: layer.storage,
    ...(layer.recipe ? { recipe: layer.recipe } : {}),
    ref: layer.tree === null && layer.recipe === null
      ? null
      : {
          digests: [digest], mediaType: layer.mediaType,
          ...('recipe' in layer.storage ? { recipes: { [digest]: layer.storage.recipe } } : { raw: { [digest]: layer.storage.raw } }),
        },
  }))
}
