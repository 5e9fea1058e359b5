// Typed access to the immutable objects of a store: where each kind lives and how it is checked.
import { decodeObject, encodeObject } from '../format/object.js'
import { decodeTree, TreeEncoder, type Tree } from '../format/tree.js'
import { hashBytes } from '../chunk/hash.js'
import { toHex } from '../format/id.js'
import { SnapdirError } from '../util/errors.js'
import type { ReadStore, Store } from './store.js'

export type ObjectKind = 'chunk' | 'tree'
const DIRS: Record<ObjectKind, string> = { chunk: 'chunks', tree: 'trees' }

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

/** A tree ready to store: its ID and its stored form (the CPU part of writeTree, done ahead). */
export interface EncodedTree {
  id: string
  object: Buffer
}

/** `encoder`: one that already holds some of the tree's entries (TreeEncoder). */
export function encodeTreeObject(tree: Tree, encoder = new TreeEncoder()): EncodedTree {
  const raw = encoder.encode(tree)
  return { id: toHex(hashBytes(raw)), object: encodeObject(raw) }
}

/** Stores a tree (encoding it first unless given encoded) unless the store has it; returns its ID. */
export async function writeTree(store: Store, tree: Tree | EncodedTree): Promise<string> {
  const { id, object } = 'object' in tree ? tree : encodeTreeObject(tree)
  const key = objectKey('tree', id)
  if (!(await store.has(key))) await store.put(key, object)
  return id
}

/** Loads a snapshot's tree; a missing one is ERR_SNAPSHOT_NOT_FOUND naming the store. */
export async function readTree(store: ReadStore, id: string): Promise<Tree> {
  return decodeTree(await readTreeBytes(store, id), `snapshot ${id} in ${store.url}`)
}

/**
 * A snapshot's tree object, checked against its ID but not decoded; a missing one is
 * ERR_SNAPSHOT_NOT_FOUND. (Chunks have their own read, getChunk in chunks.ts.)
 */
export async function readTreeBytes(store: ReadStore, id: string): Promise<Buffer> {
  let stored: Buffer
  try {
    stored = await store.get(objectKey('tree', id))
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') {
      throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${id} is not in ${store.url}`, { data: { id, store: store.url } })
    }
    throw err
  }
  return decodeObject(stored, id, `tree ${id} from ${store.url}`)
}
