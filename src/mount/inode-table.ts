// The metadata of a mounted view, laid out for native/fusemount.c: one row of NODE_FIELDS numbers per
// inode, directory entries sorted by name bytes (so the C side finds a name by binary search), xattrs,
// and one byte pool for names, symlink targets, xattr values and inlined file contents. The C side
// answers every metadata operation from these arrays; JS keeps only what reads of chunked files need.
// The columns of each row are declared here and in fusemount.c; fuse.ts checks TABLE_LAYOUT against the
// addon's when it loads it.
import type { Tree, TreeEntry } from '../format/tree.js'
import { toHex } from '../format/id.js'
import { SnapdirError } from '../util/errors.js'

/** Column order of a node row. */
export const NODE_FIELDS = [
  'mode', 'uid', 'gid', 'nlink', 'size', 'rdev', 'blocks', 'mtimeSec', 'mtimeNsec',
  'childStart', 'childCount', 'dataOff', 'dataLen', 'xattrStart', 'xattrCount', 'flags',
] as const
/** A directory entry: its name in the pool, and its inode. */
export const DIRENT_FIELDS = ['nameOff', 'nameLen', 'ino'] as const
export const XATTR_FIELDS = ['nameOff', 'nameLen', 'valueOff', 'valueLen'] as const
/** A ref of a chunked file: `length` bytes at `offset` in chunk `chunk` (an index into chunkIds), `count`
 * times in a row, ending at file offset `end`. */
export const REF_FIELDS = ['chunk', 'offset', 'length', 'count', 'end'] as const
/** A node's flags: a regular file whose content is in the pool, or in refs. */
export const NODE_FLAGS = { inline: 1, chunked: 2 } as const

function columns<const T extends readonly string[]>(fields: T): Record<T[number], number> {
  return Object.fromEntries(fields.map((name, i) => [name, i])) as Record<T[number], number>
}

/** Every row layout and flag of the table, as field -> column maps (what fusemount.c exports as `layout`). */
export const TABLE_LAYOUT = {
  node: columns(NODE_FIELDS),
  dirent: columns(DIRENT_FIELDS),
  xattr: columns(XATTR_FIELDS),
  ref: columns(REF_FIELDS),
  flag: NODE_FLAGS,
} as const
const F = TABLE_LAYOUT.node
const D = TABLE_LAYOUT.dirent
const X = TABLE_LAYOUT.xattr
const R = TABLE_LAYOUT.ref

const S_IF: Record<Exclude<TreeEntry['type'], 'hardlink'>, number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000, socket: 0o140000,
}

/**
 * What a read of a chunked file needs, made on demand from the table (fileContent): its run of rows
 * in `refs`. The table holds no object per file: a tree of 200,000 small files kept 200,000 of these
 * with two typed arrays each, and through them the whole decoded tree, for as long as it was mounted.
 */
export interface FileContent {
  ino: number
  /** for messages: the first path of the inode */
  path: Buffer
  /** its refs are rows first .. first + count - 1 of InodeTable.refs */
  first: number
  count: number
  /**
   * a layer blob stored as a recipe: its one ref covers the whole file and names a chunk that is never
   * lent to the C side (RECIPE_CHUNK + the recipe ID), so every read comes to JS, which regenerates it
   */
  recipe?: string
}

/** The prefix of chunkIds that stand for a recipe's whole blob, not a chunk. */
export const RECIPE_CHUNK = 'recipe:'

export interface InodeTable {
  /** rows of the layouts in TABLE_LAYOUT */
  nodes: Float64Array
  dirents: Float64Array
  xattrs: Float64Array
  /** every file's refs; a chunked file's node points at its run of rows */
  refs: Float64Array
  /** the distinct chunks the files use, hex, by index (the C side knows chunks by index only) */
  chunkIds: string[]
  pool: Buffer
  /** logical bytes of all regular files, each inode once (statfs) */
  totalBytes: number
  /** chunked regular files' inode numbers, ascending (tree order); inlined and empty files are served by the C side */
  files: Uint32Array
  /** each inode's first path (for messages): bytes pathEnds[ino - 1] (0 for inode 1) to pathEnds[ino] of `paths` */
  paths: Buffer
  pathEnds: Float64Array
}

