// The snapshot tree: canonical msgpack of positional arrays (no maps, so no key order to agree on),
// entries sorted by raw path bytes, xattrs by name. Identical trees encode to identical bytes, and the
// BLAKE3 of the (root) object is the snapshot ID. docs/FORMAT.md "Tree" is the exact layout.
// Format 1, one object:
//   tree  = ['snapdir-tree', 1, [min, avg, max, level, seed(decimal string), inlineMax, packMax], [entry…]]
//   entry = [path, type, mode, uid, gid, mtimeSec, mtimeNsec, size, target|null, rdev,
//            [xattrName, xattrValue, …], [chunkId, offset, length, count, …] | inline content (bin)]
// Format 2, a root naming parts, each part a run of whole entries (cut where a path is an anchor):
//   root  = ['snapdir-tree', 2, [min, avg, max, level, seed, inlineMax, packMax], [partId, entries, …]]
//   part  = [entry…]
//   entry = [path, …, [xattrName, xattrValue, …], [chunkId, offset, length, count, …] (, recipeId)]
import type { ChunkerParams } from '../chunk/params.js'
import { hashBytes } from '../chunk/hash.js'
import { SnapdirError } from '../util/errors.js'
import { ID_BYTES, isId, toHex } from './id.js'
import { asBuffer, isBytes, isUint, msgpackReader } from './msgpack-reader.js'
import { MsgpackWriter } from './msgpack-writer.js'
import { checkTreePaths } from './tree-paths.js'

export const TREE_MAGIC = 'snapdir-tree'
/** The format new trees are written in; format 1 trees are still read (and re-encoded as they were). */
export const TREE_FORMAT = 2
export type TreeFormat = 1 | 2

/**
 * Format 2 cuts the entries into parts before an entry whose path is an anchor (BLAKE3(path) bytes
 * 4..7 as u32 LE, 0 mod PART_ANCHOR: one entry in 64, by name alone, so an edit never moves a cut) or
 * before an entry that would take a part past PART_MAX_BYTES (the one cut an edit can move, until the
 * next anchor). Bytes 4..7, because pack groups (ingest/pack-groups.ts) anchor on bytes 0..3.
 */
export const PART_ANCHOR = 64
export const PART_MAX_BYTES = 64 * 1024

/** Entry types; the index is the wire code, so only ever append. */
export const ENTRY_TYPES = ['file', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'socket'] as const
export type EntryType = (typeof ENTRY_TYPES)[number]

/**
 * `length` bytes from `offset` in chunk `id`, `count` times in a row. A large file's refs are whole
 * chunks (offset 0; runs of zeros in sparse files collapse into one ref with a count); a small file
 * packed with its neighbours (ingest/pack-groups.ts) is a slice of one or two shared chunks.
 */
export interface ChunkRef {
  id: Buffer
  offset: number
  length: number
  count: number
}

export interface TreeEntry {
  /** relative to the snapshot root, '/'-separated raw bytes; the root itself is the empty path */
  path: Buffer
  type: EntryType
  /** permission bits including setuid, setgid and sticky (st_mode & 0o7777) */
  mode: number
  uid: number
  gid: number
  mtimeSec: number
  mtimeNsec: number
  /** logical size of a file's content; 0 for everything else */
  size: number
  /** symlink: the link's target; hardlink: the path of the entry it shares an inode with */
  target: Buffer | null
  /** device number of char and block devices, as st_rdev; 0 otherwise */
  rdev: number
  /** [name, value] sorted by name bytes */
  xattrs: Array<[Buffer, Buffer]>
  chunks: ChunkRef[]
  /** the content of a small file, kept in the tree instead of chunks (then `chunks` is empty); format 1 only */
  inline?: Buffer
  /** a file whose content is a layer blob regenerated from this recipe object (ID, hex); format 2 only */
  recipe?: string
}

/** What a file entry holds of its content: its chunks, or (format 1) its bytes. */
export type EntryContent = Pick<TreeEntry, 'chunks' | 'inline'>

