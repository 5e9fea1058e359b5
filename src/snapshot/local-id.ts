import { Chunker } from '../chunk/chunker.js'
import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { encodeTree } from '../format/tree.js'
import { buildSnapshot } from './build-snapshot.js'

/** The ID `push` would print for this directory to a store with these chunker parameters. */
export async function localId(dir: string, params: ChunkerParams = DEFAULT_CHUNKER, onBytes?: (n: number) => void): Promise<string> {
  const opts: Parameters<typeof buildSnapshot>[1] = { chunker: new Chunker(params) }
  if (onBytes) opts.onBytes = onBytes
  const { tree } = await buildSnapshot(dir, opts)
  return toHex(hashBytes(encodeTree(tree)))
}
