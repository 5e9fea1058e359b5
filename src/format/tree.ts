// The snapshot tree: canonical msgpack of positional arrays (no maps, so no key order to agree on),
// entries sorted by raw path bytes, xattrs by name. Identical trees encode to identical bytes, and the
// BLAKE3 of those bytes is the snapshot ID.
//   tree  = ['snapdir-tree', FORMAT, [min, avg, max, level, seed(decimal string), inlineMax], [entry…]]
//   entry = [path, type, mode, uid, gid, mtimeSec, mtimeNsec, size, target|null, rdev,
//            [xattrName, xattrValue, …], [chunkId, offset, length, count, …] | inline content (bin)]
import { createRequire } from 'node:module'
import type { Unpackr } from 'msgpackr'
import type { ChunkerParams } from '../chunk/params.js'
import { SnapdirError } from '../util/errors.js'
import { ID_BYTES } from './id.js'
import { MsgpackWriter } from './msgpack-writer.js'
import { checkTreePaths } from './tree-paths.js'

export const TREE_MAGIC = 'snapdir-tree'
export const TREE_FORMAT = 1

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
  /** the content of a small file, kept in the tree instead of chunks (then `chunks` is empty) */
  inline?: Buffer
}

export interface Tree {
  chunker: ChunkerParams
  entries: TreeEntry[]
}

// Trees are written by MsgpackWriter and read by msgpackr, which loads on first use: push never needs it
let unpackr: Unpackr | null = null
function msgpackReader(): Unpackr {
  if (!unpackr) {
    const { Unpackr } = createRequire(import.meta.url)('msgpackr') as typeof import('msgpackr')
    unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' })
  }
  return unpackr
}

export function compareBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b)
}

export function encodeTree(tree: Tree): Buffer {
  return new TreeEncoder().encode(tree)
}

/**
 * Encodes a tree, with entries encoded ahead where given: push adds each entry once it is final (a
 * file once its chunks are known), while its other files are still being cut, so that encoding the
 * tree after the last chunk is mostly copying. An entry must not change once added.
 */
export class TreeEncoder {
  private readonly ahead = new MsgpackWriter()
  private readonly spans = new Map<TreeEntry, { start: number; end: number }>()

  add(e: TreeEntry): void {
    const start = this.ahead.length
    writeEntry(this.ahead, e)
    this.spans.set(e, { start, end: this.ahead.length })
  }

  encode(tree: Tree): Buffer {
    const entries = [...tree.entries].sort((a, b) => compareBytes(a.path, b.path))
    const c = tree.chunker
    const w = new MsgpackWriter(this.ahead.length + 64 * 1024)
    w.array(4)
    w.str(TREE_MAGIC)
    w.number(TREE_FORMAT)
    w.array(7)
    for (const v of [c.min, c.avg, c.max, c.level]) w.number(v)
    w.str(c.seed.toString())
    w.number(c.inlineMax ?? 0)
    w.number(c.packMax ?? 0)
    w.array(entries.length)
    for (const e of entries) {
      const span = this.spans.get(e)
      if (span) w.copyFrom(this.ahead, span.start, span.end)
      else writeEntry(w, e)
    }
    return w.bytes()
  }
}

function writeEntry(w: MsgpackWriter, e: TreeEntry): void {
  w.array(12)
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
  if (e.inline !== undefined) w.bin(e.inline)
  else {
    w.array(4 * e.chunks.length)
    for (const r of e.chunks) {
      w.bin(r.id)
      w.number(r.offset)
      w.number(r.length)
      w.number(r.count)
    }
  }
}

/** Decodes and fully validates a tree; anything off is ERR_TREE_MALFORMED naming the snapshot. */
export function decodeTree(bytes: Buffer, what: string): Tree {
  const bad = (why: string): never => {
    throw new SnapdirError('ERR_TREE_MALFORMED', `${what}: malformed tree: ${why}`)
  }
  let wire: unknown
  try {
    wire = msgpackReader().unpack(bytes)
  } catch (err) {
    return bad(`not msgpack (${(err as Error).message})`)
  }
  if (!Array.isArray(wire) || wire.length !== 4 || wire[0] !== TREE_MAGIC) return bad('not a snapdir tree')
  if (wire[1] !== TREE_FORMAT) return bad(`format ${String(wire[1])} is not supported (this snapdir reads ${TREE_FORMAT})`)
  const c = wire[2] as unknown
  if (!Array.isArray(c) || c.length !== 7 || !c.slice(0, 4).every(isUint) || typeof c[4] !== 'string' || !/^\d+$/.test(c[4]) || !isUint(c[5]) || !isUint(c[6])) {
    return bad('chunker parameters')
  }
  const [min, avg, max, level, seed, inlineMax, packMax] = c as [number, number, number, number, string, number, number]
  const chunker: ChunkerParams = { min, avg, max, level, seed: BigInt(seed), inlineMax, packMax }
  if (!Array.isArray(wire[3])) return bad('entries')
  const entries = (wire[3] as unknown[]).map((w, i) => decodeEntry(w, i, bad))
  checkTreePaths(entries, bad)
  return { chunker, entries }
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function isBytes(v: unknown): v is Buffer {
  return v instanceof Uint8Array
}

function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}

function decodeEntry(w: unknown, i: number, bad: (why: string) => never): TreeEntry {
  const where = `entry ${i}`
  if (!Array.isArray(w) || w.length !== 12) return bad(`${where} is not a 12-field array`)
  const [path, type, mode, uid, gid, mtimeSec, mtimeNsec, size, target, rdev, xattrs, chunks] = w as unknown[]
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
    if (entryType !== 'file' || chunks.length !== size) return bad(`${where}: inline content of ${chunks.length} bytes, size says ${size}`)
  } else if (!Array.isArray(chunks) || chunks.length % 4 !== 0) return bad(`${where}: chunks`)
  const inline = isBytes(chunks) ? asBuffer(chunks) : undefined
  const chunkList = inline ? [] : (chunks as unknown[])
  const refs: ChunkRef[] = []
  let total = 0
  for (let k = 0; k < chunkList.length; k += 4) {
    const [id, offset, length, count] = [chunkList[k], chunkList[k + 1], chunkList[k + 2], chunkList[k + 3]]
    if (!isBytes(id) || id.length !== ID_BYTES || !isUint(offset) || !isUint(length) || length === 0 || !isUint(count) || count === 0 ||
      (count > 1 && offset !== 0)) {
      return bad(`${where}: chunk ${k / 4}`)
    }
    refs.push({ id: asBuffer(id), offset, length, count })
    total += length * count
  }
  if (entryType === 'file' ? !inline && total !== size : refs.length > 0 || size !== 0) {
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
  return entry
}

/** Logical bytes of a tree: what a pull writes, counting holes. */
export function treeSize(tree: Tree): number {
  return tree.entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0)
}