export interface Tree {
  chunker: ChunkerParams
  entries: TreeEntry[]
  /** the format it is (to be) stored in; absent: TREE_FORMAT */
  format?: TreeFormat
}

/** A tree encoded: its root object (whose BLAKE3 is the ID) and, in format 2, its parts in order. */
export interface TreeBytes {
  root: Buffer
  parts: Buffer[]
}

/** Chunk refs as the format writes them, in trees and recipes: a flat array of id, offset, length, count. */
export function writeChunkRefs(w: MsgpackWriter, refs: readonly ChunkRef[]): void {
  w.array(4 * refs.length)
  for (const r of refs) {
    w.bin(r.id)
    w.number(r.offset)
    w.number(r.length)
    w.number(r.count)
  }
}

export function compareBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b)
}

export function encodeTree(tree: Tree): TreeBytes {
  return treeEncoderOf(tree).encode()
}

/** A tree's entries added, in path order, to an encoder of its format. */
export function treeEncoderOf(tree: Tree): TreeEncoder {
  const encoder = new TreeEncoder(tree.chunker, tree.format ?? TREE_FORMAT)
  const sorted = [...tree.entries].sort((a, b) => compareBytes(a.path, b.path))
  sorted.forEach((e, i) => encoder.add(e, i))
  return encoder
}

/** Entries' bytes are kept in blocks of this size (an entry larger than a block gets one of its own). */
const BLOCK_BYTES = 1024 * 1024

/**
 * A tree's entries, encoded one by one, in any order, each given its place in path order; encode()
 * puts the tree together from their bytes. Push adds each entry once it is final (a file once its
 * chunks are known), while its other files are still cut, and then drops it: nothing here refers to
 * an entry added, so a tree of 204,525 small files is held as 26 MB of bytes, not as 80 MB of entry
 * objects (with their path Buffers, ref lists and refs), and encoding it after the last chunk is
 * mostly copying.
 *
 * The bytes go into fixed blocks that are never moved: a buffer grown by doubling held the bytes
 * twice while it grew, and up to twice their size after.
 */
export class TreeEncoder {
  private readonly blocks: Buffer[] = []
  /** free bytes from `used` on in the last of `blocks` */
  private used = BLOCK_BYTES
  private scratch = new MsgpackWriter(4096)
  // by position: where an entry's bytes are (block, offset in it, length; 0 = not added) and whether a part starts there
  private blockOf: Uint32Array = new Uint32Array(1024)
  private offsetOf: Uint32Array = new Uint32Array(1024)
  private lengthOf: Uint32Array = new Uint32Array(1024)
  private anchors: Uint8Array = new Uint8Array(1024)
  private positions = 0

  constructor(readonly chunker: ChunkerParams, readonly format: TreeFormat = TREE_FORMAT) {}

  /** How many entries the tree has: one past the last position added. */
  get count(): number {
    return this.positions
  }

  /**
   * Encodes `e` as entry `position` (0-based, in path order) of the tree, with `content` as its
   * chunks (or inline bytes); neither is kept. Push gives a file's chunks here rather than setting
   * them on its entry: an entry made during the scan is in V8's old space, and young objects it
   * points to survive every scavenge until the next full collection, long after the entry is dropped
   * (a push of 200,000 small files promoted 60 MB of chunk refs so).
   */
  add(e: TreeEntry, position: number, content: EntryContent = e): void {
    if (!Number.isSafeInteger(position) || position < 0) throw internal(e, `position ${position}`)
    this.grow(position + 1)
    if (this.lengthOf[position] !== 0) throw internal(e, `a second entry at position ${position}`)
    const w = this.scratch
    w.reset()
    writeEntry(w, e, this.format, content)
    const bytes = w.written()
    if (bytes.length > BLOCK_BYTES - this.used) {
      // a large entry (a huge file's refs, large xattrs) in a block of its own; else a new block
      this.blocks.push(Buffer.allocUnsafeSlow(Math.max(BLOCK_BYTES, bytes.length)))
      this.used = 0
    }
    const block = this.blocks.length - 1
    this.blocks[block]!.set(bytes, this.used)
    this.blockOf[position] = block
    this.offsetOf[position] = this.used
    this.lengthOf[position] = bytes.length
    if (this.format === 2) this.anchors[position] = isPartAnchor(e.path) ? 1 : 0
    // a block of its own is full; the next entry starts a new one
    this.used = bytes.length > BLOCK_BYTES ? BLOCK_BYTES : this.used + bytes.length
    // a writer grown for a large entry is not kept
    if (w.capacity > BLOCK_BYTES) this.scratch = new MsgpackWriter(4096)
    this.positions = Math.max(this.positions, position + 1)
  }

