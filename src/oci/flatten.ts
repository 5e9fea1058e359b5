// An image's layers as the two views of a mount need them (DESIGN.md, "The mount"):
//  - flattenLayers: the root file system a runtime would unpack, every layer applied in order with its
//    whiteouts (image-spec layer.md, "Applying Changesets"), the whiteout files themselves gone;
//  - overlayLayer: one layer as overlayfs reads a lower directory, each `.wh.NAME` a char device 0/0
//    named NAME and each `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its directory.
// Both work on expanded layer trees (layer-expand.ts) and give tree entries, so a view is served like
// any snapshot. Hardlinks are resolved to shared inodes while layers are applied: a name that a later
// layer deletes or replaces leaves its other names whole, as on a disk.
import { compareBytes, type Tree, type TreeEntry } from '../format/tree.js'
import { whiteoutOf } from './layer-whiteouts.js'

/** A name in the root file system being built, and the entry (shared by hardlinked names) it shows. */
interface Node {
  inode: TreeEntry
  children: Set<string> | null
}

const OVERLAY_OPAQUE: [Buffer, Buffer] = [Buffer.from('trusted.overlay.opaque'), Buffer.from('y')]

/**
 * The directories a layer's tar did not list but had to exist are created 0755 root-owned with time 0
 * (layer-entries.ts). Applying such a directory over an existing one must not change it, as a runtime
 * creating missing parents would not. A directory the tar did list with exactly these attributes is
 * indistinguishable, and is treated the same way.
 */
function isImpliedDir(e: TreeEntry): boolean {
  return e.type === 'dir' && e.mode === 0o755 && e.uid === 0 && e.gid === 0 && e.mtimeSec === 0 && e.mtimeNsec === 0 && e.xattrs.length === 0
}

const key = (path: Buffer): string => path.toString('latin1')
/** The key of a path's parent, from the path's key ('' for a name in the root). */
const parentKey = (k: string): string => k.slice(0, Math.max(0, k.lastIndexOf('/')))

/** The root file system of an image whose layers are `layers`, bottom first, as sorted tree entries. */
export function flattenLayers(layers: Tree[]): TreeEntry[] {
  const rootfs = new RootFileSystem()
  for (const layer of layers) rootfs.apply(layer)
  return rootfs.entries()
}

/** A root file system being built layer by layer. */
class RootFileSystem {
  private readonly nodes = new Map<string, Node>()

  /** The directory at `path` so far, if there is one. */
  dirAt(path: Buffer): TreeEntry | null {
    const node = this.nodes.get(key(path))
    return node?.inode.type === 'dir' ? node.inode : null
  }

  apply(layer: Tree): void {
    const marks = layer.entries.map((e) => whiteoutOf(e.path))
    // whiteouts hide what lower layers have, so they go first: the layer's own entries stay
    for (const w of marks) {
      if (w?.kind === 'opaque') {
        if (this.dirAt(w.dir)) this.removeChildren(key(w.dir))
      } else if (w?.kind === 'whiteout') {
        this.remove(key(w.hides))
      }
    }
    const owners = new Map<string, TreeEntry>()
    layer.entries.forEach((e, i) => {
      if (marks[i] !== null) return
      const path = key(e.path)
      // a name under a whiteout file's name (only a hostile tar has one) has no directory to go in
      const parent = path === '' ? null : this.nodes.get(parentKey(path))
      if (parent !== null && parent?.inode.type !== 'dir') return
      const inode = e.type === 'hardlink' ? owners.get(key(e.target!)) : e
      if (!inode) return // a hardlink to a whiteout file: nothing to show
      if (e.type !== 'hardlink') owners.set(path, e)
      const existing = this.nodes.get(path)
      if (existing && existing.inode.type === 'dir' && inode.type === 'dir') {
        if (!isImpliedDir(inode)) existing.inode = inode
        return
      }
      if (existing) this.remove(path)
      this.nodes.set(path, { inode, children: inode.type === 'dir' ? new Set() : null })
      parent?.children!.add(path)
    })
  }

  private remove(path: string): void {
    const node = this.nodes.get(path)
    if (!node) return
    for (const child of node.children ?? []) this.remove(child)
    this.nodes.delete(path)
    if (path !== '') this.nodes.get(parentKey(path))?.children?.delete(path)
  }

