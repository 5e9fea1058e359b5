import path from 'node:path'
import { treeSize } from '../format/tree.js'
import { checkImageLayout } from '../oci/check-layout.js'
import { isImageLayout } from '../oci/image-layout.js'
import { writeTree } from '../store/objects.js'
import { addRevision, type Revision } from '../store/revisions.js'
import { ensureStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { buildSnapshot, type BuildStats } from './build-snapshot.js'
import { scanDirectory } from './scan.js'
import { WorkerPool } from './worker-pool.js'

export interface PushResult {
  id: string
  revision: Revision
  stats: BuildStats
  /** seconds spent in each phase, in order */
  phases: Record<string, number>
}

export interface PushOptions {
  name?: string
  onScanned?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
}

/**
 * Snapshots a directory into a store. Order matters for crash safety: every chunk is written, then
 * flushed, before the tree that names them; the tree before the revision that names it. A push
 * killed at any point leaves only unreferenced objects, which the next push reuses.
 */
export async function push(store: Store, dir: string, options: PushOptions = {}): Promise<PushResult> {
  const phases: Record<string, number> = {}
  let mark = performance.now()
  const phase = (name: string): void => {
    const now = performance.now()
    phases[name] = Math.round(now - mark) / 1000
    mark = now
  }
  // workers start loading while the source is scanned
  const pool = new WorkerPool()
  let built
  try {
    // the whole source is read before the store is touched: a bad DIR writes nothing
    const scanned = await scanDirectory(dir)
    phase('scan')
    // an image layout whose blobs do not match their digests is refused before it could be stored
    if (await isImageLayout(dir)) {
      await checkImageLayout(dir)
      phase('image-check')
    }
    await store.open({ create: true })
    const params = await ensureStoreConfig(store)
    built = await buildSnapshot(scanned, {
      params,
      store,
      pool,
      ...(options.onScanned ? { onScanned: options.onScanned } : {}),
      ...(options.onBytes ? { onBytes: options.onBytes } : {}),
    })
  } finally {
    await pool.close()
  }
  phase('chunks')
  const { tree, stats } = built
  await store.flush()
  phase('flush')
  const id = await writeTree(store, tree)
  await store.flush()
  phase('tree')
  const revision = await addRevision(store, {
    id,
    name: options.name ?? path.basename(path.resolve(dir)),
    size: treeSize(tree),
    source: path.resolve(dir),
  })
  await store.flush()
  phase('revision')
  return { id, revision, stats, phases }
}