  /** The tree, encoded: every position up to `count` must have been added. */
  encode(): TreeBytes {
    const parts: Buffer[] = []
    const root = this.encodeParts((part) => parts.push(Buffer.from(part)))
    return { root, parts }
  }

  /**
   * Encodes the tree, handing each format 2 part (with its ID, its BLAKE3) to `onPart` as it is cut,
   * and returns the root: push stores the parts compressed and need not hold them all raw too. The
   * part's bytes are valid only during the call (one buffer serves every part: a fresh one each was
   * 26 MB of garbage for a tree of 200,000 small files, at the end of push).
   */
  encodeParts(onPart: (part: Buffer, id: Buffer) => void): Buffer {
    const n = this.positions
    for (let i = 0; i < n; i++) {
      if (this.lengthOf[i] === 0) throw new SnapdirError('ERR_INTERNAL', `internal error: entry ${i} of ${n} of a tree was never encoded`)
    }
    const bytesOf = (i: number): Buffer => {
      const at = this.offsetOf[i]!
      return this.blocks[this.blockOf[i]!]!.subarray(at, at + this.lengthOf[i]!)
    }
    if (this.format === 1) {
      let total = 0
      for (let i = 0; i < n; i++) total += this.lengthOf[i]!
      const w = new MsgpackWriter(total + 1024)
      writeHeader(w, this.chunker, 1)
      w.array(n)
      for (let i = 0; i < n; i++) w.raw(bytesOf(i))
      return w.bytes()
    }
    const ids: Buffer[] = []
    const counts: number[] = []
    let first = 0
    let bytes = 0
    const partWriter = new MsgpackWriter(PART_MAX_BYTES + 8)
    const cut = (end: number): void => {
      const w = partWriter
      w.reset()
      w.array(end - first)
      for (let i = first; i < end; i++) w.raw(bytesOf(i))
      const part = w.written()
      const id = hashBytes(part)
      ids.push(id)
      counts.push(end - first)
      onPart(part, id)
      first = end
      bytes = 0
    }
    for (let i = 0; i < n; i++) {
      const size = this.lengthOf[i]!
      if (i > first && (this.anchors[i] === 1 || bytes + size > PART_MAX_BYTES)) cut(i)
      bytes += size
    }
    if (n > first) cut(n)
    const w = new MsgpackWriter(ids.length * 48 + 128)
    writeHeader(w, this.chunker, 2)
    w.array(2 * ids.length)
    ids.forEach((id, i) => {
      w.bin(id)
      w.number(counts[i]!)
    })
    return w.bytes()
  }

  /** Room for `n` positions, doubling. */
  private grow(n: number): void {
    if (n <= this.lengthOf.length) return
    const size = Math.max(n, 2 * this.lengthOf.length)
    const grown = (a: Uint32Array): Uint32Array => {
      const b = new Uint32Array(size)
      b.set(a)
      return b
    }
    this.blockOf = grown(this.blockOf)
    this.offsetOf = grown(this.offsetOf)
    this.lengthOf = grown(this.lengthOf)
    const anchors = new Uint8Array(size)
    anchors.set(this.anchors)
    this.anchors = anchors
  }
}

