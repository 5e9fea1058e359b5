import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import type { Tree } from '../format/tree.js'

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