/** A chunked file's content, or null for any other inode. */
export function fileContent(table: InodeTable, ino: number): FileContent | null {
  const row = (ino - 1) * NODE_FIELDS.length
  if (ino < 1 || row >= table.nodes.length || table.nodes[row + F.flags] !== NODE_FLAGS.chunked) return null
  const first = table.nodes[row + F.dataOff]!
  const path = table.paths.subarray(ino === 1 ? 0 : table.pathEnds[ino - 1]!, table.pathEnds[ino])
  const id = table.chunkIds[table.refs[first * REF_FIELDS.length + R.chunk]!]!
  const recipe = id.startsWith(RECIPE_CHUNK) ? id.slice(RECIPE_CHUNK.length) : undefined
  return { ino, path, first, count: table.nodes[row + F.dataLen]!, ...(recipe !== undefined ? { recipe } : {}) }
}

/** Ref row `k` of a file (0-based within the file): its chunk's index in chunkIds, slice and where it ends in the file. */
export function fileRef(table: InodeTable, file: FileContent, k: number): { chunk: number; offset: number; length: number; count: number; end: number } {
  const x = (file.first + k) * REF_FIELDS.length
  const r = table.refs
  return { chunk: r[x + R.chunk]!, offset: r[x + R.offset]!, length: r[x + R.length]!, count: r[x + R.count]!, end: r[x + R.end]! }
}

/** The index (within the file) of the first ref whose bytes end after `offset`: ends increase along a file's rows. */
export function firstRefEndingAfter(table: InodeTable, file: FileContent, offset: number): number {
  let lo = 0
  let hi = file.count
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (table.refs[(file.first + mid) * REF_FIELDS.length + R.end]! <= offset) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Grows a byte pool in large steps and hands back where each piece landed. */
class Pool {
  private buf = Buffer.alloc(1 << 16)
  length = 0

  add(bytes: Buffer): number {
    if (this.length + bytes.length > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + bytes.length))
      this.buf.copy(next, 0, 0, this.length)
      this.buf = next
    }
    bytes.copy(this.buf, this.length)
    this.length += bytes.length
    return this.length - bytes.length
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length)
  }
}

const SLASH = 0x2f

function splitPath(path: Buffer): { parent: string; name: Buffer } {
  const cut = path.lastIndexOf(SLASH)
  return cut < 0
    ? { parent: '', name: path }
    : { parent: path.subarray(0, cut).toString('latin1'), name: path.subarray(cut + 1) }
}

/**
 * Builds the table of a snapshot tree. Inode numbers are stable for a given tree: 1 is the root, then
 * every non-hardlink entry in tree order; a hardlink is a second name for its target's inode.
 */
