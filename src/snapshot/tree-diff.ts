// What changed between two trees of one store, path by path. A format 2 tree is a root naming parts
// (format/tree.ts), and a part is named by its bytes, so a part both trees name holds the very same
// entries in both: those are left undecoded and only the parts one tree alone names are read and
// merged by path. An edit of a large tree touches a handful of parts, so the cost follows the edit,
// not the tree (a one-package change of a root file system decodes a few dozen parts of thousands).
//
// Content is compared without trusting chunk refs too far: a small file is a slice of a pack group
// (ingest/pack-groups.ts) that an edit of a neighbour cuts again, so equal content can come with other
// refs. Refs equal means content equal; a large file's refs are a function of its bytes alone (given
// the same chunker), so refs that differ there mean content that differs; anything else is decided
// by hashing both contents (small files, read through one shared chunk cache).
import { createHash } from 'node:crypto'
import { decodeObject } from '../format/object.js'
import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import { compareBytes, decodeTreePart, decodeTreeRoot, type ChunkRef, type EntryType, type TreeEntry } from '../format/tree.js'
import type { ChunkerParams } from '../chunk/params.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, objectKey, readRecipe } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

/** What can differ between two entries at one path, in the order they are reported. */
export const CHANGE_KINDS = ['type', 'content', 'mode', 'owner', 'times', 'xattrs', 'target', 'device'] as const
export type ChangeKind = (typeof CHANGE_KINDS)[number]

export interface PathDiff {
  path: string
  /** A added (only in the second tree), D removed (only in the first), M changed */
  status: 'A' | 'D' | 'M'
  /** the entry's type in the second tree (the first, for D) */
  type: EntryType
  /** M: what changed; empty for A and D */
  changes: ChangeKind[]
  /** files: the content's size before and after (null on the side that has no file there) */
  size?: [number | null, number | null]
}

export interface DiffCounts {
  added: number
  removed: number
  changed: number
  /** how many changed paths each kind of change touches */
  kinds: Record<ChangeKind, number>
}

export interface TreeDiff {
  /** null: no tree (an added or removed layer) */
  from: string | null
  to: string | null
  /** in path order */
  paths: PathDiff[]
  counts: DiffCounts
  entries: { from: number; to: number }
  /** parts of each tree (1 for a format 1 tree) and how many of them were decoded */
  parts: { from: number; to: number; shared: number; decoded: number }
}

export interface TreeDiffOptions {
  /** objects read at once */
  jobs?: number
  /** shared between diffs of one command, so a chunk two layers read is fetched once */
  chunks?: ChunkCache
}

/** The chunker of no tree: its files are compared with nothing, so it is never asked. */
const NO_CHUNKER: ChunkerParams = { min: 0, avg: 0, max: 0, level: 0, seed: 0n, inlineMax: 0, packMax: 0 }

/** Parts of a tree read at once by default: the same as a tree read (store/objects.ts). */
const JOBS = 16

/** A tree's root read: its parts (a format 1 tree is one part, already decoded) and its chunker. */
interface TreeOutline {
  chunker: ChunkerParams
  parts: Array<{ id: string; entries: number; decoded?: TreeEntry[] }>
}

export function emptyCounts(): DiffCounts {
  return { added: 0, removed: 0, changed: 0, kinds: Object.fromEntries(CHANGE_KINDS.map((k) => [k, 0])) as Record<ChangeKind, number> }
}

export function addCounts(into: DiffCounts, c: DiffCounts): void {
  into.added += c.added
  into.removed += c.removed
  into.changed += c.changed
  for (const k of CHANGE_KINDS) into.kinds[k] += c.kinds[k]
}

