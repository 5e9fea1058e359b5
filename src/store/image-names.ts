// Image names and tags in a store: one small mutable ref per NAME:TAG,
//
//   refs/images/<name>/<tag>   JSON {"name", "tag", "id": snapshot ID, "digest"?: manifest digest, "created_at"}
//
// (name and tag each one key component, format/image-name.ts encodeKeyComponent). A tag names one
// snapshot and moves when pushed again: the record is replaced with one PUT (a rename on a file
// store), so a reader sees the old target or the new one. Written last, after the revision of the
// snapshot it names (commit.ts), so a name never names a snapshot that is not all there; removed
// first (remove-revisions.ts), before the revisions and root it names.
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { isId } from '../format/id.js'
import { decodeKeyComponent, encodeKeyComponent, formatImageName, imageNameProblem, tagProblem, type ImageName } from '../format/image-name.js'
import { readRefRecord, warnOnStderr, type SkippedRecord } from './ref-record.js'
import type { ReadStore, Store, SweepStore } from './store.js'

export const IMAGE_REFS = 'refs/images/'

/** What refs/images/<name>/<tag> holds. */
export interface ImageNameRecord extends ImageName {
  /** the snapshot the tag names */
  id: string
  /** the manifest (or index) digest the tag resolves to in a registry, when the writer knew it */
  digest?: string
  created_at: string
}

/** A name to record for a snapshot: NAME:TAG, and the digest a registry gives the tag if known. */
export type ImageTag = ImageName & { digest?: string }

/** A key component's limit: a file name's on ext4 and XFS, kept on every store so that any store's names sync to any other. */
const COMPONENT_MAX = 255

export function imageNameKey(n: ImageName): string {
  const problem = imageNameProblem(n.name) ?? tagProblem(n.tag)
  if (problem !== null) throw new SnapdirError('ERR_BAD_ID', `image name ${JSON.stringify(formatImageName(n))}: ${problem}`)
  const name = encodeKeyComponent(n.name)
  if (name.length > COMPONENT_MAX) {
    throw new SnapdirError('ERR_BAD_ID', `image name ${JSON.stringify(n.name)} is too long to store: spelled as a key (each '/' and ':' as 3 characters) it takes ${name.length} of at most ${COMPONENT_MAX} characters`)
  }
  return `${IMAGE_REFS}${name}/${encodeKeyComponent(n.tag)}`
}

/** Why `value`, read from `key`, is not an image name record, or null when it is one. */
function recordProblem(key: string, value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object'
  const r = value as Record<string, unknown>
  for (const field of ['name', 'tag', 'id', 'created_at'] as const) {
    if (typeof r[field] !== 'string') return `no string field "${field}"`
  }
  if (!isId(r.id as string)) return '"id" is not a snapshot ID'
  if (r.digest !== undefined && typeof r.digest !== 'string') return '"digest" is not a string'
  const [name, tag, ...rest] = key.slice(IMAGE_REFS.length).split('/')
  if (rest.length > 0 || name === undefined || tag === undefined) return 'not at refs/images/<name>/<tag>'
  if (decodeKeyComponent(name) !== r.name || decodeKeyComponent(tag) !== r.tag) return `its name ${formatImageName(r as unknown as ImageName)} is not the one its key spells`
  return imageNameProblem(r.name as string) ?? tagProblem(r.tag as string)
}

/** The record at `key`; null when it is gone (removed since it was listed) or malformed (reported). */
async function readRecord(store: ReadStore, key: string, onSkip: SkippedRecord): Promise<ImageNameRecord | null> {
  const value = await readRefRecord(store, key, (v) => recordProblem(key, v), onSkip)
  if (value === null) return null
  const r = value as ImageNameRecord
  return { name: r.name, tag: r.tag, id: r.id, ...(r.digest !== undefined ? { digest: r.digest } : {}), created_at: r.created_at }
}

