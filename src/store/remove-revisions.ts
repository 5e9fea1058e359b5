// `snapdir rm`: removes the revisions of snapshots, the image names and tags that name them (first:
// referrers go before what they name), and the root object of each snapshot no revision names any
// more. `rm --image NAME:TAG` removes that tag; a snapshot no other tag names goes with it, as docker
// rmi removes an image with its last tag, while one another tag still names only loses the tag. What they needed stays until a gc finds nothing else needs it (store/gc.ts); a layer
// ref names a tree, not a revision, so it stays too, and goes at that gc if no other revision lists its
// layer.
//
// Why the root goes at once: a snapshot's tree at a destination tells sync the snapshot is complete
// there (one request, and no revision written), so a sync of a removed snapshot back into this store
// before the next gc would add no revision, and that gc would then take the snapshot it had just been
// told was there. Without its root the sync copies the root (its parts and chunks are still there and
// cost a check each) and writes the revision.
import { SnapdirError } from '../util/errors.js'
import { formatImageName, type ImageName } from '../format/image-name.js'
import { listImageNames, removeImageNames, type ImageNameRecord } from './image-names.js'
import { LAYER_REFS, readLayerRef } from './layer-refs.js'
import { isObjectDamage, objectKey } from './objects.js'
import { listRevisionRecords, type Revision, type SkippedRevision } from './revisions.js'
import type { SweepStore } from './store.js'
import { acquireGcLease, type LeaseOptions } from './write-lease.js'

export interface RemovedRevisions {
  /** the image names and tags removed */
  untagged: ImageNameRecord[]
  /** the records removed, oldest first */
  removed: Array<{ key: string; revision: Revision }>
  /** the snapshots whose root object went with their last revision */
  roots: string[]
}

export interface RemoveOptions {
  /** tags to remove (rm --image): with the snapshot each names, unless another tag names it too */
  images?: ImageName[]
  onSkip?: SkippedRevision
  lease?: LeaseOptions
}

/**
 * Removes every revision record of each snapshot in `ids`, and every name and tag naming one; and
 * each tag of `options.images`, with its snapshot when no other tag names it. An ID no revision names,
 * or a tag the store does not record, is ERR_BAD_ID (exit 2), before anything is removed.
 */
export async function removeRevisions(store: SweepStore, ids: string[], options: RemoveOptions = {}): Promise<RemovedRevisions> {
  await store.open()
  // as gc does: no push or sync is between its look at a root and its revision while roots go
  const lease = await acquireGcLease(store, options.lease)
  try {
    const records = await listRevisionRecords(store, options.onSkip)
    const names = await listImageNames(store, options.onSkip)
    const wanted = new Set(ids)
    const unknown = [...wanted].filter((id) => !records.some((r) => r.revision.id === id))
    if (unknown.length > 0) {
      const list = unknown.join(', ')
      throw new SnapdirError('ERR_BAD_ID', `no revision of ${unknown.length === 1 ? 'snapshot' : 'snapshots'} ${list} in ${store.url} (snapdir revisions lists them)`, {
        data: { ids: unknown, store: store.url },
      })
    }
    const key = (n: ImageName): string => formatImageName(n)
    const untag = new Map<string, ImageNameRecord>()
    for (const n of options.images ?? []) {
      const record = names.find((r) => key(r) === key(n))
      if (record === undefined) {
        throw new SnapdirError('ERR_BAD_ID', `no image ${key(n)} in ${store.url} (snapdir revisions lists the names it records)`, { data: { image: key(n), store: store.url } })
      }
      untag.set(key(n), record)
    }
    // a tag's snapshot goes with its last tag
    for (const r of [...untag.values()]) {
      if (!names.some((o) => o.id === r.id && !untag.has(key(o)))) wanted.add(r.id)
    }
    for (const r of names) if (wanted.has(r.id)) untag.set(key(r), r)
    const untagged = [...untag.values()]
    if (untagged.length > 0) {
      await removeImageNames(store, untagged)
      await store.flush()
    }
    const removed = records.filter((r) => wanted.has(r.revision.id))
    await store.deleteMany(removed.map((r) => r.key))
    await store.flush()
    // a root still named by another revision, a remaining tag, or the tree of an expanded layer, stays
    const named = new Set(records.filter((r) => !wanted.has(r.revision.id)).map((r) => r.revision.id))
    for (const r of names) if (!untag.has(key(r))) named.add(r.id)
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
    return { untagged, removed, roots }
  } finally {
    await lease.release()
  }
}