/** The paths that differ between trees `from` and `to` of `store` (null: an empty side), and how. */
export async function diffTrees(store: ReadStore, from: string | null, to: string | null, options: TreeDiffOptions = {}): Promise<TreeDiff> {
  const jobs = options.jobs ?? JOBS
  const chunks = options.chunks ?? new ChunkCache(store)
  const [a, b] = await Promise.all([readOutline(store, from), readOutline(store, to)])
  const inB = new Set(b.parts.map((p) => p.id))
  const inA = new Set(a.parts.map((p) => p.id))
  const shared = a.parts.filter((p) => inB.has(p.id)).length
  // a part named by both trees holds the same entries in both: none of them differ
  const [left, right] = await Promise.all([entriesOutside(store, from, a, inB, jobs), entriesOutside(store, to, b, inA, jobs)])
  const decoded = a.parts.filter((p) => !inB.has(p.id)).length + b.parts.filter((p) => !inA.has(p.id)).length

  const paths: PathDiff[] = []
  const pending: Array<{ at: number; a: TreeEntry; b: TreeEntry }> = []
  let i = 0
  let j = 0
  while (i < left.length || j < right.length) {
    const ea = left[i]
    const eb = right[j]
    const c = ea === undefined ? 1 : eb === undefined ? -1 : compareBytes(ea.path, eb.path)
    if (c < 0) {
      paths.push(pathDiff(ea!, 'D', []))
      i++
    } else if (c > 0) {
      paths.push(pathDiff(eb!, 'A', []))
      j++
    } else {
      const changes = metadataChanges(ea!, eb!)
      if (ea!.type === 'file' && eb!.type === 'file') {
        // content decided below, several at once; the entry keeps its place in path order
        pending.push({ at: paths.length, a: ea!, b: eb! })
        paths.push(pathDiff(eb!, 'M', changes, ea))
      } else if (changes.length > 0) paths.push(pathDiff(eb!, 'M', changes, ea))
      i++
      j++
    }
  }
  const contents = new ContentCompare(store, chunks, a.chunker, b.chunker)
  await forEachLimit(pending, jobs, async ({ at, a: ea, b: eb }) => {
    if (!(await contents.same(ea, eb))) paths[at]!.changes.splice(1, 0, 'content')
  })
  const out = paths.filter((p) => p.status !== 'M' || p.changes.length > 0)
  const counts = emptyCounts()
  for (const p of out) {
    if (p.status === 'A') counts.added++
    else if (p.status === 'D') counts.removed++
    else {
      counts.changed++
      for (const k of p.changes) counts.kinds[k]++
    }
  }
  for (const p of out) p.changes.sort((x, y) => CHANGE_KINDS.indexOf(x) - CHANGE_KINDS.indexOf(y))
  const total = (t: TreeOutline) => t.parts.reduce((n, p) => n + p.entries, 0)
  return { from, to, paths: out, counts, entries: { from: total(a), to: total(b) }, parts: { from: a.parts.length, to: b.parts.length, shared, decoded } }
}

function pathDiff(e: TreeEntry, status: PathDiff['status'], changes: ChangeKind[], before?: TreeEntry): PathDiff {
  const d: PathDiff = { path: printablePath(e.path), status, type: e.type, changes }
  const size = (x: TreeEntry | undefined): number | null => (x?.type === 'file' ? x.size : null)
  if (status === 'A' && e.type === 'file') d.size = [null, e.size]
  else if (status === 'D' && e.type === 'file') d.size = [e.size, null]
  else if (status === 'M' && (e.type === 'file' || before?.type === 'file')) d.size = [size(before), size(e)]
  return d
}

/** Everything but content: what the two entries' own fields say. */
function metadataChanges(a: TreeEntry, b: TreeEntry): ChangeKind[] {
  const out: ChangeKind[] = []
  if (a.type !== b.type) out.push('type')
  if (a.mode !== b.mode) out.push('mode')
  if (a.uid !== b.uid || a.gid !== b.gid) out.push('owner')
  if (a.mtimeSec !== b.mtimeSec || a.mtimeNsec !== b.mtimeNsec) out.push('times')
  if (a.xattrs.length !== b.xattrs.length || a.xattrs.some(([n, v], k) => !n.equals(b.xattrs[k]![0]) || !v.equals(b.xattrs[k]![1]))) out.push('xattrs')
  if (!sameBytes(a.target, b.target) && a.type === b.type) out.push('target')
  if (a.rdev !== b.rdev && a.type === b.type) out.push('device')
  return out
}

function sameBytes(a: Buffer | null | undefined, b: Buffer | null | undefined): boolean {
  return a === b || (a != null && b != null && a.equals(b))
}

