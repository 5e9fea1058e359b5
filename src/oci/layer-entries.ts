// A layer's entries as applying its tar to an empty directory leaves them (image-spec layer.md,
// "Applying Changesets" and "Changeset over existing files"): a later entry for a path replaces the
// earlier one, a directory over a directory only takes its attributes, anything else over a directory
// removes what was under it; missing parents are created 0755 root-owned, as container runtimes do.
// Names are tar member names: a leading '/' is dropped as tar does, and '..' is refused, as is any path
// through a symlink or a file (the tree never lets pull or a view write or look through one).
// Hardlinks share one inode object; at the end, as push's scan does, the first name of an inode in
// path order carries it and the others become hardlink entries naming that one.
import type { ChunkerParams } from '../chunk/params.js'
import { checkTreePaths, printablePath } from '../format/tree-paths.js'
import { compareBytes, type EntryType, type Tree, type TreeEntry } from '../format/tree.js'
import { SnapdirError, sourceError } from '../util/errors.js'

/** What one name of the layer points at (a tree entry without its path); hardlinked names share one. */
export type LayerInode = Omit<TreeEntry, 'path' | 'type'> & { type: Exclude<EntryType, 'hardlink'> }

const SLASH = 0x2f
const DOT = 0x2e

/** A directory created because an entry below it came without one (mtime 0 keeps trees reproducible). */
function syntheticDir(): LayerInode {
  return { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, target: null, rdev: 0, xattrs: [], chunks: [] }
}

export class LayerEntries {
  /** latin1 of the path (a lossless key for raw bytes) -> its inode */
  private readonly nodes = new Map<string, LayerInode>()

  /** `what` names the layer in errors, e.g. "layer sha256:3fa1…" */
  constructor(private readonly what: string) {
    this.nodes.set('', syntheticDir())
  }

  get size(): number {
    return this.nodes.size
  }

  /**
   * The tree path of a tar member name: leading '/', empty and '.' components dropped; '..' anywhere,
   * or a NUL byte is refused.
   */
  memberPath(name: Buffer, role = 'entry'): Buffer {
    const parts: Buffer[] = []
    let start = 0
    for (let i = 0; i <= name.length; i++) {
      if (i < name.length && name[i] !== SLASH) continue
      const part = name.subarray(start, i)
      start = i + 1
      if (part.length === 0 || (part.length === 1 && part[0] === DOT)) continue
      if (part.length === 2 && part[0] === DOT && part[1] === DOT) {
        this.unsafe(`${role} '${printablePath(name)}' has a '..' component`)
      }
      if (part.includes(0)) this.unsafe(`${role} '${printablePath(name)}' contains a NUL byte`)
      parts.push(part)
    }
    return Buffer.from(parts.map((p) => p.toString('latin1')).join('/'), 'latin1')
  }

  /** Puts an inode at `path` (already a member path), replacing what was there. */
  add(path: Buffer, inode: LayerInode): void {
    const key = path.toString('latin1')
    if (path.length === 0) {
      if (inode.type !== 'dir') this.unsafe(`the layer's root is a ${inode.type}, not a directory`)
      this.nodes.set('', inode)
      return
    }
    this.ensureParents(path)
    const existing = this.nodes.get(key)
    if (existing?.type === 'dir' && inode.type !== 'dir') this.removeBelow(key)
    this.nodes.set(key, inode)
  }

  /** A tar hardlink: `path` becomes another name of the inode already at `target` in this layer. */
  link(path: Buffer, target: Buffer): void {
    const shown = `hardlink '${printablePath(path)}'`
    const inode = this.nodes.get(target.toString('latin1'))
    if (inode === undefined) this.unsafe(`${shown} names '${printablePath(target)}', which is not earlier in the layer`)
    else if (inode.type === 'dir') this.unsafe(`${shown} names directory '${printablePath(target)}'`)
    else if (!path.equals(target)) this.add(path, inode)
  }

  /**
   * The layer's tree: sorted, one entry per path, hardlinks naming the first name of their inode;
   * `inodes[i]` is what `tree.entries[i]` was made from.
   */
  tree(chunker: ChunkerParams): { tree: Tree; inodes: LayerInode[] } {
    const paths = [...this.nodes.keys()].map((k) => Buffer.from(k, 'latin1')).sort(compareBytes)
    const first = new Map<LayerInode, Buffer>()
    const inodes = paths.map((path) => this.nodes.get(path.toString('latin1'))!)
    const entries: TreeEntry[] = paths.map((path, i) => {
      const inode = inodes[i]!
      const { type, mode, uid, gid, mtimeSec, mtimeNsec } = inode
      const primary = type === 'dir' ? undefined : first.get(inode)
      if (primary !== undefined) {
        return { path, type: 'hardlink', mode, uid, gid, mtimeSec, mtimeNsec, size: 0, target: primary, rdev: 0, xattrs: [], chunks: [] }
      }
      if (type !== 'dir') first.set(inode, path)
      const entry: TreeEntry = {
        path, type, mode, uid, gid, mtimeSec, mtimeNsec, size: inode.size, target: inode.target, rdev: inode.rdev,
        xattrs: [...inode.xattrs].sort((a, b) => compareBytes(a[0], b[0])), chunks: inode.chunks,
      }
      if (inode.inline) entry.inline = inode.inline
      return entry
    })
    // What pull and the views trust; a failure here is a bug in this file, not bad input.
    checkTreePaths(entries, (why) => {
      throw sourceError(this.what, `expanded to an invalid tree: ${why}`)
    })
    return { tree: { chunker, entries }, inodes }
  }

  private ensureParents(path: Buffer): void {
    let i = -1
    while ((i = path.indexOf(SLASH, i + 1)) >= 0) {
      const key = path.toString('latin1', 0, i)
      const node = this.nodes.get(key)
      if (node === undefined) this.nodes.set(key, syntheticDir())
      else if (node.type !== 'dir') {
        this.unsafe(`'${printablePath(path)}' lies under '${printablePath(path.subarray(0, i))}', which is a ${node.type}, not a directory`)
      }
    }
  }

  private removeBelow(key: string): void {
    const prefix = key + '/'
    for (const k of [...this.nodes.keys()]) if (k.startsWith(prefix)) this.nodes.delete(k)
  }

  private unsafe(why: string): never {
    throw new SnapdirError('ERR_UNSAFE_PATH', `${this.what}: ${why}`)
  }
}
