// Typed access to the immutable objects of a store: where each kind lives and how it is checked.
import { decodeObject, encodeObject } from '../format/object.js'
import { decodeRecipe, encodeRecipe, type Recipe } from '../format/recipe.js'
import { assembleTree, decodeTreePart, decodeTreeRoot, TreeEncoder, treeEncoderOf, type Tree, type TreeEntry } from '../format/tree.js'
import { hashBytes } from '../chunk/hash.js'
import { toHex } from '../format/id.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import type { ReadStore, Store } from './store.js'

/** tree-part: a run of a format 2 tree's entries, named by its root (format/tree.ts); recipe: a layer blob's (format/recipe.ts) */
export type ObjectKind = 'chunk' | 'tree' | 'tree-part' | 'recipe'
const DIRS: Record<ObjectKind, string> = { chunk: 'chunks', tree: 'trees', 'tree-part': 'tree-parts', recipe: 'recipes' }

/** Tree parts read or written at once: a root names one per ~64 entries, hundreds for a root file system. */
const PART_JOBS = 16

export interface TreeReadOptions {
  /** parts fetched at once (default 16); a mount, waiting on them before it is up, asks for more */
  jobs?: number
}

/** The top directory of a kind's keys ('chunks'): objectKey adds <first two hex digits>/<id>. */
export function objectDirectory(kind: ObjectKind): string {
  return DIRS[kind]
}

export function objectKey(kind: ObjectKind, id: string): string {
  return `${DIRS[kind]}/${id.slice(0, 2)}/${id}`
}

/** A read that found the object missing or not matching its name (as opposed to a store failure). */
export function isObjectDamage(err: unknown): err is SnapdirError {
  return err instanceof SnapdirError && (err.code === 'ERR_OBJECT_MISSING' || err.code === 'ERR_OBJECT_CORRUPT')
}

/** A stored object: its ID and its stored form (header and payload). */
export interface EncodedObject {
  id: string
  object: Buffer
}

/**
 * A tree ready to store: its ID and its root's stored form (the CPU part of writeTree, done ahead),
 * with its parts (format 2), which must be stored, and flushed, before the root names them.
 */
export interface EncodedTree extends EncodedObject {
  parts?: EncodedObject[]
}

/** A tree, or its entries encoded already (TreeEncoder: push encodes them as its files are cut). */
export function encodeTreeObject(tree: Tree | TreeEncoder): EncodedTree {
  const encoder = tree instanceof TreeEncoder ? tree : treeEncoderOf(tree)
  // each part compressed as it is cut: only the stored forms are kept
  const parts: EncodedObject[] = []
  const root = encoder.encodeParts((part, id) => parts.push({ id: toHex(id), object: encodeObject(part) }))
  return { id: toHex(hashBytes(root)), object: encodeObject(root), parts }
}

/**
 * Stores the parts of a tree that the store lacks (none if it has the root: then it has them all);
 * returns how many it wrote. The caller flushes before storing the root (writeTree, or commit.ts for
 * several trees at once).
 */
export async function writeTreeParts(store: Store, tree: EncodedTree): Promise<number> {
  if (!tree.parts?.length || (await store.has(objectKey('tree', tree.id)))) return 0
  let written = 0
  await forEachLimit(tree.parts ?? [], PART_JOBS, async (p) => {
    const key = objectKey('tree-part', p.id)
    if (await store.has(key)) return
    await store.put(key, p.object)
    written++
  })
  return written
}

/** Stores a tree (encoding it first unless given encoded) unless the store has it; returns its ID. */
export async function writeTree(store: Store, tree: Tree | TreeEncoder | EncodedTree): Promise<string> {
  const encoded = 'object' in tree ? tree : encodeTreeObject(tree)
  const key = objectKey('tree', encoded.id)
  if (await store.has(key)) return encoded.id
  // the root only once its parts are durable: a root at hand means the whole tree is
  if ((await writeTreeParts(store, encoded)) > 0) await store.flush()
  await store.put(key, encoded.object)
  return encoded.id
}

/** Loads a snapshot's tree (its root and, in format 2, its parts); a missing root is ERR_SNAPSHOT_NOT_FOUND. */
export async function readTree(store: ReadStore, id: string, options: TreeReadOptions = {}): Promise<Tree> {
  try {
    return (await readStoredTree(store, id, undefined, options)).tree
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING' && err.data.part === undefined) throw notFound(store, id)
    throw err
  }
}