async function readOutline(store: ReadStore, id: string | null): Promise<TreeOutline> {
  if (id === null) return { chunker: NO_CHUNKER, parts: [] }
  let stored: Buffer
  try {
    stored = await store.get(objectKey('tree', id))
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') {
      throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${store.url}`, { data: { id, store: store.url } })
    }
    throw err
  }
  const root = decodeTreeRoot(decodeObject(stored, id, `tree ${id} from ${store.url}`), `snapshot ${id} in ${store.url}`)
  if (root.format === 1) return { chunker: root.tree.chunker, parts: [{ id, entries: root.tree.entries.length, decoded: root.tree.entries }] }
  return { chunker: root.chunker, parts: root.parts }
}

/** The entries of the parts of `tree` whose ID is not in `skip`, in path order, each part re-hashed. */
async function entriesOutside(store: ReadStore, id: string | null, tree: TreeOutline, skip: Set<string>, jobs: number): Promise<TreeEntry[]> {
  const what = `snapshot ${id} in ${store.url}`
  const firsts: number[] = []
  tree.parts.reduce((n, p) => (firsts.push(n), n + p.entries), 0)
  const wanted = tree.parts.map((p, k) => ({ ...p, k })).filter((p) => !skip.has(p.id))
  const out: TreeEntry[][] = new Array<TreeEntry[]>(tree.parts.length).fill([])
  await forEachLimit(wanted, jobs, async (p) => {
    if (p.decoded) {
      out[p.k] = p.decoded
      return
    }
    const key = objectKey('tree-part', p.id)
    let raw: Buffer
    try {
      raw = decodeObject(await store.get(key), p.id, `part ${p.id} of tree ${id} from ${store.url}`)
    } catch (err) {
      if (!isObjectDamage(err)) throw err
      const message = err.code === 'ERR_OBJECT_MISSING' ? `part ${p.id} of tree ${id} is missing from ${store.url}` : err.message
      throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what}: ${message}`, { cause: err, data: { part: p.id, tree: id, key } })
    }
    out[p.k] = decodeTreePart(raw, p.entries, firsts[p.k]!, `${what}, part ${p.id}`)
  })
  return out.flat()
}

/** Verified chunks kept a while (least recently used dropped past `maxBytes`): packed files share them. */
export class ChunkCache {
  private readonly held = new Map<string, Promise<Buffer>>()
  private readonly sizes = new Map<string, number>()
  private bytes = 0

  constructor(
    private readonly store: ReadStore,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {}

  async get(ref: ChunkRef): Promise<Buffer> {
    const id = toHex(ref.id)
    let p = this.held.get(id)
    if (p !== undefined) {
      this.held.delete(id)
      this.held.set(id, p)
      return p
    }
    p = getChunk(this.store, id, { needs: ref.offset + ref.length }).then(({ raw }) => raw)
    this.held.set(id, p)
    p.then(
      (raw) => {
        if (!this.held.has(id)) return
        this.sizes.set(id, raw.length)
        this.bytes += raw.length
        for (const [old] of this.held) {
          if (this.bytes <= this.maxBytes || old === id) break
          this.held.delete(old)
          this.bytes -= this.sizes.get(old) ?? 0
          this.sizes.delete(old)
        }
      },
      () => this.held.delete(id),
    )
    return p
  }
}

/** Decides whether two file entries hold the same bytes, reading as little as it can. */
class ContentCompare {
  constructor(
    private readonly store: ReadStore,
    private readonly chunks: ChunkCache,
    private readonly chunkerA: ChunkerParams,
    private readonly chunkerB: ChunkerParams,
  ) {}

  async same(a: TreeEntry, b: TreeEntry): Promise<boolean> {
    if (a.size !== b.size) return false
    if (a.size === 0) return true
    if (a.recipe !== undefined || b.recipe !== undefined) {
      if (a.recipe === b.recipe) return true
      // a layer blob: its digest names its bytes, whichever way each side stores it
      return (await this.blobDigest(a)) === (await this.blobDigest(b))
    }
    if (a.inline && b.inline) return a.inline.equals(b.inline)
    if (!a.inline && !b.inline && sameRefs(a.chunks, b.chunks)) return true
    // a file cut on its own: the same chunker gives the same refs for the same bytes
    if (!a.inline && !b.inline && a.size >= (this.chunkerA.packMax ?? 0) && sameChunker(this.chunkerA, this.chunkerB)) return false
    return (await this.hash(a, 'sha256')) === (await this.hash(b, 'sha256'))
  }

  private async blobDigest(e: TreeEntry): Promise<string> {
    if (e.recipe !== undefined) return (await readRecipe(this.store, e.recipe)).recipe.digest
    return `sha256:${await this.hash(e, 'sha256')}`
  }

  private async hash(e: TreeEntry, algorithm: string): Promise<string> {
    const h = createHash(algorithm)
    if (e.inline) h.update(e.inline)
    for (const ref of e.chunks) {
      const slice = (await this.chunks.get(ref)).subarray(ref.offset, ref.offset + ref.length)
      for (let n = 0; n < ref.count; n++) h.update(slice)
    }
    return h.digest('hex')
  }
}

function sameRefs(a: ChunkRef[], b: ChunkRef[]): boolean {
  return a.length === b.length && a.every((r, k) => {
    const s = b[k]!
    return r.offset === s.offset && r.length === s.length && r.count === s.count && r.id.equals(s.id)
  })
}

function sameChunker(a: ChunkerParams, b: ChunkerParams): boolean {
  return a.min === b.min && a.avg === b.avg && a.max === b.max && a.level === b.level && a.seed === b.seed && a.packMax === b.packMax
}