export function buildInodeTable(tree: Tree): InodeTable {
  // keys are paths as latin1 strings: a bijection from bytes, so non-UTF-8 names stay distinct
  const inoOfPath = new Map<string, number>()
  const owners: TreeEntry[] = [] // owners[ino - 1] is the entry that defines the inode
  const root = tree.entries[0]
  if (!root || root.path.length !== 0 || root.type !== 'dir') {
    throw new SnapdirError('ERR_TREE_MALFORMED', 'the tree has no root directory entry')
  }
  for (const e of tree.entries) {
    const key = e.path.toString('latin1')
    if (e.type === 'hardlink') {
      const ino = inoOfPath.get(e.target!.toString('latin1'))
      if (ino === undefined) throw new SnapdirError('ERR_TREE_MALFORMED', `hardlink ${key} names no earlier entry`)
      inoOfPath.set(key, ino)
    } else {
      owners.push(e)
      inoOfPath.set(key, owners.length)
    }
  }

  const nlink = new Uint32Array(owners.length + 1)
  const children = new Map<number, Array<{ name: Buffer; ino: number }>>()
  for (const e of tree.entries) {
    if (e.path.length === 0) continue
    const ino = inoOfPath.get(e.path.toString('latin1'))!
    const { parent, name } = splitPath(e.path)
    const parentIno = inoOfPath.get(parent)!
    let list = children.get(parentIno)
    if (!list) children.set(parentIno, (list = []))
    list.push({ name, ino })
    nlink[ino] = nlink[ino]! + 1
  }

  let direntCount = 0
  let xattrCount = 0
  let refCount = 0
  owners.forEach((e, i) => {
    xattrCount += e.xattrs.length
    if (e.type === 'dir') direntCount += children.get(i + 1)?.length ?? 0
    if (e.type === 'file' && !e.inline && e.size > 0) refCount += e.recipe !== undefined ? 1 : e.chunks.length
  })
  const pool = new Pool()
  const nodes = new Float64Array(owners.length * NODE_FIELDS.length)
  const dirents = new Float64Array(direntCount * DIRENT_FIELDS.length)
  const xattrs = new Float64Array(xattrCount * XATTR_FIELDS.length)
  const refs = new Float64Array(refCount * REF_FIELDS.length)
  let direntAt = 0
  let xattrAt = 0
  let refAt = 0
  const files: number[] = []
  const paths = new Pool()
  const pathEnds = new Float64Array(owners.length + 1)
  const chunkIds: string[] = []
  const chunkIndex = new Map<string, number>()
  let totalBytes = 0

  owners.forEach((e, i) => {
    const ino = i + 1
    const row = i * NODE_FIELDS.length
    paths.add(e.path)
    pathEnds[ino] = paths.length
    const type = e.type as Exclude<TreeEntry['type'], 'hardlink'>
    nodes[row + F.mode] = S_IF[type] | e.mode
    nodes[row + F.uid] = e.uid
    nodes[row + F.gid] = e.gid
    nodes[row + F.rdev] = e.rdev
    nodes[row + F.mtimeSec] = e.mtimeSec
    nodes[row + F.mtimeNsec] = e.mtimeNsec
    nodes[row + F.xattrStart] = xattrAt
    nodes[row + F.xattrCount] = e.xattrs.length
    for (const [name, value] of e.xattrs) {
      const x = xattrAt++ * XATTR_FIELDS.length
      xattrs[x + X.nameOff] = pool.add(name)
      xattrs[x + X.nameLen] = name.length
      xattrs[x + X.valueOff] = pool.add(value)
      xattrs[x + X.valueLen] = value.length
    }

    if (type === 'dir') {
      const list = (children.get(ino) ?? []).sort((a, b) => Buffer.compare(a.name, b.name))
      nodes[row + F.childStart] = direntAt
      nodes[row + F.childCount] = list.length
      let subdirs = 0
      for (const c of list) {
        const d = direntAt++ * DIRENT_FIELDS.length
        dirents[d + D.nameOff] = pool.add(c.name)
        dirents[d + D.nameLen] = c.name.length
        dirents[d + D.ino] = c.ino
        if (owners[c.ino - 1]!.type === 'dir') subdirs++
      }
      nodes[row + F.nlink] = 2 + subdirs
      nodes[row + F.size] = 4096
      nodes[row + F.blocks] = 8
      return
    }
    nodes[row + F.nlink] = Math.max(1, nlink[ino]!)
    if (type === 'symlink') {
      nodes[row + F.dataOff] = pool.add(e.target!)
      nodes[row + F.dataLen] = e.target!.length
      nodes[row + F.size] = e.target!.length
      return
    }
    if (type !== 'file') return
    nodes[row + F.size] = e.size
    totalBytes += e.size
    if (e.inline) {
      nodes[row + F.dataOff] = pool.add(e.inline)
      nodes[row + F.dataLen] = e.inline.length
      nodes[row + F.flags] = NODE_FLAGS.inline
      nodes[row + F.blocks] = Math.ceil(e.size / 512)
    } else if (e.size > 0 && e.recipe !== undefined) {
      const id = RECIPE_CHUNK + e.recipe
      let index = chunkIndex.get(id)
      if (index === undefined) {
        index = chunkIds.push(id) - 1
        chunkIndex.set(id, index)
      }
      nodes[row + F.dataOff] = refAt
      nodes[row + F.dataLen] = 1
      nodes[row + F.flags] = NODE_FLAGS.chunked
      const x = refAt++ * REF_FIELDS.length
      refs[x + R.chunk] = index
      refs[x + R.offset] = 0
      refs[x + R.length] = e.size
      refs[x + R.count] = 1
      refs[x + R.end] = e.size
      nodes[row + F.blocks] = Math.ceil(e.size / 512)
      files.push(ino)
    } else if (e.size > 0) {
      nodes[row + F.dataOff] = refAt
      nodes[row + F.dataLen] = e.chunks.length
      nodes[row + F.flags] = NODE_FLAGS.chunked
      let at = 0
      let stored = 0
      e.chunks.forEach((r) => {
        at += r.length * r.count
        if (r.count === 1) stored += r.length // runs (count > 1) are the zero chunks of sparse regions
        const id = toHex(r.id)
        let index = chunkIndex.get(id)
        if (index === undefined) {
          index = chunkIds.push(id) - 1
          chunkIndex.set(id, index)
        }
        const x = refAt++ * REF_FIELDS.length
        refs[x + R.chunk] = index
        refs[x + R.offset] = r.offset
        refs[x + R.length] = r.length
        refs[x + R.count] = r.count
        refs[x + R.end] = at
      })
      nodes[row + F.blocks] = Math.ceil(stored / 512)
      files.push(ino)
    }
  })

  return {
    nodes,
    dirents,
    xattrs,
    refs,
    chunkIds,
    pool: pool.bytes(),
    totalBytes,
    files: Uint32Array.from(files),
    paths: paths.bytes(),
    pathEnds,
  }
}
