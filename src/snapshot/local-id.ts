import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { TreeEncoder } from '../format/tree.js'
import { buildSnapshot } from '../ingest/build-snapshot.js'
import { poolFor } from '../ingest/worker-pool.js'

/** The ID `push` would print for this directory to a store with these chunker parameters. */
export async function localId(dir: string, params: ChunkerParams = DEFAULT_CHUNKER): Promise<string> {
  const pool = poolFor(null) // workers (when there are any) start loading while the directory is scanned
  try {
    const encoder = new TreeEncoder() // entries are encoded as their files are cut (see push)
    const { tree } = await buildSnapshot({ dir }, { params, pool, encoder })
    return toHex(hashBytes(encoder.encode(tree).root))
  } finally {
    await pool.close()
  }
}
