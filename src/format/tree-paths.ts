// What makes a tree safe to materialise: pull and the mount trust only trees that pass this, so a
// crafted tree can never make them write or look outside the root (CVE-2019-14271-style escapes).

const SLASH = 0x2f

/** What checkTreePaths reads of an entry (tree.ts imports this file, so not its TreeEntry). */
export interface PathEntry {
  path: Buffer
  type: string
  target: Buffer | null
}

/** Why `path` is not a canonical relative path, or null if it is. */
export function pathProblem(path: Buffer): string | null {
  if (path.length === 0) return null // the root
  if (path[0] === SLASH) return 'is absolute'
  if (path.includes(0)) return 'contains a NUL byte'
  // the components in order, as splitPath cuts them, without making them (every entry of every tree
  // a mount or a pull reads comes through here)
  let start = 0
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue
    const n = i - start
    if (n === 0) return 'has an empty component'
    if (n === 1 && path[start] === 0x2e) return "has a '.' component"
    if (n === 2 && path[start] === 0x2e && path[start + 1] === 0x2e) return "has a '..' component"
    start = i + 1
  }
  return null
}

export function splitPath(path: Buffer): Buffer[] {
  const parts: Buffer[] = []
  let start = 0
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      parts.push(path.subarray(start, i))
      start = i + 1
    }
  }
  return parts
}

export function parentPath(path: Buffer): Buffer {
  const i = path.lastIndexOf(SLASH)
  return i < 0 ? Buffer.alloc(0) : path.subarray(0, i)
}

export function printablePath(path: Buffer): string {
  return path.length === 0 ? '/' : JSON.stringify(path.toString('utf8')).slice(1, -1)
}

/**
 * Checks the whole tree: canonical paths in strictly increasing byte order (so no duplicates), the
 * root first and a directory, every parent a directory entry of the tree (so nothing is ever written
 * through a symlink), hardlinks naming an earlier non-directory, non-hardlink entry.
 */
export function checkTreePaths(entries: readonly PathEntry[], bad: (why: string) => never): void {
  if (entries.length === 0 || entries[0]!.path.length !== 0 || entries[0]!.type !== 'dir') {
    bad('the first entry must be the root directory')
  }
  // keyed by paths as latin1 strings (one character a byte, so a parent's key is a prefix of its child's)
  const kinds = new Map<string, string>()
  let prev: Buffer | null = null
  for (const e of entries) {
    // the printable path only for a message: making it for every entry cost more than all the checks
    const problem = pathProblem(e.path)
    if (problem) bad(`path '${printablePath(e.path)}' ${problem}`)
    if (prev !== null && Buffer.compare(prev, e.path) >= 0) bad(`path '${printablePath(e.path)}' is out of order or repeated`)
    prev = e.path
    const key = e.path.toString('latin1')
    if (e.path.length > 0) {
      const cut = key.lastIndexOf('/')
      const parent = kinds.get(cut < 0 ? '' : key.slice(0, cut))
      if (parent !== 'dir') bad(`path '${printablePath(e.path)}': its parent is ${parent === undefined ? 'not in the tree' : `a ${parent}, not a directory`}`)
    }
    if (e.type === 'hardlink') {
      const t = kinds.get(e.target!.toString('latin1'))
      if (t === undefined || t === 'dir' || t === 'hardlink') {
        bad(`hardlink '${printablePath(e.path)}' must name an earlier file of the tree, not '${printablePath(e.target!)}'`)
      }
    }
    kinds.set(key, e.type)
  }
}