function notFound(store: ReadStore, id: string): SnapdirError {
  return new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${store.url}`, { data: { id, store: store.url } })
}

/** A tree as the store holds it: decoded, with its objects as stored (root first) and their sizes. */
export interface StoredTree {
  tree: Tree
  /** the root as stored */
  root: Buffer
  /** format 2: the parts as stored, in order (empty for format 1) */
  parts: EncodedObject[]
  /** format 2: how many of the tree's entries each part holds, in order (empty for format 1) */
  partEntries: number[]
  /** decoded bytes of the root and parts */
  rawBytes: number
  /** stored bytes of the root and parts */
  storedBytes: number
}

/**
 * Reads a tree: its root, then its parts (several at once), each re-hashed, and decodes it whole.
 * A missing or damaged root is the store's ERR_OBJECT_MISSING / ERR_OBJECT_CORRUPT; a missing or
 * damaged part is the same code naming the part and the tree, with `data.part` its ID and
 * `data.key` its key. `what` names the tree in errors (default: "snapshot ID in URL").
 */
export async function readStoredTree(store: ReadStore, id: string, what = `snapshot ${id} in ${store.url}`, options: TreeReadOptions = {}): Promise<StoredTree> {
  const root = await store.get(objectKey('tree', id))
  const rootRaw = decodeObject(root, id, `tree ${id} from ${store.url}`)
  const decoded = decodeTreeRoot(rootRaw, what)
  if (decoded.format === 1) return { tree: decoded.tree, root, parts: [], partEntries: [], rawBytes: rootRaw.length, storedBytes: root.length }
  const firsts: number[] = []
  decoded.parts.reduce((n, p) => (firsts.push(n), n + p.entries), 0)
  const parts: EncodedObject[] = new Array<EncodedObject>(decoded.parts.length)
  const entries: TreeEntry[][] = new Array<TreeEntry[]>(decoded.parts.length)
  let rawBytes = rootRaw.length
  await forEachLimit(decoded.parts.map((p, i) => ({ ...p, i })), options.jobs ?? PART_JOBS, async (p) => {
    const key = objectKey('tree-part', p.id)
    let stored: Buffer
    let raw: Buffer
    try {
      stored = await store.get(key)
      raw = decodeObject(stored, p.id, `part ${p.id} of tree ${id} from ${store.url}`)
    } catch (err) {
      if (!isObjectDamage(err)) throw err
      const message = err.code === 'ERR_OBJECT_MISSING' ? `part ${p.id} of tree ${id} is missing from ${store.url}` : err.message
      throw new SnapdirError(err.code, `${what}: ${message}`, { cause: err, data: { id: p.id, part: p.id, tree: id, key } })
    }
    rawBytes += raw.length
    parts[p.i] = { id: p.id, object: stored }
    entries[p.i] = decodeTreePart(raw, p.entries, firsts[p.i]!, `${what}, part ${p.id}`)
  })
  return {
    tree: assembleTree(decoded.chunker, entries.flat(), what),
    root,
    parts,
    partEntries: decoded.parts.map((p) => p.entries),
    rawBytes,
    storedBytes: parts.reduce((a, p) => a + p.object.length, root.length),
  }
}

/** A recipe ready to store (format/recipe.ts): its ID and its stored form. */
export function encodeRecipeObject(recipe: Recipe): EncodedObject {
  const raw = encodeRecipe(recipe)
  return { id: toHex(hashBytes(raw)), object: encodeObject(raw) }
}

/** Stores a recipe unless the store has it; returns its ID. */
export async function writeRecipe(store: Store, recipe: EncodedObject): Promise<string> {
  const key = objectKey('recipe', recipe.id)
  if (!(await store.has(key))) await store.put(key, recipe.object)
  return recipe.id
}

/**
 * A layer recipe, re-hashed against its ID and decoded; also its stored bytes (what sync copies).
 * Missing is ERR_OBJECT_MISSING, damaged ERR_OBJECT_CORRUPT, both naming the recipe and the store.
 */
export async function readRecipe(store: ReadStore, id: string, options: { signal?: AbortSignal } = {}): Promise<{ recipe: Recipe; stored: Buffer }> {
  const what = `recipe ${id} from ${store.url}`
  let stored: Buffer
  try {
    stored = await store.get(objectKey('recipe', id), options.signal ? { signal: options.signal } : undefined)
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') {
      throw new SnapdirError('ERR_OBJECT_MISSING', `recipe ${id} is missing from ${store.url}`, { cause: err, data: { key: objectKey('recipe', id) } })
    }
    throw err
  }
  return { recipe: decodeRecipe(decodeObject(stored, id, what), what), stored }
}
