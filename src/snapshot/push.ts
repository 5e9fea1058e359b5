import path from 'node:path'
import { Chunker } from '../chunk/chunker.js'
import { encodeObject } from '../format/object.js'
import { treeSize } from '../format/tree.js'
import { objectKey, writeTree } from '../store/objects.js'
import { addRevision, type Revision } from '../store/revisions.js'
import { ensureStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { TaskWindow } from '../util/concurrency.js'
import { buildSnapshot, type BuildStats, type ChunkSink } from './build-snapshot.js'

export interface PushResult {
  id: string
  revision: Revision
  stats: BuildStats & { chunksWritten: number; bytesWritten: number }
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
  await store.open({ create: true })
  const params = await ensureStoreConfig(store)
  const chunker = new Chunker(params)
  let chunksWritten = 0
  let bytesWritten = 0
  // Bounded: at most this many chunks are being checked, compressed or written at once.
  const window = new TaskWindow(32)
  const sink: ChunkSink = {
    accept: (id, data) =>
      window.add(async () => {
        const key = objectKey('chunk', id)
        if (await store.has(key)) return
        const encoded = await encodeObject(data)
        await store.put(key, encoded)
        chunksWritten++
        bytesWritten += encoded.length
      }),
    drain: () => window.drain(),
  }
  const build: Parameters<typeof buildSnapshot>[1] = { chunker, sink }
  if (options.onScanned) build.onScanned = options.onScanned
  if (options.onBytes) build.onBytes = options.onBytes
  const { tree, stats } = await buildSnapshot(dir, build)
  await store.flush()
  const id = await writeTree(store, tree)
  await store.flush()
  const revision = await addRevision(store, {
    id,
    name: options.name ?? path.basename(path.resolve(dir)),
    size: treeSize(tree),
    source: path.resolve(dir),
  })
  await store.flush()
  return { id, revision, stats: { ...stats, chunksWritten, bytesWritten } }
}
