// What a sync of snapshot `to` would copy into a store that holds snapshot `from` (and nothing else of
// `to`): the objects of `to`'s closure (store/closure.ts, the very list sync walks) that `from`'s
// closure lacks. The second closure is built as sync builds it against such a store: a layer tree or
// a recipe `from` has is taken as complete there and not read, so its chunks count only where sync
// would count them. Bytes are the objects as stored (what travels); refs and the revision are small
// JSON records and, as in sync's summary, not counted.
import { snapshotClosure } from '../store/closure.js'
import { objectKey } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'

export interface ObjectCount {
  objects: number
  bytes: number
}

export interface SyncCost extends ObjectCount {
  chunks: ObjectCount
  treeParts: ObjectCount
  /** tree roots: the snapshot's own and the layer trees `from` lacks */
  trees: ObjectCount
  recipes: ObjectCount
  /** chunks `to` names that the store lacks (a damaged store: sync would fail on them); not in the figures */
  missingChunks: number
}

/** The objects and bytes a sync of `to` moves to a store holding `from`'s closure. */
export async function syncCost(store: Store, from: string, to: string, options: { jobs?: number } = {}): Promise<SyncCost> {
  const zero = (): ObjectCount => ({ objects: 0, bytes: 0 })
  const cost: SyncCost = { objects: 0, bytes: 0, chunks: zero(), treeParts: zero(), trees: zero(), recipes: zero(), missingChunks: 0 }
  // sync finds the tree at the destination and stops: nothing moves
  if (from === to) return cost
  const held = await snapshotClosure(store, from, { files: false, keepTreeObjects: true })
  const trees = new Set(held.trees.map((t) => t.id))
  const parts = new Set(held.trees.flatMap((t) => (t.parts ?? []).map((p) => p.id)))
  const recipes = new Set(held.recipes.map((r) => r.id))
  const needed = await snapshotClosure(store, to, {
    files: false,
    keepTreeObjects: true,
    skipTree: (id) => Promise.resolve(trees.has(id)),
    skipRecipe: (id) => Promise.resolve(recipes.has(id)),
  })
  const add = (c: ObjectCount, bytes: number): void => {
    c.objects++
    c.bytes += bytes
  }
  const newChunks = [...needed.chunks.keys()].filter((id) => !held.chunks.has(id))
  await forEachLimit(newChunks, options.jobs ?? 16, async (id) => {
    const size = await store.size(objectKey('chunk', id))
    if (size === null) cost.missingChunks++
    else add(cost.chunks, size)
  })
  const [own, ...layerTrees] = needed.trees
  const copied = [own!, ...layerTrees.filter((t) => t.state === 'read')]
  const seen = new Set<string>()
  for (const p of copied.flatMap((t) => t.parts ?? [])) {
    if (parts.has(p.id) || seen.has(p.id)) continue
    seen.add(p.id)
    add(cost.treeParts, p.object.length)
  }
  for (const t of copied) add(cost.trees, t.object!.length)
  for (const r of needed.recipes) if (r.state === 'read') add(cost.recipes, r.object!.length)
  for (const c of [cost.chunks, cost.treeParts, cost.trees, cost.recipes]) {
    cost.objects += c.objects
    cost.bytes += c.bytes
  }
  return cost
}
