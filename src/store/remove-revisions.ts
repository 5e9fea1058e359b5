// `snapdir rm`: removes the revisions of snapshots, and the root object of each snapshot no revision
// names any more. What they needed stays until a gc finds nothing else needs it (store/gc.ts); a layer
// ref names a tree, not a revision, so it stays too, and goes at that gc if no other revision lists its
// layer.
//
// Why the root goes at once: a snapshot's tree at a destination tells sync the snapshot is complete
// there (one request, and no revision written), so a sync of a removed snapshot back into this store
// before the next gc would add no revision, and that gc would then take the snapshot it had just been
// told was there. Without its root the sync copies the root (its parts and chunks are still there and
// cost a check each) and writes the revision.
import { SnapdirError } from '../util/errors.js'
import { LAYER_REFS, readLayerRef } from './layer-refs.js'
import { isObjectDamage, objectKey } from './objects.js'
import { listRevisionRecords, type Revision, type SkippedRevision } from './revisions.js'
import type { SweepStore } from './store.js'
import { acquireGcLease, type LeaseOptions } from './write-lease.js'

export interface RemovedRevisions {
  /** the records removed, oldest first */
  removed: Array<{ key: string; revision: Revision }>
  /** the snapshots whose root object went with their last revision */
  roots: string[]
}

/**
 * Removes every revision record of each snapshot in `ids`. An ID no revision names is ERR_BAD_ID
 * (exit 2), before anything is removed.
 */
export async function removeRevisions(store: SweepStore, ids: string[], options: { onSkip?: SkippedRevision; lease?: LeaseOptions } = {}): Promise<RemovedRevisions> {
  await store.open()
  // as gc does: no push or sync is between its look at a root and its revision while roots go
  const lease = await acquireGcLease(store, options.lease)
  try {
    const records = await listRevisionRecords(store, options.onSkip)
    const wanted = new Set(ids)
    const unknown = [...wanted].filter((id) => !records.some((r) => r.revision.id === id))
    if (unknown.length > 0) {
      const list = unknown.join(', ')
      throw new SnapdirError('ERR_BAD_ID', `no revision of ${unknown.length === 1 ? 'snapshot' : 'snapshots'} ${list} in ${store.url} (snapdir revisions lists them)`, {
        data: { ids: unknown, store: store.url },
      })
    }
    const removed = records.filter((r) => wanted.has(r.revision.id))
    await store.deleteMany(removed.map((r) => r.key))
    await store.flush()
    // a root still named by another revision, or the tree of an expanded layer, stays
    const named = new Set(records.filter((r) => !wanted.has(r.revision.id)).map((r) => r.revision.id))
    for await (const key of store.list(LAYER_REFS)) {
      // a malformed ref names nothing; a store that fails stops rm before any root goes
      const ref = await readLayerRef(store, `sha256:${key.slice(LAYER_REFS.length)}`).catch((err: unknown) => {
        if (isObjectDamage(err)) return null
        throw err
      })
      if (ref !== null) named.add(ref.tree)
    }
    const roots = [...wanted].filter((id) => !named.has(id))
    await store.deleteMany(roots.map((id) => objectKey('tree', id)))
    await store.flush()
    return { removed, roots }
  } finally {
    await lease.release()
  }
}