/** The snapshot NAME:TAG names in `store`, or null when the store has no such tag (or a malformed record: warned). */
export async function readImageName(store: ReadStore, n: ImageName, onSkip: SkippedRecord = warnOnStderr): Promise<ImageNameRecord | null> {
  return readRecord(store, imageNameKey(n), onSkip)
}

/**
 * Every name and tag, sorted by name then tag. A record that is not one (not JSON, a field missing, a
 * key that does not spell its name) is skipped and reported through `onSkip`, as listRevisions does.
 */
export async function listImageNames(store: ReadStore, onSkip: SkippedRecord = warnOnStderr): Promise<ImageNameRecord[]> {
  const keys: string[] = []
  for await (const key of store.list(IMAGE_REFS)) keys.push(key)
  keys.sort()
  const out: ImageNameRecord[] = []
  for (const key of keys) {
    const r = await readRecord(store, key, onSkip)
    if (r !== null) out.push(r)
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0))
}

/** The tags of one name, sorted, each record read (a malformed one skipped and reported, as above). */
export async function listImageTags(store: ReadStore, name: string, onSkip: SkippedRecord = warnOnStderr): Promise<ImageNameRecord[]> {
  const prefix = `${IMAGE_REFS}${encodeKeyComponent(name)}/`
  const keys: string[] = []
  for await (const key of store.list(prefix)) keys.push(key)
  const out: ImageNameRecord[] = []
  // several at once: on S3 each record is a round trip
  await forEachLimit(keys, 8, async (key) => {
    const r = await readRecord(store, key, onSkip)
    if (r !== null && r.name === name) out.push(r)
  })
  return out.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0))
}

/** Whether the store has any tag of `name` (one listing, no record read). */
export async function hasImageTags(store: ReadStore, name: string): Promise<boolean> {
  const keys = store.list(`${IMAGE_REFS}${encodeKeyComponent(name)}/`)[Symbol.asyncIterator]()
  const first = await keys.next()
  await keys.return?.()
  return first.done !== true
}

/** Every name the store has a tag for, from the keys alone (no record read), sorted. */
export async function listImageRepositories(store: ReadStore): Promise<string[]> {
  const names = new Set<string>()
  for await (const key of store.list(IMAGE_REFS)) {
    const name = decodeKeyComponent(key.slice(IMAGE_REFS.length).split('/')[0] ?? '')
    if (name !== null) names.add(name)
  }
  return [...names].sort()
}

/**
 * Points NAME:TAG at snapshot `id` (one atomic put: a tag pushed again moves). The snapshot must be
 * committed (its revision written and flushed): commit.ts calls this last. Returns the record.
 */
export async function writeImageName(store: Store, n: ImageTag & { id: string; created_at?: string }, now = new Date()): Promise<ImageNameRecord> {
  const record: ImageNameRecord = { name: n.name, tag: n.tag, id: n.id, ...(n.digest !== undefined ? { digest: n.digest } : {}), created_at: n.created_at ?? now.toISOString() }
  await store.put(imageNameKey(record), Buffer.from(JSON.stringify(record) + '\n'))
  return record
}

/** Whether `store` holds `record` as it is (sync skips those). */
export async function hasImageName(store: ReadStore, record: ImageNameRecord): Promise<boolean> {
  const there = await readRecord(store, imageNameKey(record), () => {}).catch((err: unknown) => {
    if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return null
    throw err
  })
  return there !== null && sameRecord(there, record)
}

function sameRecord(a: ImageNameRecord, b: ImageNameRecord): boolean {
  return a.name === b.name && a.tag === b.tag && a.id === b.id && a.digest === b.digest && a.created_at === b.created_at
}

/** Removes names and tags (what rm does, before the revisions they name); one not there is no error. */
export async function removeImageNames(store: SweepStore, names: ImageName[]): Promise<void> {
  await store.deleteMany(names.map(imageNameKey))
}
