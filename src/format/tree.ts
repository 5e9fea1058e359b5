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
  return new TreeEncoder(tree.format ?? TREE_FORMAT).encode(tree)
}

/**
 * Encodes a tree, with entries encoded ahead where given: push adds each entry once it is final (a
 * file once its chunks are known), while its other files are still being cut, so that encoding the
 * tree after the last chunk is mostly copying. An entry must not change once added.
 */
export class TreeEncoder {
  private readonly ahead = new MsgpackWriter()
  /**
   * where each entry added is in `ahead`: bytes ends[k - 1] (0 for k = 0) to ends[k] for the kth
   * entry added. A number per entry, not an object: push holds one per file of the tree until the end.
   */
  private readonly added = new Map<TreeEntry, number>()
  private readonly ends: number[] = []

  /** `format`: the one entries are encoded ahead in; a tree of another format is encoded afresh */
  constructor(readonly format: TreeFormat = TREE_FORMAT) {}

  add(e: TreeEntry): void {
    writeEntry(this.ahead, e, this.format)
    this.added.set(e, this.ends.push(this.ahead.length) - 1)
  }

  encode(tree: Tree): TreeBytes {
    const parts: Buffer[] = []
    const root = this.encodeParts(tree, (part) => parts.push(part))
    return { root, parts }
  }

  /**
   * Encodes a tree, handing each format 2 part (with its ID, its BLAKE3) to `onPart` as it is cut,
   * and returns the root: push stores the parts compressed and need not hold them all raw too.
   */
  encodeParts(tree: Tree, onPart: (part: Buffer, id: Buffer) => void): Buffer {
    const format = tree.format ?? TREE_FORMAT
    const entries = [...tree.entries].sort((a, b) => compareBytes(a.path, b.path))
    const ahead = format === this.format ? this.added : new Map<TreeEntry, number>()
    const aheadStart = (k: number): number => (k === 0 ? 0 : this.ends[k - 1]!)
    if (format === 1) {
      const w = new MsgpackWriter(this.ahead.length + 64 * 1024)
      writeHeader(w, tree, 1)
      w.array(entries.length)
      for (const e of entries) {
        const k = ahead.get(e)
        if (k !== undefined) w.copyFrom(this.ahead, aheadStart(k), this.ends[k]!)
        else writeEntry(w, e, 1)
      }
      return w.bytes()
    }
    // each entry's bytes (in `ahead`, or else in `scratch` after the ahead ones), then the parts they fall in
    const scratch = new MsgpackWriter()
    const starts = new Float64Array(entries.length)
    const ends = new Float64Array(entries.length)
    entries.forEach((e, i) => {
      const k = ahead.get(e)
      if (k !== undefined) {
        starts[i] = aheadStart(k)
        ends[i] = this.ends[k]!
        return
      }
      starts[i] = this.ahead.length + scratch.length
      writeEntry(scratch, e, 2)
      ends[i] = this.ahead.length + scratch.length
    })
    const copy = (w: MsgpackWriter, i: number): void => {
      const from = starts[i]! >= this.ahead.length ? scratch : this.ahead
      const base = from === scratch ? this.ahead.length : 0
      w.copyFrom(from, starts[i]! - base, ends[i]! - base)
    }
    const ids: Buffer[] = []
    const counts: number[] = []
    let first = 0
    let bytes = 0
    const cut = (end: number): void => {
      const w = new MsgpackWriter(bytes + 8)
      w.array(end - first)
      for (let i = first; i < end; i++) copy(w, i)
      const part = w.bytes()
      const id = hashBytes(part)
      ids.push(id)
      counts.push(end - first)
      onPart(part, id)
      first = end
      bytes = 0
    }
    entries.forEach((e, i) => {
      const size = ends[i]! - starts[i]!
      if (i > first && (isPartAnchor(e.path) || bytes + size > PART_MAX_BYTES)) cut(i)
      bytes += size
    })
    if (entries.length > first) cut(entries.length)
    const w = new MsgpackWriter(ids.length * 48 + 128)
    writeHeader(w, tree, 2)
    w.array(2 * ids.length)
    ids.forEach((id, i) => {
      w.bin(id)
      w.number(counts[i]!)
    })
    return w.bytes()
  }
}

/** Whether a format 2 part starts at this path (see PART_ANCHOR). */
export function isPartAnchor(path: Buffer): boolean {
  return hashBytes(path).readUInt32LE(4) % PART_ANCHOR === 0
}

function writeHeader(w: MsgpackWriter, tree: Tree, format: TreeFormat): void {
  const c = tree.chunker
  w.array(4)
  w.str(TREE_MAGIC)
  w.number(format)
  w.array(7)
  for (const v of [c.min, c.avg, c.max, c.level]) w.number(v)
  w.str(c.seed.toString())
  w.number(c.inlineMax ?? 0)
  w.number(c.packMax ?? 0)
}

function writeEntry(w: MsgpackWriter, e: TreeEntry, format: TreeFormat): void {
  const recipe = format === 2 && e.recipe !== undefined
  if (format === 1 && e.recipe !== undefined) throw internal(e, 'a recipe cannot be stored in a format 1 tree')
  if (format === 2 && e.inline !== undefined && e.inline.length > 0) throw internal(e, 'format 2 trees hold no file content (inlineMax must be 0)')
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
  if (format === 1 && e.inline !== undefined) w.bin(e.inline)
  else {
    writeChunkRefs(w, e.chunks)
  }
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
