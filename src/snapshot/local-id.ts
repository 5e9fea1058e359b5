import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { encodeTree } from '../format/tree.js'
import { buildSnapshot } from './build-snapshot.js'
import { poolFor } from './worker-pool.js'

/** The ID `push` would print for this directory to a store with these chunker parameters. */
export async function localId(dir: string, params: ChunkerParams = DEFAULT_CHUNKER): Promise<string> {
  const pool = poolFor(null) // workers (when there are any) start loading while the directory is scanned
  try {
    const { tree } = await buildSnapshot({ dir }, { params, pool })
    return toHex(hashBytes(encodeTree(tree)))
  } finally {
    await pool.close()
  }
}
