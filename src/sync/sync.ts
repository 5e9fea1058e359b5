import { decodeObject } from '../format/object.js'
import { toHex } from '../format/id.js'
import { decodeTree, treeSize } from '../format/tree.js'
import { isObjectDamage, objectKey } from '../store/objects.js'
import { addRevision, listRevisions } from '../store/revisions.js'
import { ensureStoreConfig, readStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { describeUsers } from '../snapshot/chunk-users.js'

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
  const chunks = [...new Set(tree.entries.flatMap((e) => e.chunks.map((c) => toHex(c.id))))]
  options.onPlan?.(chunks.length + 1)

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
      stored = await from.get(key)
      decodeObject(stored, chunkId, `chunk ${chunkId} from ${from.url}`) // re-hash in transit
    } catch (err) {
      if (isObjectDamage(err)) {
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${err.message}${describeUsers(tree, chunkId)}; nothing naming it was written to ${to.url}`, {
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
  if (dryRun) return summary

  // the destination cuts future pushes as the source does, if it has no config of its own yet
  const params = await readStoreConfig(from)
  if (params) await ensureStoreConfig(to, params)
  await to.flush()
  await to.put(treeKey, treeStored)
  await to.flush()
  const origin = (await listRevisions(from)).filter((r) => r.id === id).at(-1)
  await addRevision(to, {
    id,
    name: origin?.name ?? id.slice(0, 12),
    size: treeSize(tree),
    source: origin?.source ?? from.url,
  })
  await to.flush()
  options.onObject?.()
  return summary
}