  private removeChildren(dir: string): void {
    for (const child of [...(this.nodes.get(dir)?.children ?? [])]) this.remove(child)
  }

  entries(): TreeEntry[] {
    return entriesOf(this.nodes)
  }
}

/** Sorted entries; the first name of a shared inode carries it, the others are hardlinks to that name. */
function entriesOf(nodes: Map<string, Node>): TreeEntry[] {
  // latin1 keys hold one byte a character, so their code-unit order (sort's) is the paths' byte order
  const keys = [...nodes.keys()].sort()
  const firstName = new Map<TreeEntry, Buffer>()
  return keys.map((k) => {
    const path = Buffer.from(k, 'latin1')
    const { inode } = nodes.get(k)!
    const first = firstName.get(inode)
    if (first) return hardlinkTo(inode, path, first)
    if (inode.type !== 'dir') firstName.set(inode, path)
    return { ...inode, path }
  })
}

/** As layer-entries.ts writes a second name: the inode's attributes, no content of its own. */
function hardlinkTo(e: TreeEntry, path: Buffer, target: Buffer): TreeEntry {
  const { mode, uid, gid, mtimeSec, mtimeNsec } = e
  return { path, type: 'hardlink', mode, uid, gid, mtimeSec, mtimeNsec, size: 0, target, rdev: 0, xattrs: [], chunks: [] }
}

/**
 * Each layer as an overlayfs lower directory, bottom first. overlayfs shows a directory with the
 * attributes of its topmost copy, so a directory a layer only implies (its tar has no entry for it)
 * takes the attributes the layers below give it: stacked, the layers show what flattenLayers gives.
 */
export function overlayLayers(layers: Tree[]): TreeEntry[][] {
  const rootfs = new RootFileSystem()
  return layers.map((layer) => {
    const entries = overlayLayer({
      chunker: layer.chunker,
      entries: layer.entries.map((e) => {
        const below = isImpliedDir(e) ? rootfs.dirAt(e.path) : null
        return below ? { ...below, path: e.path } : e
      }),
    })
    rootfs.apply(layer)
    return entries
  })
}

/**
 * One layer as an overlayfs lower directory: `.wh.NAME` becomes a char device 0/0 at NAME (unless the
 * layer also has NAME itself), `.wh..wh..opq` the opaque xattr on its directory, and AUFS bookkeeping
 * names (`.wh..wh.*`) are dropped.
 */
function overlayLayer(layer: Tree): TreeEntry[] {
  const present = new Set(layer.entries.filter((e) => whiteoutOf(e.path) === null).map((e) => key(e.path)))
  const opaque = new Set<string>()
  const out: TreeEntry[] = []
  for (const e of layer.entries) {
    const w = whiteoutOf(e.path)
    if (w === null) {
      out.push(e)
    } else if (w.kind === 'opaque') {
      opaque.add(key(w.dir))
    } else if (w.kind === 'whiteout' && !present.has(key(w.hides))) {
      const { uid, gid, mtimeSec, mtimeNsec } = e
      out.push({ path: w.hides, type: 'char', mode: 0, uid, gid, mtimeSec, mtimeNsec, size: 0, target: null, rdev: 0, xattrs: [], chunks: [] })
    }
  }
  const withOpaque = out.map((e) =>
    opaque.has(key(e.path)) && e.type === 'dir'
      ? { ...e, xattrs: [...e.xattrs.filter(([n]) => !n.equals(OVERLAY_OPAQUE[0])), OVERLAY_OPAQUE].sort((a, b) => compareBytes(a[0], b[0])) }
      : e,
  )
  // a hardlink to a whiteout file names nothing now
  const kept = new Set(withOpaque.map((e) => key(e.path)))
  return withOpaque.filter((e) => e.type !== 'hardlink' || kept.has(key(e.target!))).sort((a, b) => compareBytes(a.path, b.path))
}

/** The entries moved under `dir` (a path of the view), root included; hardlink targets follow. */
export function underDirectory(entries: TreeEntry[], dir: Buffer): TreeEntry[] {
  const move = (p: Buffer): Buffer => (p.length === 0 ? dir : Buffer.concat([dir, Buffer.from('/'), p]))
  return entries.map((e) => ({ ...e, path: move(e.path), target: e.type === 'hardlink' ? move(e.target!) : e.target }))
}
