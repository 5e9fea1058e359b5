import { checkStoreFormat } from '../store/store-config.js'
import { getChunk } from '../store/chunks.js'
import { snapshotClosure, type ClosureDamage } from '../store/closure.js'
import { isObjectDamage } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { regenerateBlob } from '../oci/recipe-reader.js'

export interface DamagedChunk {
  id: string
  problem: 'missing' | 'corrupt'
  detail: string
  /** the files of the snapshot's own tree using it */
  files: string[]
  /** the expanded layers using it, with their files using it */
  layers: Array<{ diffId: string; digest: string; tree: string; files: string[] }>
}

/** A layer's tree or ref the snapshot needs, missing or damaged. */
export interface DamagedLayerObject {
  diffId: string
  digest: string
  object: 'tree' | 'ref' | 'recipe'
  /** the store key: trees/…/<id>, refs/layers/<hex> or recipes/…/<id> */
  key: string
  problem: ClosureDamage['problem']
  detail: string
}

export interface VerifyResult {
  id: string
  /** the expanded layers checked with it (an image's; 0 for a plain directory) */
  layers: number
  /** the chunks of the snapshot's tree and of its layers' trees, each once */
  chunksChecked: number
  bytesChecked: number
  damaged: DamagedChunk[]
  damagedLayers: DamagedLayerObject[]
  /** layer blobs stored as recipes, each regenerated whole and hashed against its digest */
  blobsChecked: number
  /** those that did not give back their blob (a chunk under them damaged, or a mismatch) */
  damagedBlobs: Array<{ file: string; recipe: string; digest: string; diffId: string; detail: string }>
}

export interface VerifyOptions {
  /** once the closure is listed: how many chunks will be checked */
  onPlan?: (chunks: number) => void
  onChunk?: () => void
}

/**
 * Re-reads and re-hashes every object a snapshot needs (store/closure.ts: its tree and, for an image,
 * each expanded layer's ref, tree and chunks, which the rootfs and layers views read), and names the
 * files, and the layer, any damage touches.
 */
export async function verify(store: Store, id: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  await store.open()
  await checkStoreFormat(store)
  // without the files using each chunk: for a tree of many small files that is every path again, as
  // a string; they are looked up below only for chunks found damaged
  const closure = await snapshotClosure(store, id, { files: false })
  options.onPlan?.(closure.chunks.size)
  const result: VerifyResult = {
    id,
    layers: new Set(closure.layers.map((l) => l.diffId)).size,
    chunksChecked: 0,
    bytesChecked: 0,
    damaged: [],
    damagedLayers: closure.damage.map((d) => ({ diffId: d.layer.diffId, digest: d.layer.digest, object: d.object, key: d.key, problem: d.problem, detail: d.detail })),
    blobsChecked: 0,
    damagedBlobs: [],
  }
  await forEachLimit(closure.chunks.values(), 16, async (chunk) => {
    try {
      const { raw } = await getChunk(store, chunk.id, { needs: chunk.needs })
      result.bytesChecked += raw.length
    } catch (err) {
      if (!isObjectDamage(err)) throw err
      result.damaged.push({ id: chunk.id, problem: err.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt', detail: err.message, files: [], layers: [] })
    }
    result.chunksChecked++
    options.onChunk?.()
  })
  result.damaged.sort((a, b) => a.id.localeCompare(b.id))
  if (result.damaged.length > 0) {
    // the trees read again, now naming the files of each chunk (the closure is the same: nothing changed)
    const named = await snapshotClosure(store, id)
    for (const d of result.damaged) {
      const users = named.chunks.get(d.id)?.users ?? []
      d.files = users.filter((u) => u.layer === null).flatMap((u) => u.files)
      d.layers = users.flatMap((u) => (u.layer === null ? [] : [{ diffId: u.layer.diffId, digest: u.layer.digest, tree: u.tree, files: u.files }]))
    }
  }
  // a blob stored as a recipe is checked as a pull would read it: regenerated and hashed whole
  for (const r of closure.recipes) {
    if (r.recipe === null) continue
    try {
      for await (const piece of regenerateBlob({ store, recipe: r.recipe })) void piece
    } catch (err) {
      if (!(err instanceof SnapdirError) || err.code !== 'ERR_SNAPSHOT_DAMAGED') throw err
      result.damagedBlobs.push({ file: r.file, recipe: r.id, digest: r.recipe.digest, diffId: r.recipe.diffId, detail: err.message })
    }
    result.blobsChecked++
  }
  return result
}
