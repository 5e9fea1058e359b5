import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { TreeEncoder } from '../format/tree.js'
import { buildSnapshot } from '../ingest/build-snapshot.js'
import { poolFor, WorkerPool } from '../ingest/worker-pool.js'
import { openSource } from '../oci/image-source.js'
import { MemoryStore } from '../store/memory-store.js'
import { ensureStoreConfig } from '../store/store-config.js'
import { push } from './push.js'

/**
 * The ID `push` would print for `source` (a directory, an image layout, or an archive of either) to a
 * store with these chunker parameters. A plain directory is cut as push cuts it, storing nothing. An
 * image goes through push itself, onto a store in memory dropped afterwards: its tree names the
 * recipes its layer blobs become, and whether a blob becomes one (and which) is known only once the
 * layer is expanded and the blob regenerated out of a store. The store holds the image's chunks
 * (compressed) until the ID is known: memory of about half the image's expanded size.
 */
export async function localId(source: string, params: ChunkerParams = DEFAULT_CHUNKER): Promise<string> {
  const opened = await openSource(source)
  if (opened.layers !== null) {
    const store = new MemoryStore('id')
    try {
      await store.open({ create: true })
      await ensureStoreConfig(store, params)
      // pool: this thread cuts the bundle's files (the workers open stores by URL, which a store in
      // memory has not); push removes what opening made
      return (await push(store, source, { opened, pool: new WorkerPool(0) })).id
    } finally {
      await store.close()
    }
  }
  const pool = poolFor(null)
  try {
    const encoder = new TreeEncoder() // entries are encoded as their files are cut (see push)
    const { tree } = await buildSnapshot({ dir: opened.dir }, { params, pool, encoder })
    return toHex(hashBytes(encoder.encode(tree).root))
  } finally {
    await pool.close()
    await opened.remove()
  }
}
