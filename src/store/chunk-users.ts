// Who uses a chunk, as damage messages name it.
import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import type { Tree } from '../format/tree.js'
import type { ChunkUser } from './closure.js'

/** The files of a tree that use a chunk, for error messages ("… used by etc/passwd, bin/sh"). */
export function filesUsingChunk(tree: Tree, id: string, limit = 5): string[] {
  const out: string[] = []
  for (const e of tree.entries) {
    if (e.type === 'file' && e.chunks.some((c) => toHex(c.id) === id)) {
      out.push(printablePath(e.path))
      if (out.length >= limit) break
    }
  }
  return out
}

export function describeUsers(tree: Tree, id: string): string {
  const files = filesUsingChunk(tree, id, 6)
  if (files.length === 0) return ''
  return ` (used by ${files.slice(0, 5).join(', ')}${files.length > 5 ? ', …' : ''})`
}

/**
 * A chunk's users in a snapshot closure (closure.ts), as `describeUsers` gives them: " (used by a, b)"
 * for the snapshot's own files, " (used by c in layer sha256:…)" for a layer's; at most `limit` files each.
 */
export function describeClosureUsers(users: ChunkUser[], limit = 5): string {
  const parts: string[] = []
  for (const u of users) {
    const files = u.files.length > limit ? `${u.files.slice(0, limit).join(', ')}, …` : u.files.join(', ')
    const named = files === '' ? `tree ${u.tree}` : files
    parts.push(u.layer === null ? named : `${named} in layer ${u.layer.diffId}`)
  }
  return parts.length === 0 ? '' : ` (used by ${parts.join('; ')})`
}
