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
import type { Tree } from '../format/tree.js'
import type { CommitLayer } from '../store/commit.js'
import { readLayerRef } from '../store/layer-refs.js'
import type { Store } from '../store/store.js'
import { sourceError } from '../util/errors.js'
import { formatDigest } from './digest.js'
import { expandLayer, type LayerStats } from './layer-expand.js'
import type { LayoutLayer } from './layout-layers.js'

export interface ExpandedImageLayers {
  /** by digest: the diff_id and, when expanded now, the tree; else the ID of the tree its ref names */
  layers: Map<string, { diffId: string; mediaType: string; tree: Tree | null; treeId: string | null }>
  stats: { layers: number; expanded: number; skipped: number; chunksWritten: number; bytesWritten: number; tarBytes: number }
}

export interface ExpandImageOptions {
  params: ChunkerParams
  signal?: AbortSignal
  /** after each layer, expanded or skipped, with its blob size */
  onLayer?: (bytes: number) => void
  /** how messages name the image; default "OCI image layout DIR" */
  shownAs?: string
}

/**
 * Expands the layout's layers into the store (chunks only; see commitLayers).
 * A layer whose blob does not hash to its digest, or whose tar does not hash to the diff_id its image
 * config gives it, is one ERR_SOURCE naming the layer and the manifest.
 */
export async function expandImageLayers(store: Store, dir: string, layers: LayoutLayer[], options: ExpandImageOptions): Promise<ExpandedImageLayers> {
  const out: ExpandedImageLayers = { layers: new Map(), stats: { layers: layers.length, expanded: 0, skipped: 0, chunksWritten: 0, bytesWritten: 0, tarBytes: 0 } }
  const shown = options.shownAs ?? `OCI image layout ${dir}`
  // one at a time: expansion is CPU-bound on this thread, and chunk writes already overlap within one
  for (const layer of layers) {
    const digest = formatDigest(layer.descriptor.digest)
    const use = layer.uses[0]!
    const what = (u: { manifest: string; position: number }): string => `layer ${digest} (layers[${u.position}] of manifest ${u.manifest})`
    const known = await readLayerRef(store, use.diffId)
    if (known !== null && known.digests.includes(digest) && layer.uses.every((u) => u.diffId === use.diffId)) {
      out.layers.set(digest, { diffId: use.diffId, mediaType: layer.descriptor.mediaType, tree: null, treeId: known.tree })
      out.stats.skipped++
      options.onLayer?.(layer.descriptor.size)
      continue
    }
    const expanded = await expandLayer({
      blob: path.join(dir, layer.file),
      mediaType: layer.descriptor.mediaType,
      params: options.params,
      store,
      name: `${digest} of manifest ${use.manifest} in ${shown}`,
      ...(options.signal ? { signal: options.signal } : {}),
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
    out.layers.set(digest, { diffId: expanded.diffId, mediaType: layer.descriptor.mediaType, tree: expanded.tree, treeId: null })
    options.onLayer?.(layer.descriptor.size)
  }
  return out
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
    ref: layer.tree === null ? null : { digests: [digest], mediaType: layer.mediaType },
  }))
}
