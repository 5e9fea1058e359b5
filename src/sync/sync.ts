import { decodeObject } from '../format/object.js'
import { toHex } from '../format/id.js'
import { decodeTree, treeSize } from '../format/tree.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, objectKey } from '../store/objects.js'
import { addRevision, listRevisions } from '../store/revisions.js'
import { ensureStoreConfig, readStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { describeUsers } from '../snapshot/chunk-users.js'
import { readLayerRef, writeLayerRef, type LayerRef } from '../store/layer-refs.js'
import type { Tree } from '../format/tree.js'

export interface SyncOptions {
  /** objects checked or copied at once */
  jobs?: number
  /** only count what would move; write nothing */
  dryRun?: boolean
  onPlan?: (objects: number) => void
  onObject?: () => void
}

export interface SyncSummary {
  id: string
  dryRun: boolean
  /** the destination already held the tree, so the snapshot was complete there */
  alreadyComplete: boolean
  objects: { checked: number; copied: number; skipped: number }
  bytes: { copied: number; skipped: number }
}

/**
 * Copies a snapshot from one store to another without staging it locally. Objects stream one by one
 * (at most `jobs` in memory), each re-hashed in transit and stored as the source had it (no
 * recompression); the tree and the revision are written only after every chunk is there, so a tree
 * at the destination proves the snapshot complete, and syncing a complete snapshot costs one request.
 *
 * The snapshot of an OCI image layout brings its expanded layers along (the layers its revision
 * lists): their chunks with the bundle's, then the layer trees, then the layer refs (merged into the
 * destination's), then the bundle tree and the revision, each step flushed, as push orders them.
 */
export async function sync(from: Store, to: Store, id: string, options: SyncOptions = {}): Promise<SyncSummary> {
  const dryRun = options.dryRun ?? false
  const summary: SyncSummary = { id, dryRun, alreadyComplete: false, objects: { checked: 0, copied: 0, skipped: 0 }, bytes: { copied: 0, skipped: 0 } }
  await from.open()
  // First, and alone: a tree at the destination proves the snapshot complete there, so a re-sync of
  // a complete snapshot costs this one request.
  const treeKey = objectKey('tree', id)
  const treeThere = await to.size(treeKey)
  if (treeThere !== null) {
    summary.alreadyComplete = true
    summary.objects.checked = 1
    summary.objects.skipped = 1
    summary.bytes.skipped = treeThere
    return summary
  }
  await to.open({ create: !dryRun }).catch((err: unknown) => {
    // a dry run against a destination that does not exist yet: everything would move
    if (!(dryRun && err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND')) throw err
  })

  let treeStored: Buffer
  try {
    treeStored = await from.get(treeKey)
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') {
      throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${from.url}`, { data: { id, store: from.url } })
    }
    throw err
  }
  const tree = decodeTree(decodeObject(treeStored, id, `tree ${id} from ${from.url}`), `snapshot ${id} in ${from.url}`)
  const origin = (await listRevisions(from)).filter((r) => r.id === id).at(-1)
  const layers = await layersToCopy(from, to, origin?.image?.layers ?? [])
  const layerTrees = layers.flatMap((l) => (l.tree && l.stored ? [{ id: l.id, tree: l.tree, stored: l.stored }] : []))
  // the bundle's tree first: damage is reported against the first tree that uses the chunk
  const trees = [tree, ...layerTrees.map((l) => l.tree)]
  const chunks = [...new Set(trees.flatMap((t) => t.entries.flatMap((e) => e.chunks.map((c) => toHex(c.id)))))]
  options.onPlan?.(chunks.length + 1 + layerTrees.length)

  await forEachLimit(chunks, options.jobs ?? 16, async (chunkId) => {
    const key = objectKey('chunk', chunkId)
    summary.objects.checked++
    const there = await to.size(key)
    if (there !== null) {
      summary.objects.skipped++
      summary.bytes.skipped += there
      options.onObject?.()
      return
    }
    let stored: Buffer
    try {
      ;({ stored } = await getChunk(from, chunkId)) // re-hashed in transit, copied as stored
    } catch (err) {
      if (isObjectDamage(err)) {
        const users = trees.map((t) => describeUsers(t, chunkId)).find((d) => d !== '') ?? ''
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${err.message}${users}; nothing naming it was written to ${to.url}`, {
          cause: err,
          data: { chunk: chunkId },
        })
      }
      throw err
    }
    if (!dryRun) await to.put(key, stored)
    summary.objects.copied++
    summary.bytes.copied += stored.length
    options.onObject?.()
  })

  summary.objects.checked++ // the tree
  summary.objects.copied++
  summary.bytes.copied += treeStored.length
  for (const layer of layerTrees) {
    summary.objects.checked++
    summary.objects.copied++
    summary.bytes.copied += layer.stored.length
  }
  if (dryRun) return summary

  // the destination cuts future pushes as the source does, if it has no config of its own yet
  const params = await readStoreConfig(from)
  if (params) await ensureStoreConfig(to, params)
  await to.flush()
  if (layers.length > 0) {
    for (const layer of layerTrees) {
      await to.put(objectKey('tree', layer.id), layer.stored)
      options.onObject?.()
    }
    await to.flush()
    for (const layer of layers) if (layer.ref !== null) await writeLayerRef(to, layer.ref)
    await to.flush()
  }
  await to.put(treeKey, treeStored)
  await to.flush()
  await addRevision(to, {
    id,
    name: origin?.name ?? id.slice(0, 12),
    size: treeSize(tree),
    source: origin?.source ?? from.url,
    ...(origin?.image ? { image: origin.image } : {}),
  })
  await to.flush()
  options.onObject?.()
  return summary
}

interface LayerToCopy {
  id: string
  /** the tree object and its decoded tree; null when the destination has the tree already */
  stored: Buffer | null
  tree: Tree | null
  /** the source's ref, with the revision's digest in it; null when the source has none naming this tree */
  ref: LayerRef | null
}

/**
 * The expanded layers of an image snapshot, with the trees the destination lacks read from the source
 * (a layer tree there is complete, as a snapshot tree is). A layer tree the source lacks is damage.
 */
async function layersToCopy(from: Store, to: Store, layers: Array<{ digest: string; diffId: string; tree: string }>): Promise<LayerToCopy[]> {
  const out: LayerToCopy[] = []
  const seen = new Set<string>()
  for (const layer of layers) {
    if (seen.has(layer.tree)) continue
    seen.add(layer.tree)
    const key = objectKey('tree', layer.tree)
    const there = await to.has(key).catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return false
      throw err
    })
    const source = await readLayerRef(from, layer.diffId)
    const ref = source !== null && source.tree === layer.tree ? { ...source, digests: [...new Set([...source.digests, layer.digest])].sort() } : null
    // the tree there is complete, but a sync killed before its refs may have left the ref out
    if (there) {
      out.push({ id: layer.tree, stored: null, tree: null, ref })
      continue
    }
    let stored: Buffer
    let tree: Tree
    try {
      stored = await from.get(key)
      tree = decodeTree(decodeObject(stored, layer.tree, `layer tree ${layer.tree} from ${from.url}`), `layer ${layer.digest} in ${from.url}`)
    } catch (err) {
      if (isObjectDamage(err)) {
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${err.message} (the expanded layer ${layer.digest}); nothing naming it was written to the destination`, { cause: err })
      }
      throw err
    }
    out.push({ id: layer.tree, stored, tree, ref })
  }
  return out
}