/** Whether a format 2 part starts at this path (see PART_ANCHOR). */
export function isPartAnchor(path: Buffer): boolean {
  return hashBytes(path).readUInt32LE(4) % PART_ANCHOR === 0
}

function writeHeader(w: MsgpackWriter, c: ChunkerParams, format: TreeFormat): void {
  w.array(4)
  w.str(TREE_MAGIC)
  w.number(format)
  w.array(7)
  for (const v of [c.min, c.avg, c.max, c.level]) w.number(v)
  w.str(c.seed.toString())
  w.number(c.inlineMax ?? 0)
  w.number(c.packMax ?? 0)
}

function writeEntry(w: MsgpackWriter, e: TreeEntry, format: TreeFormat, content: EntryContent = e): void {
  const recipe = format === 2 && e.recipe !== undefined
  if (format === 1 && e.recipe !== undefined) throw internal(e, 'a recipe cannot be stored in a format 1 tree')
  if (format === 2 && content.inline !== undefined && content.inline.length > 0) throw internal(e, 'format 2 trees hold no file content (inlineMax must be 0)')
  w.array(recipe ? 13 : 12)
  w.bin(e.path)
  for (const v of [ENTRY_TYPES.indexOf(e.type), e.mode, e.uid, e.gid, e.mtimeSec, e.mtimeNsec, e.size]) w.number(v)
  if (e.target === null) w.nil()
  else w.bin(e.target)
  w.number(e.rdev)
  const xattrs = e.xattrs.length > 1 ? [...e.xattrs].sort((a, b) => compareBytes(a[0], b[0])) : e.xattrs
  w.array(2 * xattrs.length)
  for (const [name, value] of xattrs) {
    w.bin(name)
    w.bin(value)
  }
  if (format === 1 && content.inline !== undefined) w.bin(content.inline)
  else writeChunkRefs(w, content.chunks)
  if (recipe) {
    if (!isId(e.recipe!)) throw internal(e, `recipe '${e.recipe!}' is not an ID`)
    w.bin(Buffer.from(e.recipe!, 'hex'))
  }
}

function internal(e: TreeEntry, why: string): SnapdirError {
  return new SnapdirError('ERR_INTERNAL', `internal error: tree entry '${e.path.toString()}': ${why}`)
}

/** A decoded root: a whole format 1 tree, or a format 2 root naming its parts. */
export type TreeRoot =
  | { format: 1; tree: Tree }
  | { format: 2; chunker: ChunkerParams; parts: Array<{ id: string; entries: number }> }

/** Decodes and fully validates a tree given whole (TreeBytes, or a format 1 object alone). */
export function decodeTree(bytes: Buffer | TreeBytes, what: string): Tree {
  const { root: rootBytes, parts } = Buffer.isBuffer(bytes) ? { root: bytes, parts: [] } : bytes
  const root = decodeTreeRoot(rootBytes, what)
  if (root.format === 1) return root.tree
  if (parts.length !== root.parts.length) malformed(what, `its root names ${root.parts.length} parts, ${parts.length} given`)
  const entries: TreeEntry[] = []
  root.parts.forEach((p, i) => {
    const id = toHex(hashBytes(parts[i]!))
    if (id !== p.id) malformed(what, `part ${i} is ${id}, the root names ${p.id}`)
    entries.push(...decodeTreePart(parts[i]!, p.entries, entries.length, `${what}, part ${p.id}`))
  })
  return assembleTree(root.chunker, entries, what)
}

function malformed(what: string, why: string): never {
  throw new SnapdirError('ERR_TREE_MALFORMED', `${what}: malformed tree: ${why}`)
}

/** The entries of format 2 trees put together, checked as a whole (paths, order, parents, links). */
export function assembleTree(chunker: ChunkerParams, entries: TreeEntry[], what: string): Tree {
  checkTreePaths(entries, (why) => malformed(what, why))
  return { chunker, entries, format: 2 }
}

