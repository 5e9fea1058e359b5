import { hashBytes } from '../chunk/hash.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunk/params.js'
import { toHex } from '../format/id.js'
import { encodeTree } from '../format/tree.js'
import { buildSnapshot } from './build-snapshot.js'
import { scanDirectory } from './scan.js'

/** The ID `push` would print for this directory to a store with these chunker parameters. */
export async function localId(dir: string, params: ChunkerParams = DEFAULT_CHUNKER, onBytes?: (n: number) => void): Promise<string> {
  const opts: Parameters<typeof buildSnapshot>[1] = { params }
  if (onBytes) opts.onBytes = onBytes
  const { tree } = await buildSnapshot(await scanDirectory(dir), opts)
  return toHex(hashBytes(encodeTree(tree)))
}
