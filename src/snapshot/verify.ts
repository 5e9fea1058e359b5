import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import type { Tree } from '../format/tree.js'
import { readObject, readTree } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

export interface DamagedChunk {
  id: string
  problem: 'missing' | 'corrupt'
  detail: string
  files: string[]
}

export interface VerifyResult {
  id: string
  chunksChecked: number
  bytesChecked: number
  damaged: DamagedChunk[]
}

export interface VerifyOptions {
  onTree?: (chunks: number) => void
  onChunk?: () => void
}

/** Re-reads and re-hashes every object a snapshot needs, and names the files any damage touches. */
export async function verify(store: Store, id: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  await store.open()
  const tree = await readTree(store, id)
  const users = chunkUsers(tree)
  options.onTree?.(users.size)
  const result: VerifyResult = { id, chunksChecked: 0, bytesChecked: 0, damaged: [] }
  await forEachLimit(users.entries(), 16, async ([chunkId, files]) => {
    try {
      const raw = await readObject(store, 'chunk', chunkId)
      result.bytesChecked += raw.length
    } catch (err) {
      if (!(err instanceof SnapdirError) || (err.code !== 'ERR_OBJECT_MISSING' && err.code !== 'ERR_OBJECT_CORRUPT')) throw err
      result.damaged.push({
        id: chunkId,
        problem: err.code === 'ERR_OBJECT_MISSING' ? 'missing' : 'corrupt',
        detail: err.message,
        files,
      })
    }
    result.chunksChecked++
    options.onChunk?.()
  })
  result.damaged.sort((a, b) => a.id.localeCompare(b.id))
  return result
}

function chunkUsers(tree: Tree): Map<string, string[]> {
  const users = new Map<string, string[]>()
  for (const e of tree.entries) {
    if (e.type !== 'file') continue
    for (const c of e.chunks) {
      const id = toHex(c.id)
      const list = users.get(id)
      const name = printablePath(e.path)
      if (!list) users.set(id, [name])
      else if (list.at(-1) !== name) list.push(name)
    }
  }
  return users
}