function unpack(bytes: Buffer, bad: (why: string) => never): unknown {
  try {
    return msgpackReader().unpack(bytes)
  } catch (err) {
    return bad(`not msgpack (${(err as Error).message})`)
  }
}

/**
 * Decodes a tree's root object: a format 1 tree whole (validated), or a format 2 root and the parts it
 * names. Anything off is ERR_TREE_MALFORMED naming `what` (the snapshot).
 */
export function decodeTreeRoot(bytes: Buffer, what: string): TreeRoot {
  const bad = (why: string): never => malformed(what, why)
  const wire = unpack(bytes, bad)
  if (!Array.isArray(wire) || wire.length !== 4 || wire[0] !== TREE_MAGIC) return bad('not a snapdir tree')
  const format = wire[1] as unknown
  if (format !== 1 && format !== 2) return bad(`format ${String(format)} is not supported (this snapdir reads formats 1 and 2)`)
  const c = wire[2] as unknown
  if (!Array.isArray(c) || c.length !== 7 || !c.slice(0, 4).every(isUint) || typeof c[4] !== 'string' || !/^\d+$/.test(c[4]) || !isUint(c[5]) || !isUint(c[6])) {
    return bad('chunker parameters')
  }
  const [min, avg, max, level, seed, inlineMax, packMax] = c as [number, number, number, number, string, number, number]
  const chunker: ChunkerParams = { min, avg, max, level, seed: BigInt(seed), inlineMax, packMax }
  if (!Array.isArray(wire[3])) return bad(format === 1 ? 'entries' : 'parts')
  if (format === 1) {
    const ids = new SharedIds()
    const entries = (wire[3] as unknown[]).map((w, i) => decodeEntry(w, i, 1, bad, ids))
    checkTreePaths(entries, bad)
    return { format: 1, tree: { chunker, entries, format: 1 } }
  }
  const list = wire[3] as unknown[]
  if (list.length % 2 !== 0) return bad('parts')
  const parts: Array<{ id: string; entries: number }> = []
  for (let k = 0; k < list.length; k += 2) {
    const [id, entries] = [list[k], list[k + 1]]
    if (!isBytes(id) || id.length !== ID_BYTES || !isUint(entries) || entries === 0) return bad(`part ${k / 2}`)
    parts.push({ id: toHex(id), entries })
  }
  if (parts.length === 0) return bad('no parts (a tree has at least its root directory)')
  return { format: 2, chunker, parts }
}

/**
 * Decodes one part of a format 2 tree: `count` entries, the first being entry `first` of the tree
 * (for messages). Each entry is checked on its own; assembleTree checks them together.
 */
export function decodeTreePart(bytes: Buffer, count: number, first: number, what: string): TreeEntry[] {
  const bad = (why: string): never => malformed(what, why)
  const wire = unpack(bytes, bad)
  if (!Array.isArray(wire)) return bad('a part is not an array of entries')
  if (wire.length !== count) return bad(`a part of ${wire.length} entries, the root says ${count}`)
  const ids = new SharedIds()
  return (wire as unknown[]).map((w, i) => decodeEntry(w, first + i, 2, bad, ids))
}

/**
 * One Buffer for a chunk ID that refs in a row name: small files packed together (pack groups) slice
 * the same chunks, so a file's first ref mostly names its predecessor's last chunk. A Buffer object
 * costs about 100 bytes whatever it views; one per ref was a fifth of a decoded tree of small files.
 */
class SharedIds {
  private last: Buffer | null = null

  share(id: Uint8Array): Buffer {
    if (this.last !== null && this.last.equals(id)) return this.last
    return (this.last = asBuffer(id))
  }
}

