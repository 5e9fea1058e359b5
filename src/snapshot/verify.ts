import { getChunk } from '../store/chunks.js'
import { snapshotClosure, type ClosureDamage } from '../store/closure.js'
import { isObjectDamage } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'

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
  object: 'tree' | 'ref'
  /** the store key: trees/…/<id> or refs/layers/<hex> */
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
  const closure = await snapshotClosure(store, id)
  options.onPlan?.(closure.chunks.size)
  const result: VerifyResult = {
    id,
    layers: new Set(closure.layers.map((l) => l.diffId)).size,
    chunksChecked: 0,
    bytesChecked: 0,
    damaged: [],
    damagedLayers: closure.damage.map((d) => ({ diffId: d.layer.diffId, digest: d.layer.digest, object: d.object, key: d.key, problem: d.problem, detail: d.detail })),
  }
  await forEachLimit(closure.chunks.values(), 16, async (chunk) => {
    try {
      const { raw } = await getChunk(store, chunk.id, { needs: chunk.needs })
      result.bytesChecked += raw.length
    } catch (err) {
      if (!isObjectDamage(err)) throw err
      result.damaged.push({
        id: chunk.id,
        problem: err.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt',
        detail: err.message,
        files: chunk.users.filter((u) => u.layer === null).flatMap((u) => u.files),
        layers: chunk.users.flatMap((u) => (u.layer === null ? [] : [{ diffId: u.layer.diffId, digest: u.layer.digest, tree: u.tree, files: u.files }])),
      })
    }
    result.chunksChecked++
    options.onChunk?.()
  })
  result.damaged.sort((a, b) => a.id.localeCompare(b.id))
  return result
}
