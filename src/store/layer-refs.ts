// Expanded image layers are named by their diff_id: a small mutable ref per layer,
//
//   refs/layers/<diff_id hex>   JSON {"diffId", "digests": [...], "mediaType", "tree"}
//
// written only after the tree it names is stored and flushed (oci/image-layers.ts expands layers; the
// commit order is in commit.ts).
import { SnapdirError } from '../util/errors.js'
import type { ReadStore, Store } from './store.js'

export const LAYER_REFS = 'refs/layers/'

/** What refs/layers/<diff_id hex> holds. */
export interface LayerRef {
  diffId: string
  /** the blobs (compressed or not) known to expand to this diff_id's tree */
  digests: string[]
  mediaType: string
  tree: string
  /** blobs of `digests` stored as recipes (format/recipe.ts): digest -> recipe ID */
  recipes?: Record<string, string>
  /** blobs of `digests` stored raw: digest -> why (so a later push of the blob need not try again) */
  raw?: Record<string, string>
}

/** How push stored a layer blob: as a recipe (by its ID), or raw with the reason it could not be a recipe. */
export type LayerBlobStorage = { recipe: string } | { raw: string }

/** One layer of an image push, as the revision lists it. */
export interface ImageLayer {
  digest: string
  diffId: string
  tree: string
  /** the blob's recipe, when stored as one (absent in revisions written before recipes) */
  recipe?: string
  /** why the blob is stored raw */
  raw?: string
}

export function layerRefKey(diffId: string): string {
  const hex = /^sha256:([0-9a-f]{64})$/.exec(diffId)?.[1]
  if (hex === undefined) throw new SnapdirError('ERR_SOURCE', `diff_id ${JSON.stringify(diffId)} is not a sha256 digest`)
  return `${LAYER_REFS}${hex}`
}

export async function readLayerRef(store: ReadStore, diffId: string): Promise<LayerRef | null> {
  let raw: Buffer
  try {
    raw = await store.get(layerRefKey(diffId))
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') return null
    throw err
  }
  try {
    const ref = JSON.parse(raw.toString('utf8')) as LayerRef
    if (typeof ref.tree === 'string' && Array.isArray(ref.digests)) return ref
  } catch {
    // reported below
  }
  throw new SnapdirError('ERR_OBJECT_CORRUPT', `store ${store.url}: layer ref ${layerRefKey(diffId)} is not a layer ref (JSON with tree and digests)`, { data: { key: layerRefKey(diffId) } })
}

/**
 * Writes (or extends) a layer's ref; the tree must be stored and flushed already. Read-modify-write:
 * two pushes racing on the same diff_id each write a complete ref naming the same tree (one tree per
 * diff_id: expansion is deterministic), so the worst a race does is drop the other push's digest,
 * which only costs a re-expansion of that blob on a later push.
 */
export async function writeLayerRef(store: Store, ref: LayerRef): Promise<void> {
  const existing = await readLayerRef(store, ref.diffId)
  let record = ref
  if (existing !== null) {
    const digests = [...new Set([...existing.digests, ...ref.digests])].sort()
    const recipes = { ...existing.recipes, ...ref.recipes }
    // a blob now a recipe is no longer raw
    const raw = Object.fromEntries(Object.entries({ ...existing.raw, ...ref.raw }).filter(([d]) => recipes[d] === undefined))
    const same = (a: Record<string, string>, b: Record<string, string> | undefined): boolean =>
      Object.keys(a).length === Object.keys(b ?? {}).length && Object.entries(a).every(([d, r]) => b?.[d] === r)
    if (existing.tree === ref.tree && digests.length === existing.digests.length && same(recipes, existing.recipes) && same(raw, existing.raw)) return
    record = {
      diffId: ref.diffId, digests, mediaType: existing.mediaType, tree: ref.tree,
      ...(Object.keys(recipes).length > 0 ? { recipes: sortKeys(recipes) } : {}), ...(Object.keys(raw).length > 0 ? { raw: sortKeys(raw) } : {}),
    }
  }
  await store.put(layerRefKey(ref.diffId), Buffer.from(JSON.stringify(record) + '\n'))
}

function sortKeys(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : 1)))
}