function decodeEntry(w: unknown, i: number, format: TreeFormat, bad: (why: string) => never, ids: SharedIds): TreeEntry {
  const where = `entry ${i}`
  if (!Array.isArray(w) || !(w.length === 12 || (format === 2 && w.length === 13))) return bad(`${where} is not a 12-field array`)
  const [path, type, mode, uid, gid, mtimeSec, mtimeNsec, size, target, rdev, xattrs, chunks, recipe] = w as unknown[]
  if (!isBytes(path)) return bad(`${where}: path`)
  if (!isUint(type) || type >= ENTRY_TYPES.length) return bad(`${where}: type ${String(type)}`)
  if (!isUint(mode) || mode > 0o7777) return bad(`${where}: mode`)
  if (!isUint(uid) || !isUint(gid)) return bad(`${where}: owner`)
  if (typeof mtimeSec !== 'number' || !Number.isSafeInteger(mtimeSec) || !isUint(mtimeNsec) || mtimeNsec > 999_999_999) {
    return bad(`${where}: mtime`)
  }
  if (!isUint(size)) return bad(`${where}: size`)
  if (target !== null && !isBytes(target)) return bad(`${where}: target`)
  if (!isUint(rdev)) return bad(`${where}: rdev`)
  if (!Array.isArray(xattrs) || xattrs.length % 2 !== 0 || !xattrs.every(isBytes)) return bad(`${where}: xattrs`)
  const entryType = ENTRY_TYPES[type]!
  if (isBytes(chunks)) {
    if (format === 2) return bad(`${where}: inline content in a format 2 tree`)
    if (entryType !== 'file' || chunks.length !== size) return bad(`${where}: inline content of ${chunks.length} bytes, size says ${size}`)
  } else if (!Array.isArray(chunks) || chunks.length % 4 !== 0) return bad(`${where}: chunks`)
  const inline = isBytes(chunks) ? asBuffer(chunks) : undefined
  const chunkList = inline ? [] : (chunks as unknown[])
  // sized to fit, not grown by push(): a tree of 200,000 small files holds one such array per file
  const refs = new Array<ChunkRef>(chunkList.length / 4)
  let total = 0
  for (let k = 0; k < chunkList.length; k += 4) {
    const [id, offset, length, count] = [chunkList[k], chunkList[k + 1], chunkList[k + 2], chunkList[k + 3]]
    if (!isBytes(id) || id.length !== ID_BYTES || !isUint(offset) || !isUint(length) || length === 0 || !isUint(count) || count === 0 ||
      (count > 1 && offset !== 0)) {
      return bad(`${where}: chunk ${k / 4}`)
    }
    refs[k / 4] = { id: ids.share(id), offset, length, count }
    total += length * count
  }
  if (entryType === 'file' ? !inline && w.length === 12 && total !== size : refs.length > 0 || size !== 0) {
    return bad(`${where}: chunk lengths add up to ${total}, size says ${size}`)
  }
  const needsTarget = entryType === 'symlink' || entryType === 'hardlink'
  if (needsTarget !== (target !== null)) return bad(`${where}: ${entryType} ${needsTarget ? 'needs' : 'cannot have'} a target`)
  const pairs: Array<[Buffer, Buffer]> = []
  for (let k = 0; k < xattrs.length; k += 2) pairs.push([asBuffer(xattrs[k] as Uint8Array), asBuffer(xattrs[k + 1] as Uint8Array)])
  const entry: TreeEntry = {
    path: asBuffer(path), type: entryType, mode, uid, gid, mtimeSec, mtimeNsec, size,
    target: target === null ? null : asBuffer(target), rdev, xattrs: pairs, chunks: refs,
  }
  if (inline) entry.inline = inline
  if (w.length === 13) {
    if (!isBytes(recipe) || recipe.length !== ID_BYTES || entryType !== 'file' || refs.length > 0) return bad(`${where}: recipe`)
    entry.recipe = toHex(recipe)
  }
  return entry
}

/** Logical bytes of a tree: what a pull writes, counting holes. */
export function treeSize(tree: Tree): number {
  return tree.entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0)
}
