// `snapdir rm`: removes the revisions of snapshots, and nothing else. What they needed stays until a
// gc finds nothing else needs it (store/gc.ts); a layer ref names a tree, not a revision, so it stays
// too, and goes at that gc if no other revision lists its layer.
import { SnapdirError } from '../util/errors.js'
import { listRevisionRecords, type Revision, type SkippedRevision } from './revisions.js'
import type { SweepStore } from './store.js'

export interface RemovedRevisions {
  /** the records removed, oldest first */
  removed: Array<{ key: string; revision: Revision }>
}

/**
 * Removes every revision record of each snapshot in `ids`. An ID no revision names is ERR_BAD_ID
 * (exit 2), before anything is removed.
 */
export async function removeRevisions(store: SweepStore, ids: string[], options: { onSkip?: SkippedRevision } = {}): Promise<RemovedRevisions> {
  await store.open()
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
  return { removed }
}
