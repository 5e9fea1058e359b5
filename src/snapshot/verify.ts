import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import type { Tree } from '../format/tree.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, readTree } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'

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
  await forEachLimit(users.entries(), 16, async ([chunkId, { files, needs }]) => {
    try {
      const { raw } = await getChunk(store, chunkId, { needs })
      result.bytesChecked += raw.length
    } catch (err) {
      if (!isObjectDamage(err)) throw err
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

/** For each chunk: the files using it, and how many of its bytes the tree reads. */
function chunkUsers(tree: Tree): Map<string, { files: string[]; needs: number }> {
  const users = new Map<string, { files: string[]; needs: number }>()
  for (const e of tree.entries) {
    if (e.type !== 'file') continue
    const name = printablePath(e.path)
    for (const c of e.chunks) {
      const id = toHex(c.id)
      const u = users.get(id)
      if (!u) users.set(id, { files: [name], needs: c.offset + c.length })
      else {
        if (u.files.at(-1) !== name) u.files.push(name)
        u.needs = Math.max(u.needs, c.offset + c.length)
      }
    }
  }
  return users
}
