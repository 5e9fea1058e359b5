import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { buildSnapshot } from '../ingest/build-snapshot.js'
import { poolFor } from '../ingest/worker-pool.js'
import { openSource } from '../oci/image-source.js'
import type { Platform } from '../oci/platform.js'
import { FileStore } from '../store/file-store.js'
import { ensureStoreConfig } from '../store/store-config.js'
import { push } from './push.js'

export interface LocalIdOptions {
  /** the chunker parameters of the store the ID is for (default: those every new store gets) */
  params?: ChunkerParams
  /** for an image: keep only these platforms of its multi-platform indexes, as push --platform does */
  platforms?: Platform[]
}

/**
 * The ID `push` would print for `source` (a directory, an image layout, or an archive of either) to a
 * store with these chunker parameters. A plain directory is cut as push cuts it, storing nothing.
 *
 * An image goes through push itself, onto a scratch store deleted afterwards: its tree names the
 * recipes its layer blobs become, and whether a blob becomes one (and which, with which restart
 * points) is known only once the layer is expanded and its blob regenerated, compressed and compared
 * out of the store, every framing and content chunk read back as a pull would read it
 * (oci/image-layers.ts makeRecipe). So the chunks are needed, and they are kept where push keeps them:
 * in files, a file store in a temporary directory (under TMPDIR), never synced, so memory stays what
 * push's is (a store in memory held them all: 365 MB of peak RSS for the python image, 78 MB of
 * layers). Same code, same kind of store as `push --store DIR`: the same ID.
 */
export async function localId(source: string, options: LocalIdOptions = {}): Promise<string> {
  const params = options.params ?? DEFAULT_CHUNKER
  const opened = await openSource(source, options.platforms ? { platforms: options.platforms } : {})
  if (opened.layers !== null) {
    let scratch: string | null = null
    try {
      scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'snapdir-id-'))
      const dir = path.join(scratch, 'store')
      const store = new FileStore(dir, dir, { writeback: false, durable: false })
      try {
        await store.open({ create: true })
        await ensureStoreConfig(store, params)
        // push removes what opening made
        return (await push(store, source, { opened, pool: poolFor(store) })).id
      } finally {
        await store.close()
      }
    } finally {
      await opened.remove()
      if (scratch !== null) await fs.rm(scratch, { recursive: true, force: true })
    }
  }
  const pool = poolFor(null)
  try {
    // entries are encoded as their files are cut (see push)
    const { tree } = await buildSnapshot({ dir: opened.dir }, { params, pool })
    return toHex(hashBytes(tree.encode().root))
  } finally {
    await pool.close()
    await opened.remove()
  }
}
