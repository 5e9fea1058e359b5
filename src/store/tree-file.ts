// One small file of a stored snapshot read whole, without pulling the rest: what a view needs to read
// an image's index.json, manifests and config out of the bundle it belongs to.
import { printablePath } from '../format/tree-paths.js'
import { compareBytes, type Tree, type TreeEntry } from '../format/tree.js'
import { toHex } from '../format/id.js'
import { getChunk } from './chunks.js'
import type { ReadStore } from './store.js'
import { SnapdirError } from '../util/errors.js'

/** The entry at `path` (entries are sorted by path bytes), or null; a hardlink gives its target's entry. */
export function findEntry(tree: Tree, path: string | Buffer): TreeEntry | null {
  const want = typeof path === 'string' ? Buffer.from(path) : path
  let lo = 0
  let hi = tree.entries.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const c = compareBytes(tree.entries[mid]!.path, want)
    if (c === 0) {
      const e = tree.entries[mid]!
      return e.type === 'hardlink' ? findEntry(tree, e.target!) : e
    }
    if (c < 0) lo = mid + 1
    else hi = mid
  }
  return null
}

/** The content of a regular file of the tree, each chunk verified; at most `maxBytes`. */
export async function readTreeFile(store: ReadStore, entry: TreeEntry, maxBytes: number): Promise<Buffer> {
  const name = printablePath(entry.path)
  if (entry.type !== 'file') throw new SnapdirError('ERR_TREE_MALFORMED', `${name} is a ${entry.type}, not a file`)
  if (entry.size > maxBytes) throw new SnapdirError('ERR_TREE_MALFORMED', `${name} is ${entry.size} bytes, more than the ${maxBytes} expected at most`)
  if (entry.inline) return entry.inline
  const parts: Buffer[] = []
  for (const ref of entry.chunks) {
    const { raw: chunk } = await getChunk(store, toHex(ref.id), { needs: ref.offset + ref.length })
    const slice = chunk.subarray(ref.offset, ref.offset + ref.length)
    for (let i = 0; i < ref.count; i++) parts.push(slice)
  }
  const data = Buffer.concat(parts)
  if (data.length !== entry.size) throw new SnapdirError('ERR_TREE_MALFORMED', `${name}: its chunks give ${data.length} bytes, the tree says ${entry.size}`)
  return data
}
